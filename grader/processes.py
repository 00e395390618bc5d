"""Running a grader program in a process of its own: a fork server that has the heavy imports done once,
a session per run that is killed whole at its end, and children that die with their parent."""

from __future__ import annotations

import gc
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

def die_with_parent() -> None:
    """Be killed when the parent process dies (Linux), so nothing outlives a dead worker."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


PRELOAD = ["nbgrader.apps", "grader.worker", "grader.preprocessors", "grader.judge"]
"""Imported once per worker by the fork server, not once per submission (nbgrader: about 2.4 s of CPU)."""
JUDGE_PRELOAD = ["torch", "torchvision", "matplotlib.pyplot"]
"""Imported by the fork server too where the assignment is judged: what the judge and the lessons'
locked cells import (as much again)."""


def fork_server(judged: bool = False):
    """A multiprocessing context whose processes start with ``PRELOAD`` (and, for a judged assignment,
    ``JUDGE_PRELOAD``) already imported; the first call in a process decides.

    The fork server is a single-threaded process that imports ``PRELOAD`` once and forks a fresh
    child for every submission, so each ``nbgrader autograde`` and each judge still runs in a
    process of its own, in which no student code has run, without paying for Python's imports
    again. Where there is no fork server (Windows), spawn.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD + (JUDGE_PRELOAD if judged else []))
    return context


def run_module(module: str, argv: list[str], env: dict[str, str], cwd: str, log: str) -> None:
    """In a fresh child: its own session, the given environment, output to ``log``; then ``python -m module argv``."""
    os.setsid()
    gc.freeze()  # what the fork server imported outlives this process: its garbage collections need not walk it
    if sys.platform == "linux":
        die_with_parent()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1), os.dup2(fd, 2), os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0), os.close(null)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [module, *argv]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def start_module(
    module: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path, judged: bool = False
) -> tuple[int, Callable[[float | None], int | None]]:
    """Start ``python -m module argv`` in a session of its own; return ``wait(timeout) -> exit code, None if still running``.

    Forked from the fork server where this process may have children; as a fresh interpreter
    otherwise (a daemonic process, such as a Dask worker with ``distributed.worker.daemon``).
    """
    if not multiprocessing.current_process().daemon:
        proc = fork_server(judged).Process(target=run_module, args=(module, argv, env, str(cwd), str(log)), daemon=True)
        proc.start()

        def wait(timeout: float | None) -> int | None:
            proc.join(timeout)
            return proc.exitcode

        return proc.pid, wait
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *argv], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )  # fmt: skip

    def wait_popen(timeout: float | None) -> int | None:
        try:
            return popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    return popen.pid, wait_popen


def run_to_end(
    module: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path, timeout: float, judged: bool = False
) -> tuple[int | None, str]:
    """``start_module`` and wait: (exit code, None if it ran past ``timeout``; the end of its output).
    The whole session is killed after."""
    pid, wait = start_module(module, argv, env, cwd, log, judged)
    try:
        code = wait(timeout)
    finally:
        # The whole session goes: the process, a kernel it started, and anything that left running.
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        wait(None)
    return code, log.read_text(errors="replace")[-20000:] if log.is_file() else ""
