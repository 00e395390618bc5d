"""What each of the sandbox's whole-submission limits costs a submission, in wall-clock time.

    bash .ci/in-venv python benchmarks/sandbox_limits.py [--repeat N]

Measures, per submission: making and removing its memory cgroup; mounting and unmounting the
working folder's tmpfs; joining the cgroup before bubblewrap (one more interpreter start); sweeping
a working folder of 200 files; and a sandboxed ``python -c pass`` with and without the cgroup. Prints
medians in milliseconds. The sized /dev/shm is one bubblewrap argument and costs nothing measurable.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader import cgroup, sandbox, untrusted


def median_ms(action, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    repeat = parser.parse_args().repeat
    limits = sandbox.Limits()
    rows = []
    if cgroup.create(1 << 30) is None:
        print("no memory cgroup can be made here (not root, or no delegated memory controller): the sandbox limits address space instead")
    else:
        rows.append(("memory cgroup: make and remove", median_ms(lambda: cgroup.create(limits.memory_mb << 20).remove(), repeat)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "quota"
        probe = sandbox.mount_quota(folder, limits.workdir_mb)
        if probe is None:
            print("this process may not mount a tmpfs (not root): the working folder has no quota")
        else:
            probe()
            rows.append(("working-folder tmpfs: mount and unmount", median_ms(lambda: sandbox.mount_quota(folder, limits.workdir_mb)(), repeat)))
        work = Path(tmp) / "work"
        work.mkdir()

        def sweep_200() -> None:
            for i in range(200):
                (work / f"f{i}.txt").write_bytes(b"x" * 1024)
            untrusted.sweep(work, limits.keep_file_mb << 20, limits.keep_mb << 20)

        rows.append(("sweep of a folder of 200 files (writing them included)", median_ms(sweep_200, repeat)))
        path = sandbox.check()
        bare = lambda group: subprocess.run(  # noqa: E731
            [*sandbox.confined(group), *sandbox.command(path, work, [sys.prefix, sys.base_prefix], [], limits, sandbox.HOME_ENV),
             *sandbox.launcher(limits, group), str(work), "--", "-c", "pass"], check=True,
        )  # fmt: skip
        rows.append(("sandboxed python -c pass, no cgroup", median_ms(lambda: bare(None), repeat)))
        group = cgroup.create(limits.memory_mb << 20)
        if group is not None:
            rows.append(("sandboxed python -c pass, in a cgroup (joined by python -m grader.cgroup)", median_ms(lambda: bare(group), repeat)))
            group.remove()
    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"{name.ljust(width)}  {ms:8.1f} ms")


if __name__ == "__main__":
    main()
