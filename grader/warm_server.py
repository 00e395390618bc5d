"""The program a warm sandbox runs (``grader.warm``): ``python -c <this file's text> FD JOBS [BOUND ...]``.

It starts once per grading worker, inside the sandbox, imports torch (and NumPy, torchvision, matplotlib) once,
and never runs student code itself and never touches CUDA. For each request on the listening socket
``FD`` — ``{"cwd": <a folder under JOBS>, "argv": [program.py, ...], "env": {...}, "timeout": seconds}`` as one
JSON line — it forks a child that runs the program in that folder, as ``python program.py ...``
would, and answers ``{"returncode": n}`` (``null`` past the timeout). A child forked from a process
that never touched CUDA can use CUDA (no "bad fork"), and pays for none of the imports.

Between requests nothing of one job reaches the next: after the child ends, every other process in
the sandbox's PID namespace is killed (``kill(-1)``: all but this process and the namespace's init),
then ``/tmp`` (but the folders bound into it, ``JOBS`` and ``BOUND``), ``/dev/shm`` and whatever else sits in
``JOBS`` are emptied. The socket is not in the
sandbox's file system and the children do not inherit it; this process is not dumpable, so no child
can read its memory or its descriptors. Where it cannot clean up, it ends, and the next job starts
a fresh sandbox.
"""

import ctypes
import gc
import json
import os
import runpy
import select
import signal
import socket
import stat
import sys
import time


def failed() -> None:
    """Before any job ran: write why this sandbox cannot serve where the grader reads it (``JOBS/failed.txt``)."""
    import traceback

    with open(os.path.join(sys.argv[2], "failed.txt"), "w") as out:  # grader.warm.FAILED (this text cannot import it)
        traceback.print_exc(file=out)


try:
    import numpy  # noqa: F401 - imported once, before any fork: what every job shares
    import torch

    for name in ("torchvision", "matplotlib.pyplot"):  # what the lessons import, where installed (no window: Agg)
        os.environ.setdefault("MPLBACKEND", "Agg")
        try:
            __import__(name)
        except ImportError:
            pass
except BaseException:  # no job has run yet: tell the grader why this sandbox cannot serve
    failed()
    raise
gc.freeze()  # what is imported lives as long as the server: no job's garbage collection walks it again

PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 4, 36
IGNORED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE)
"""Signals a job could send this process to end it: ignored here, restored in each job."""
libc = ctypes.CDLL(None, use_errno=True)


def remove(path: str) -> None:
    """Remove ``path`` without following links; a folder a job made unreadable is opened up first."""
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode):
        try:
            os.chmod(path, 0o700)
        except OSError:
            pass
        pending = [path]
        while pending:  # no recursion: a job may nest folders deeply
            here = pending[-1]
            entries = list(os.scandir(here))
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    try:
                        os.chmod(entry.path, 0o700)
                    except OSError:
                        pass
                    pending.append(entry.path)
                else:
                    os.unlink(entry.path)
            if pending[-1] == here:
                os.rmdir(pending.pop())
    else:
        os.unlink(path)


def empty(folder: str, keep: tuple[str, ...] = ()) -> bool:
    """Remove everything in ``folder`` but the paths ``keep`` (the folders leading to them are emptied of all
    else: the folders bound into the sandbox lie there); whether it all went."""
    clean = True
    for entry in os.scandir(folder):
        if entry.path in keep:
            continue
        if any(k.startswith(entry.path + os.sep) for k in keep) and entry.is_dir(follow_symlinks=False):
            clean = empty(entry.path, keep) and clean
            continue
        try:
            remove(entry.path)
        except OSError:
            clean = False
    return clean


def alone() -> bool:
    """Whether this process and the namespace's init are the only processes left."""
    return all(not name.isdigit() or int(name) in (1, os.getpid()) for name in os.listdir("/proc"))


def end_everything_else() -> bool:
    """Kill every process of the namespace but this one and init, reap them; whether none is left."""
    for _ in range(200):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break
        if alone():
            return True
        time.sleep(0.005)
    return False


def wait(pid: int, timeout: float) -> int | None:
    """The child's exit code, or None if it ran past ``timeout`` (it is then killed)."""
    deadline = time.monotonic() + timeout
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):
        handle = None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if handle is not None:
                os.close(handle)
            return os.waitstatus_to_exitcode(status)
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            if handle is not None:
                os.close(handle)
            return None
        if handle is not None:
            select.select([handle], [], [], left)
        else:
            time.sleep(min(left, 0.01))


def job(request: dict, listener: socket.socket, connection: socket.socket) -> None:
    """In the forked child: the program, as ``python argv...`` in its folder would run it. Never returns."""
    code = 1
    try:
        listener.close()
        connection.close()
        for number in IGNORED:
            signal.signal(number, signal.SIG_DFL)
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        os.environ.clear()
        os.environ.update(request.get("env", {}))
        os.chdir(request["cwd"])
        sys.path.insert(0, request["cwd"])
        sys.argv = list(request["argv"])
        runpy.run_path(sys.argv[0], run_name="__main__")
        code = 0
    except SystemExit as ended:
        code = ended.code if isinstance(ended.code, int) else 1
    except BaseException:  # noqa: BLE001 - the program failed: its exit code says so
        code = 1
    os._exit(code)


def tidy(jobs: str, cwd: str, bound: tuple[str, ...]) -> bool:
    """After a job, with its processes gone: remove all it left outside its folder; whether all of it went."""
    try:
        os.chmod(jobs, 0o755)  # a job may have closed it to the grader's next job
        clean = empty("/tmp", keep=bound) and empty("/dev/shm")
        for folder, found in FIRST.items():  # what a job added elsewhere it could write (/ and /dev, in a user namespace)
            clean = empty(folder, keep=tuple(os.path.join(folder, name) for name in found)) and clean
        empty(jobs, keep=(cwd,))  # what a job left beside its folder (the grader's own files there may stay)
        return clean
    except OSError:  # a folder the job closed to this process: a fresh sandbox serves the next job
        return False


FIRST: dict[str, list[str]] = {}
"""What ``/`` and ``/dev`` held when the server started: anything else there is a job's."""


def serve(listener: socket.socket, jobs: str, bound: tuple[str, ...]) -> None:
    while True:
        connection, _ = listener.accept()
        with connection:
            line = connection.makefile("rb").readline(1 << 20)
            request = json.loads(line)
            if request.get("ping"):
                connection.sendall(b'{"pong": true}\n')
                continue
            cwd = os.path.realpath(request["cwd"])
            if os.path.dirname(cwd) != jobs:
                connection.sendall(b'{"refused": "not a job folder"}\n')
                continue
            pid = os.fork()
            if pid == 0:
                job(request, listener, connection)
            code = wait(pid, float(request["timeout"]))
            clean = end_everything_else() and tidy(jobs, cwd, bound)
            connection.sendall(json.dumps({"returncode": code}).encode() + b"\n")
        if not clean:
            return  # something could not be undone: a fresh sandbox serves the next job


def prepare() -> tuple[socket.socket, str, tuple[str, ...]]:
    listener, jobs = socket.socket(fileno=int(sys.argv[1])), os.path.realpath(sys.argv[2])
    bound = (jobs, *sys.argv[3:])  # and the read-only folders bound in: never emptied
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for number in IGNORED:
        signal.signal(number, signal.SIG_IGN)
    torch.set_num_threads(1)  # no thread pool here: a forked child could not use it
    sys.path[:] = [p for p in sys.path if p not in ("", ".")]
    os.chdir("/")
    FIRST.update((folder, os.listdir(folder)) for folder in ("/", "/dev"))
    return listener, jobs, bound


def main() -> None:
    try:
        listener, jobs, bound = prepare()
    except BaseException:
        failed()
        raise
    serve(listener, jobs, bound)
    os._exit(0)


if __name__ == "__main__":
    main()
