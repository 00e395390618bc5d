"""A warm sandbox: one bubblewrap sandbox per grading worker, with Python and torch already imported,
that runs each of the judge's sandboxed programs (a replay, a model's rebuild) in a forked child.

A cold sandboxed run pays for a fresh interpreter and ``import torch`` every time (about 2 s of CPU
here, most of the judge's cost). The warm sandbox (``grader/warm_server.py``) pays for them once per
worker. Every job still runs in a process no other student's code has touched: a child forked from a
server that never runs student code, and after each job the server kills every other process in the
sandbox and empties its ``/tmp``, ``/dev/shm`` and job folders (see ``warm_server``). The server
never touches CUDA, so its children can use it.

- The grading worker owns the server (``Server``, ``for_worker``) and hands its folder to the judge
  (``python -m grader.judge --warm FOLDER``), which sets ``use``.
- Code that runs a program in the sandbox makes its folder with ``job_folder`` and runs it with
  ``run_python``: in the warm sandbox where one is in use and reachable, else in a cold one
  (``grader.sandbox.run_python``). A job the warm sandbox could not run (it ended, it was stopped)
  runs cold, so a student's code that ends the server gains nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from . import untrusted
from .cgroup import create as create_cgroup
from .sandbox import HOME_ENV, PACKAGE, Limits, bwrap, command, confined, launcher, run_python as run_cold

PROGRAM = (Path(__file__).parent / "warm_server.py").read_text()
"""The server's program, handed over as text: the grader's folder is hidden inside the sandbox."""
SOCKET, JOBS, SHARED = "control.sock", "jobs", "shared.json"
STARTING, FAILED = "starting.log", "failed.txt"
"""bubblewrap's own messages at the start (beside the jobs folder), and what ended a server that could not start
(in the jobs folder, written by the server before any job ran): why a worker runs its judge cold."""
START_SECONDS = 120
"""How long a server may take to import torch and answer its first ping."""


class Unavailable(RuntimeError):
    """The warm sandbox did not run the job (no server, it ended, or it refused): run it cold."""


def ask(folder: Path, request: dict, timeout: float) -> dict:
    """Send one request to the server of ``folder``; its answer."""
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(timeout)
        try:
            connection.connect(str(folder / SOCKET))
            connection.sendall(json.dumps(request).encode() + b"\n")
            line = connection.makefile("rb").readline(1 << 16)
        except OSError as error:  # refused, reset, timed out
            raise Unavailable(f"{type(error).__name__}: {error}") from error
    if not line:
        raise Unavailable("the server ended")
    return json.loads(line)


class Server:
    """A warm sandbox of this process: started by ``start``, ended by ``close`` (or with this process)."""

    def __init__(self, limits: Limits, shared: list[Path]):
        self.limits, self.shared = limits, [str(Path(p).resolve()) for p in shared if p and Path(p).exists()]
        self.folder = Path(tempfile.mkdtemp(prefix="grader-warm-"))
        self.process: subprocess.Popen | None = None
        self.group = None

    @property
    def jobs(self) -> Path:
        return self.folder / JOBS

    def start(self) -> Server:
        (self.folder / JOBS).mkdir(exist_ok=True)
        (self.folder / SHARED).write_text(json.dumps(self.shared))
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(self.folder / SOCKET))
        listener.listen(4)
        self.group = create_cgroup(self.limits.memory_mb << 20)
        env = {**HOME_ENV, "PYTHONPATH": ""}
        argv = [
            *confined(self.group),
            *command(bwrap(), self.jobs, [sys.prefix, sys.base_prefix, *map(Path, self.shared)], [], self.limits, env, [PACKAGE]),
            *launcher(self.limits, self.group), str(self.jobs), "--", "-c", PROGRAM, str(listener.fileno()), str(self.jobs),
            *(str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix, *self.shared)),
        ]  # fmt: skip
        with open(self.folder / STARTING, "wb") as starting:  # the sandbox's own programs close stdio before any job
            self.process = subprocess.Popen(
                argv, pass_fds=[listener.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=starting,
                start_new_session=True,
            )  # fmt: skip
        listener.close()
        atexit.register(self.close)
        return self

    def alive(self, timeout: float = 2.0) -> bool:
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            return ask(self.folder, {"ping": True}, timeout).get("pong") is True
        except (Unavailable, ValueError):
            return False

    def why_not(self) -> str:
        """Why this server did not start: what bubblewrap and the server wrote before any job ran."""
        said = [
            (untrusted.read_file(self.folder / name, 1 << 16) or b"").decode(errors="replace").strip()[-2000:]
            for name in (STARTING, f"{JOBS}/{FAILED}")
        ]
        code = None if self.process is None else self.process.poll()
        ended = "it did not answer" if code is None else f"it ended with exit code {code}"
        return "; ".join([ended, *filter(None, said)])

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, 9)
            self.process.wait()
        if self.group is not None:
            self.group.remove()
            self.group = None
        shutil.rmtree(self.folder, ignore_errors=True)


_server: list[Server | None] = [None]
log = logging.getLogger(__name__)
LAST_FAILURE = [""]
"""Why the last warm sandbox of this process did not start."""


def for_worker(limits: Limits, shared: list[Path]) -> Server | None:
    """This worker's warm sandbox, started (and waited for) on first use and again where the last one ended
    or would not answer; None where none can be started (the judge then runs its programs cold)."""
    server = _server[0]
    wanted = [str(Path(p).resolve()) for p in shared if p and Path(p).exists()]
    if server is not None and server.limits == limits and server.shared == wanted and server.alive():
        return server
    if server is not None:
        server.close()
    server = _server[0] = Server(limits, shared)
    try:
        server.start()
        started = server.alive(START_SECONDS)
        why = "" if started else server.why_not()
    except Exception as error:  # noqa: BLE001 - no warm sandbox here: the judge runs cold
        started, why = False, f"{type(error).__name__}: {error}"
    if not started:
        LAST_FAILURE[0] = why
        log.warning("no warm sandbox (%s): the judge runs its sandboxed programs cold", why)
        server.close()
        _server[0] = None
    return _server[0]


IN_USE: list[Path | None] = [None]
"""The folder of the warm sandbox the judge uses (``python -m grader.judge --warm FOLDER``), if any."""


def use(folder: Path | None) -> None:
    IN_USE[0] = Path(folder) if folder else None


@contextlib.contextmanager
def job_folder(prefix: str):
    """A fresh folder for a sandboxed program: in the warm sandbox's job folder where one is in use."""
    folder = IN_USE[0]
    try:
        made = tempfile.TemporaryDirectory(prefix=prefix, dir=folder / JOBS) if folder else None
    except OSError:  # the warm sandbox's folder is gone or closed: a cold run's folder
        made = None
    with made or tempfile.TemporaryDirectory(prefix=prefix) as path:
        if made is not None:
            os.chmod(path, 0o777)  # the sandbox's own user writes here (as root, that is not the grader's user)
        yield Path(path)


def serves(workdir: Path, shared: list[Path]) -> bool:
    """Whether the warm sandbox in use can run a program in ``workdir`` that reads ``shared``."""
    folder = IN_USE[0]
    if folder is None or Path(workdir).resolve().parent != (folder / JOBS).resolve():
        return False
    try:
        bound = set(json.loads((folder / SHARED).read_text()))
    except (OSError, ValueError):
        return False
    return {str(Path(p).resolve()) for p in shared if p and Path(p).exists()} <= bound


def run_python(argv: list[str], workdir: Path, limits: Limits, timeout: float, shared: list[Path] = ()) -> subprocess.CompletedProcess:
    """``python argv`` in ``workdir``, sandboxed: warm where a warm sandbox serves it, else cold
    (``grader.sandbox.run_python``, whose limits apply there). Raises ``subprocess.TimeoutExpired`` past ``timeout``."""
    if serves(workdir, list(shared)):
        given = untrusted.read_tree(workdir).files  # what the caller put there, for a cold run after a failed warm one
        try:
            env = {**os.environ, **HOME_ENV, "PYTHONPATH": ""}  # what a cold sandbox would inherit
            answer = ask(IN_USE[0], {"cwd": str(Path(workdir).resolve()), "argv": argv, "env": env, "timeout": timeout}, timeout + 60)
            if "returncode" in answer:
                if answer["returncode"] is None:
                    raise subprocess.TimeoutExpired(argv, timeout)
                return subprocess.CompletedProcess(argv, answer["returncode"], "", "")
        except (Unavailable, ValueError):
            for entry in Path(workdir).iterdir():  # what the warm run left goes; the caller's files come back
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            for name, data in given.items():
                (Path(workdir) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(workdir) / name).write_bytes(data)
    return run_cold(argv, workdir, limits, timeout, shared)
