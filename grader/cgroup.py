"""One memory cgroup per sandbox: a limit on the memory of everything a submission runs, together.

A per-process limit does not bind a submission: shared memory and tmpfs files are not counted, and
each of its processes gets a limit of its own. A cgroup counts all of it (private, shared and tmpfs
pages of every process in it) and, past its limit, the kernel stops one of them (the OOM killer).

``create`` makes a child of the grader's own memory cgroup (cgroup v2 where the memory controller is
delegated to it, else the v1 memory hierarchy), where the grader may (root, or a delegated
subtree); elsewhere it returns None and the sandbox falls back to per-process address-space limits.
``python -m grader.cgroup PROCS -- COMMAND…`` joins a cgroup and runs the command in it: the
kernelspec puts it before bubblewrap, so the whole sandbox and all it starts are inside.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cgroup:
    path: Path
    version: int

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def oom_kills(self) -> int:
        """Processes the kernel stopped at this cgroup's limit so far."""
        events = self.path / ("memory.events" if self.version == 2 else "memory.oom_control")
        try:
            for line in events.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self) -> None:
        """Stop what is still inside and remove the cgroup."""
        for _ in range(50):
            try:
                pids = [int(p) for p in self.procs.read_text().split()]
            except OSError:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)


def own(version: int) -> Path | None:
    """The grader's own cgroup folder in the hierarchy of ``version`` (1: the memory controller's)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, relative = line.split(":", 2)
        if (version == 2 and controllers == "") or (version == 1 and "memory" in controllers.split(",")):
            break
    else:
        return None
    for mount in mounts:
        fields = mount.split()
        separator = fields.index("-")
        fstype, options = fields[separator + 1], fields[-1]
        if (version == 2 and fstype == "cgroup2") or (version == 1 and fstype == "cgroup" and "memory" in options.split(",")):
            root = fields[3].rstrip("/")  # the part of the hierarchy the mount shows (a container's own)
            inside = relative[len(root):] if root and relative.startswith(root) else relative
            return Path(fields[4]) / inside.lstrip("/")
    return None


def create(limit: int) -> Cgroup | None:
    """A new cgroup limited to ``limit`` bytes of memory (swap included), or None where none can be made here."""
    name = f"grader-{os.getpid()}-{secrets.token_hex(4)}"
    candidates = []
    parent = own(2)
    if parent is not None and "memory" in read(parent / "cgroup.subtree_control").split():
        candidates.append((Cgroup(parent / name, 2), {"memory.max": limit, "memory.swap.max": 0}))
    parent = own(1)
    if parent is not None:
        candidates.append((Cgroup(parent / name, 1), {"memory.limit_in_bytes": limit, "memory.memsw.limit_in_bytes": limit}))
    for group, settings in candidates:
        try:
            group.path.mkdir()
        except OSError:
            continue
        try:
            for setting, value in settings.items():
                if (group.path / setting).exists() or setting in ("memory.max", "memory.limit_in_bytes"):
                    try:
                        (group.path / setting).write_text(str(value))
                    except OSError:
                        if setting in ("memory.max", "memory.limit_in_bytes"):
                            raise
        except OSError:
            group.remove()
            continue
        return group
    return None


def read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def main(argv: list[str]) -> None:
    """``PROCS -- COMMAND…``: move this process into the cgroup whose ``cgroup.procs`` is PROCS, then exec COMMAND."""
    procs, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit("usage: python -m grader.cgroup PROCS -- COMMAND...")
    Path(procs).write_text(str(os.getpid()))
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
