"""The judge can use CUDA: no process of the judge that may have touched CUDA forks a child that uses torch.

On this machine, first prove the hazard exists (a plain fork after ``torch.cuda.is_available()``
is in torch's bad-fork state, even without a GPU); the test fails, never passes, where it does not,
because then it could not tell the judge's children apart. Then the replay's test runs, whose
notebook asks for CUDA in a lesson cell and in a student's definition, and the judge's own process
(started by the worker's fork server), are not in a bad fork.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap

from grader import processes, replay

PLAIN_FORK = textwrap.dedent(
    """
    import os, torch
    torch.cuda.is_available()
    read, write = os.pipe()
    if os.fork() == 0:
        os.write(write, b"1" if torch.cuda._is_in_bad_fork() else b"0")
        os._exit(0)
    print(os.read(read, 1).decode())
    """
)
CUDA_LESSON = "import torch\nDEVICE = torch.device('cuda' if torch.cuda.is_available() else 'cpu')"
CUDA_DEFINITION = "def pick(device=torch.device('cuda' if torch.cuda.is_available() else 'cpu')):\n    return device"
TEST = (
    "import torch\nfrom grader import evidence\n"
    "evidence.check('f', bad=torch.cuda._is_in_bad_fork(), device=str(pick()), total=float(torch.ones(3, device=pick()).sum()))"
)
"""A replayed test that records whether its process is a bad fork, and computes on the device the notebook picked."""


@functools.cache
def this_machines_device() -> str:
    """What the notebook's cells pick here: "cuda" on a GPU machine. Asked in a process of its own, so that
    this one never touches CUDA before something forks it."""
    asked = "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')"
    return subprocess.run([sys.executable, "-c", asked], capture_output=True, text=True, timeout=120, check=True).stdout.strip()


def cells(*tests: str) -> list[dict]:
    found = [{"kind": "lesson", "name": "setup", "source": CUDA_LESSON}, {"kind": "student", "name": "your cell 2", "source": CUDA_DEFINITION}]
    return found + [{"kind": "test", "name": f"test_{i}", "source": source} for i, source in enumerate(tests)]


def in_bad_fork() -> bool:
    import torch

    return torch.cuda._is_in_bad_fork()


def test_a_plain_fork_after_asking_for_cuda_is_a_bad_fork_on_this_machine() -> None:
    found = subprocess.run([sys.executable, "-c", PLAIN_FORK], capture_output=True, text=True, timeout=120)
    assert found.stdout.strip() == "1", (
        "a fork after torch.cuda.is_available() is not in torch's bad-fork state here "
        f"({found.stdout.strip()!r} {found.stderr[-300:]}): the tests below cannot tell a safe judge from an unsafe one"
    )


def test_the_replays_tests_run_outside_a_bad_fork_after_the_notebook_asked_for_cuda() -> None:
    test_a_plain_fork_after_asking_for_cuda_is_a_bad_fork_on_this_machine()
    runs = replay.run(cells(TEST, TEST), sandbox=False, timeout=120)
    assert sorted(runs) == ["test_0", "test_1"], runs
    for name, run in runs.items():
        assert run["error"] is None, (name, run["error"])
        assert run["bad_fork"] is False, f"{name} ran in a bad fork"
        assert run["evidence"]["f.pt"]["bad"] is False, f"{name}: torch says the test's process is a bad fork"
        assert run["evidence"]["f.pt"]["device"] == this_machines_device(), f"{name} computed on {run['evidence']['f.pt']['device']}"
        assert run["evidence"]["f.pt"]["total"] == 3.0, run["evidence"]["f.pt"]


def test_a_test_that_ends_the_replay_fails_alone_and_the_next_one_still_runs() -> None:
    runs = replay.run(cells("import os\nos._exit(3)", TEST), sandbox=False, timeout=120)
    assert runs["test_0"]["error"] == "the process ended while this test ran", runs["test_0"]
    assert runs["test_1"]["error"] is None and runs["test_1"]["bad_fork"] is False, runs["test_1"]


def test_the_judges_process_is_not_a_bad_fork() -> None:
    test_a_plain_fork_after_asking_for_cuda_is_a_bad_fork_on_this_machine()
    context = processes.fork_server(judged=True)
    with context.Pool(1) as pool:
        assert pool.apply(in_bad_fork) is False
