"""A tiny nbgrader course built in code, for the grader's own tests (seconds per submission).

Assignment ``tiny``: two answers (``add``, ``scale``) and their test cells (2 + 1 points), each
with a visible assert and a hidden one. Assignment ``dice``: one test cell whose score is a random
number (nbgrader gives partial credit for a numeric result), so only a grader that seeds every
generator before the notebook runs gives the same score twice.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader import paths
from grader.notebooks import KERNELSPEC

HIDDEN_ADD = 'assert add(-7, 7) == 0, "add must handle negative numbers"'
HIDDEN_SCALE = 'assert scale(0.25) == 0.5, "scale must work on floats"'


def meta(grade_id: str, *, solution: bool = False, grade: bool = False, points: float = 0) -> dict:
    nbg = {"grade_id": grade_id, "solution": solution, "grade": grade, "locked": not solution, "schema_version": 3}
    if grade:
        nbg["points"] = points
    return {"nbgrader": nbg}


def tiny_notebook():
    cells = [
        new_markdown_cell("# Tiny\nWrite `add` and `scale`."),
        new_code_cell(
            "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION", metadata=meta("add", solution=True)
        ),
        new_code_cell(
            "# add returns the sum of its arguments\n"
            'assert add(1, 2) == 3, "add(1, 2) should be 3"\n'
            f"### BEGIN HIDDEN TESTS\n{HIDDEN_ADD}\n### END HIDDEN TESTS",
            metadata=meta("test_add", grade=True, points=2),
        ),
        new_code_cell(
            "def scale(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
            metadata=meta("scale", solution=True),
        ),
        new_code_cell(
            "# scale doubles its argument\n"
            'assert scale(3) == 6, "scale(3) should be 6"\n'
            f"### BEGIN HIDDEN TESTS\n{HIDDEN_SCALE}\n### END HIDDEN TESTS",
            metadata=meta("test_scale", grade=True, points=1),
        ),
    ]
    return new_notebook(cells=cells, metadata={"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})


def dice_notebook():
    cells = [
        new_code_cell("x = 1\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION", metadata=meta("answer", solution=True)),
        new_code_cell(
            "# a score drawn from every generator: the same twice only when each is seeded\n"
            "import random, numpy, torch\n"
            "round((random.random() + numpy.random.rand() + torch.rand(1).item() + hash('grader') % 997 / 997) / 4 * 10, 6)",
            metadata=meta("test_dice", grade=True, points=10),
        ),
    ]
    return new_notebook(cells=cells, metadata={"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})


def judged_notebook():
    """Assignment ``judged``: the tiny answers, with hidden tests that record evidence for the judge
    (its ``checks.py`` is ``tests/judged_checks.py``, copied beside it); a locked helper cell names the checks' inputs."""
    cells = [
        new_code_cell(
            "import random\n\nimport torch\n\n\ndef check_pairs(drawn=0):\n"
            "    # the inputs the checks call add with (a negative number and fractions among them), drawn from `drawn`\n"
            "    rng = random.Random(drawn)\n"
            "    return [(rng.randint(1, 99), rng.randint(1, 99)), (-rng.randint(1, 99), rng.randint(1, 99)), (rng.randint(1, 8) / 4, 0.5)]\n\n\n"
            "def check_vector(drawn=0):\n    # the tensor the checks call scale with: negative and fractional elements, drawn from `drawn`\n"
            "    return torch.randn(8, generator=torch.Generator().manual_seed(drawn))\n\n\n"
            "class CallSpy:\n    # a function that records what it was called with\n    def __init__(self):\n        self.calls = []\n\n"
            "    def __call__(self, value):\n        self.calls.append(value)\n        return value * 10",
            metadata=meta("helpers"),
        ),
        new_code_cell(
            "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION", metadata=meta("add", solution=True)
        ),
        new_code_cell(
            "# add returns the sum of its arguments\n"
            'assert add(1, 2) == 3, "add(1, 2) should be 3"\n'
            "### BEGIN HIDDEN TESTS\nfrom grader import evidence\n\n"
            'evidence.check("add", first=add(1, 2), sums=[add(a, b) for a, b in check_pairs(evidence.drawn())])\n'
            "### END HIDDEN TESTS",
            metadata=meta("test_add", grade=True, points=2),
        ),
        new_code_cell(
            "def scale(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
            metadata=meta("scale", solution=True),
        ),
        new_code_cell(
            "# scale doubles every element of a tensor\n"
            'assert torch.allclose(scale(torch.ones(3)), torch.full((3,), 2.0)), "scale(torch.ones(3)) should be all 2"\n'
            "### BEGIN HIDDEN TESTS\nfrom grader import evidence\n\n"
            'evidence.check("scale", ones=scale(torch.ones(3)), doubled=scale(check_vector(evidence.drawn())))\n'
            "### END HIDDEN TESTS",
            metadata=meta("test_scale", grade=True, points=1),
        ),
        new_code_cell(
            "def call_each(f, values):\n    ### BEGIN SOLUTION\n    return [f(v) for v in values]\n    ### END SOLUTION",
            metadata=meta("call_each", solution=True),
        ),
        new_code_cell(
            "# call_each calls f once per value, in order, and returns the results\n"
            "spy = CallSpy()\n"
            'assert call_each(spy, [1, 2, 3]) == [10, 20, 30], "call_each(f, [1, 2, 3]) should be [f(1), f(2), f(3)]"\n'
            "### BEGIN HIDDEN TESTS\nfrom grader import evidence\n\n"
            'evidence.check("call_each", calls=spy.calls)\n'
            "### END HIDDEN TESTS",
            metadata=meta("test_call_each", grade=True, points=1),
        ),
    ]
    return new_notebook(cells=cells, metadata={"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})


SOURCES = {"tiny": tiny_notebook, "dice": dice_notebook, "judged": judged_notebook}
CHECKS = {"judged": Path(__file__).with_name("judged_checks.py")}
"""The checks file of each assignment that has one."""


def make_course(root: Path, recorded: bool = True) -> Path:
    """A course directory with the tiny, dice and judged assignments in source/ (judged with its checks
    beside it, as an instructor adds an assignment: nothing of it in the grader) and the course's config.

    With ``recorded`` it is a copy of one course whose assignments this test session recorded once
    (``gradebook.record_assignment``): its first grading skips the two nbgrader runs a recording costs, as
    every later grading of a course does. A test of the first recording asks for ``recorded=False``."""
    if not recorded:
        return written_course(root)
    shutil.copytree(recorded_course(), root, dirs_exist_ok=True)
    return root


@functools.cache
def recorded_course() -> Path:
    """The course ``make_course`` copies: written and recorded once a test session."""
    from grader import gradebook

    template = written_course(Path(tempfile.mkdtemp(prefix="tiny-recorded-")))
    atexit.register(shutil.rmtree, template, ignore_errors=True)
    for name in SOURCES:
        gradebook.record_assignment(template, name)
    return template


def written_course(root: Path) -> Path:
    """``make_course``'s course as written, never recorded."""
    for name, build in SOURCES.items():
        path = root / "source" / name / f"{name}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(build(), str(path))
        if name in CHECKS:
            shutil.copy(CHECKS[name], path.parent / "checks.py")
    shutil.copy(paths.CONFIG, root / "nbgrader_config.py")
    return root


def submit(course: Path, student: str, assignment: str, nb_or_text, timestamp: str | None = None) -> Path:
    """Write a submission: a notebook (or raw text, for a broken one) and optionally timestamp.txt."""
    path = course / "submitted" / student / assignment / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(nb_or_text, str):
        path.write_text(nb_or_text)
    else:
        nbformat.write(nb_or_text, str(path))
    if timestamp:
        (path.parent / "timestamp.txt").write_text(timestamp)
    return path


def answered(add_body: str = "return a + b", scale_body: str = "return 2 * x"):
    """The tiny notebook with the given function bodies as the student's answers."""
    nb = tiny_notebook()
    nb.cells[1].source = f"def add(a, b):\n    {add_body}"
    nb.cells[3].source = f"def scale(x):\n    {scale_body}"
    return nb


CLASS = {
    # student: (notebook builder, expected scores)
    "correct": (lambda: answered(), {"test_add": 2.0, "test_scale": 1.0}),
    "positives-only": (lambda: answered(add_body="return abs(a) + abs(b)"), {"test_add": 0.0, "test_scale": 1.0}),
    "ints-only": (lambda: answered(scale_body="return int(2 * x)"), {"test_add": 2.0, "test_scale": 0.0}),
    "blank": (lambda: answered("raise NotImplementedError()", "raise NotImplementedError()"), {"test_add": 0.0, "test_scale": 0.0}),
    "broken": (lambda: '{"cells": [ not json', {"test_add": 0.0, "test_scale": 0.0}),  # not a notebook: 0, with a note
}


def submit_class(course: Path, students=CLASS) -> dict:
    """Submit the tiny class; return student -> expected scores."""
    for student, (build, _) in students.items():
        submit(course, student, "tiny", build())
    return {s: expected for s, (_, expected) in students.items()}


def killer(times: str):
    """A correct submission that asks ``WorkerKiller`` to kill its worker ``times`` ("once" or "always"),
    and waits long enough to be killed (the killer looks ten times a second); once spared, it goes on."""
    nb = answered()
    nb.cells[1].source += f"\nimport pathlib, time\npathlib.Path('kill-my-worker-{times}').touch()\ntime.sleep(5)"
    return nb


class WorkerKiller:
    """Plays the out-of-memory killer while a batch is graded: kills the worker process (the nearest
    ancestor started by multiprocessing's spawn: a pool or a Dask worker) of every kernel whose
    working folder holds ``kill-my-worker-always``, and of the first that holds ``kill-my-worker-once``.
    A submission cannot do this itself: its sandbox shows it no other process."""

    def __init__(self):
        self.kills: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._seen: set[int] = set()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
                try:
                    cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
                except OSError:
                    continue
                for times in ("once", "always"):
                    if pid in self._seen or not (cwd / f"kill-my-worker-{times}").exists():
                        continue
                    if times == "once" and "once" in self.kills:
                        continue
                    worker = spawned_ancestor(pid)
                    if worker:
                        self._seen.add(pid)
                        self.kills.append(times)
                        os.kill(worker, signal.SIGKILL)


def spawned_ancestor(pid: int) -> int | None:
    """The nearest ancestor of ``pid`` whose command line is multiprocessing's spawn_main."""
    while pid > 1:
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            return None
    return None
