"""The warm sandbox (``grader.warm``): the judge's sandboxed programs run in children forked from one
sandboxed server per worker, and nothing of one job reaches the next or the server.

Every job's program first records whether torch was already imported when it started: it is in a
warm child only (a cold sandbox starts a fresh interpreter), so each test knows which path ran.
"""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from grader import replay, sandbox, warm
from grader.sandbox import Limits

from test_fork import TEST, cells, this_machines_device, test_a_plain_fork_after_asking_for_cuda_is_a_bad_fork_on_this_machine as hazard_exists

PROBE = "import sys\nWARM = 'torch' in sys.modules\n"
"""The first lines of every program here: whether the program started in the warm server's child."""


@pytest.fixture(scope="module")
def server():
    found = warm.for_worker(Limits(), [])
    assert found is not None, f"no warm sandbox could start here: {warm.LAST_FAILURE[0]}"
    warm.use(found.folder)
    yield found
    warm.use(None)


def run(program: str, *argv: str, timeout: float = 60) -> dict:
    """Run ``program`` (after ``PROBE``) in a job folder; what it wrote to ``out.json``, with the exit code."""
    with warm.job_folder("grader-test-") as folder:
        (folder / "job.py").write_text(PROBE + textwrap.dedent(program))
        done = warm.run_python(["job.py", *argv], folder, Limits(), timeout)
        out = folder / "out.json"
        return {**(json.loads(out.read_text()) if out.is_file() else {}), "returncode": done.returncode}


def test_a_job_runs_in_a_warm_child_that_is_no_bad_fork_with_the_callers_environment(server, monkeypatch) -> None:
    hazard_exists()
    monkeypatch.setenv("PYTORCH_COURSE_DATA", "/where/the/data/is")
    found = run("""
        import json, os, torch
        json.dump({"warm": WARM, "bad_fork": torch.cuda._is_in_bad_fork(), "data": os.environ.get("PYTORCH_COURSE_DATA"),
                   "home": os.environ.get("HOME")}, open("out.json", "w"))
    """)
    assert found == {"warm": True, "bad_fork": False, "data": "/where/the/data/is", "home": "/tmp", "returncode": 0}, found


def test_the_replay_runs_warm_and_its_tests_are_no_bad_fork(server) -> None:
    hazard_exists()
    start = time.perf_counter()
    runs = replay.run(cells(TEST), sandbox=True, timeout=120)
    assert runs["test_0"]["error"] is None and runs["test_0"]["bad_fork"] is False, runs
    found = runs["test_0"]["evidence"]["f.pt"]
    assert found["bad"] is False and found["total"] == 3.0, found
    assert found["device"] == this_machines_device(), f"the sandboxed replay computed on {found['device']}, the machine has {this_machines_device()}"
    assert time.perf_counter() - start < 60


def test_nothing_a_job_leaves_reaches_the_next_job(server) -> None:
    first = run("""
        import json, os, time
        open("/tmp/left-in-tmp", "w").write("x")
        open("/dev/shm/left-in-shm", "w").write("x")
        open("../left-beside", "w").write("x")
        os.makedirs("/tmp/locked/deeper"); os.chmod("/tmp/locked", 0)
        for planted in ("/dev/planted", "/planted"):
            try:
                open(planted, "w").write("x")
            except OSError:  # not writable for this sandbox's user
                pass
        if os.fork() == 0:  # a process that outlives the job, to write into the next one's folders
            os.setsid()
            if os.fork() == 0:
                time.sleep(1.5)
                for folder in os.listdir(".."):
                    open(os.path.join("..", folder, "planted"), "w").write("x")
                open("/tmp/late", "w").write("x")
            os._exit(0)
        json.dump({"warm": WARM}, open("out.json", "w"))
        os.chmod("..", 0)  # the job folders closed to the next job
    """)
    assert first == {"warm": True, "returncode": 0}, first
    second = run("""
        import json, os, time
        time.sleep(3)
        json.dump({"warm": WARM, "tmp": os.listdir("/tmp"), "shm": os.listdir("/dev/shm"), "beside": os.listdir(".."),
                   "here": sorted(os.listdir(".")), "planted": [p for p in ("/dev/planted", "/planted") if os.path.exists(p)]},
                  open("out.json", "w"))
    """)
    assert second["warm"] is True, second
    assert not {"left-in-tmp", "late", "locked"} & set(second["tmp"]), second
    assert second["shm"] == [], second
    assert len(second["beside"]) == 1 and second["here"] == ["job.py"] and second["planted"] == [], second


def test_a_job_cannot_reach_the_server_and_ending_it_gains_nothing(server) -> None:
    found = run("""
        import json, os, signal
        parent = os.getppid()
        try:
            fds = os.listdir(f"/proc/{parent}/fd")
        except OSError as error:
            fds = type(error).__name__
        os.kill(parent, signal.SIGTERM)
        json.dump({"warm": WARM, "fds": fds, "socket": os.path.exists(sys.argv[1])}, open("out.json", "w"))
    """, str(server.folder / warm.SOCKET))
    assert found == {"warm": True, "fds": "PermissionError", "socket": False, "returncode": 0}, found
    assert server.alive(), "a job's SIGTERM ended the server"
    killed = run("""
        import json, os, signal
        if WARM:
            os.kill(os.getppid(), signal.SIGKILL)
        json.dump({"warm": WARM}, open("out.json", "w"))
    """)
    assert killed == {"warm": False, "returncode": 0}, "a job that ended the server ran again, cold"
    assert not server.alive()
    again = warm.for_worker(Limits(), [])
    assert again is not None and again is not server and again.alive()
    warm.use(again.folder)
    assert run("import json\njson.dump({'warm': WARM}, open('out.json', 'w'))") == {"warm": True, "returncode": 0}


def test_a_server_that_cannot_start_says_why_and_the_judge_runs_cold(monkeypatch) -> None:
    monkeypatch.setattr(warm, "PROGRAM", warm.PROGRAM.replace("import torch\n", "import torch, no_such_module_here\n", 1))
    monkeypatch.setattr(warm, "_server", [None])
    assert warm.for_worker(Limits(), []) is None
    assert "No module named 'no_such_module_here'" in warm.LAST_FAILURE[0], warm.LAST_FAILURE[0]


def test_the_sandboxs_user_has_a_name_warm_and_cold(server) -> None:
    """The sandbox's user id is in no /etc/passwd; torch 2.11 asks ``getpass.getuser()`` when torchvision is
    imported, so without a name every lesson's kernel failed its first import."""
    program = "import getpass, json\njson.dump({'user': getpass.getuser()}, open('out.json', 'w'))\n"
    assert run(program) == {"user": "student", "returncode": 0}
    with warm.job_folder("grader-test-") as folder:
        (folder / "job.py").write_text(program)
        done = sandbox.run_python(["job.py"], folder, Limits(), timeout=60)
        assert done.returncode == 0 and json.loads((folder / "out.json").read_text()) == {"user": "student"}, done.stderr[-500:]


def test_each_warm_replay_starts_its_generators_afresh_as_a_new_process_does(server) -> None:
    """Every job is forked from the one server, whose generators were seeded once: without fresh states, a notebook
    that never seeds would draw the same numbers in every replay and look reproducible."""
    drawing = {
        "kind": "student", "name": "your cell 3", "written": True,
        "source": "import random\nimport numpy as np\nimport torch\ndraws = [np.random.rand(), random.random(), torch.rand(1).item()]",
    }  # fmt: skip
    test = {"kind": "test", "name": "test_0", "source": "from grader import evidence\nevidence.check('f', draws=draws)"}
    found = []
    for _ in range(2):
        run = replay.run([*cells(), drawing, test], sandbox=True, timeout=120)["test_0"]
        assert run["error"] is None, run
        found.append(run["evidence"]["f.pt"]["draws"])
    assert all(first != second for first, second in zip(*found)), f"two replays drew alike: {found}"
