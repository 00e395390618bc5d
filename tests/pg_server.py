"""A real PostgreSQL server for the tests: Debian's binaries, ``initdb`` into a temporary
directory, a loopback port, stopped afterwards. Installs Debian's ``postgresql`` package when no
server binaries are found; the tests that need it skip with one reason only where that fails."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class Unavailable(RuntimeError):
    """No PostgreSQL server can be run here."""


def binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def install() -> Path:
    """Debian's postgresql package, installed when missing (needs root and the package registry)."""
    if binaries():
        return binaries()
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable("PostgreSQL is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"env": env, "capture_output": True, "text": True}
    if subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], **quiet).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], **quiet)
        done = subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], **quiet)
        if done.returncode != 0:
            raise Unavailable(f"apt-get install postgresql failed: {done.stderr.strip()[-300:]}")
    if not binaries():
        raise Unavailable("apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb was found")
    return binaries()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server() -> Iterator[str]:
    """Start a throwaway server on 127.0.0.1; yield the SQLAlchemy URL of its ``postgres`` database."""
    bin_dir = install()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="grader-pg-"))
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_postgres, *cmd], capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"{Path(cmd[0]).name} failed: {(done.stdout + done.stderr).strip()[-500:]}")

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """A new database on the server of ``url``; return its URL."""
    import psycopg

    base, _ = url.rsplit("/", 1)
    with psycopg.connect(base.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"
