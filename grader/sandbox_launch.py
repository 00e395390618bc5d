"""The first program inside the sandbox, before the kernel (or any program the sandbox runs): the limits (an
address-space limit only where no cgroup holds the whole sandbox and no GPU needs its large reservations);
as root, a user id of its own that owns the working copy, the IPython folder and the connection file; no
stdio; then the program.

``python -c <this file's text> UID PROCESSES MEMORY ADDRESS_SPACE FILE_SIZE [OWNED ...] -- ARGV ...``: the
grader's folder is hidden inside the sandbox, so ``grader.sandbox.launcher`` hands the text over, not the path.
"""

import os
import resource
import sys

def main(argv: list[str]) -> None:
    split = argv.index("--")
    uid, processes, memory, address_space, file_size = map(int, argv[1:6])
    owned, kernel = argv[6:split], argv[split + 1:]
    limits = [(resource.RLIMIT_NPROC, processes), (resource.RLIMIT_DATA, memory), (resource.RLIMIT_FSIZE, file_size), (resource.RLIMIT_CORE, 0)]
    for limit, value in limits + ([(resource.RLIMIT_AS, address_space)] if address_space else []):
        resource.setrlimit(limit, (value, value))
    if uid >= 0:
        for top in [*owned, *(kernel[i + 1] for i, arg in enumerate(kernel[:-1]) if arg == "-f")]:  # and a kernel's connection file
            os.lchown(top, uid, uid)
            for root, dirs, files in os.walk(top):
                for name in dirs + files:
                    os.lchown(os.path.join(root, name), uid, uid)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.execv(sys.executable, [sys.executable, *kernel])


if __name__ == "__main__":
    main(sys.argv)
