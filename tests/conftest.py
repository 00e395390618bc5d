"""Shared fixtures: staged data, and the demo class graded once per session.

Tests run the real lessons found under source/; ``lesson`` is parametrized over them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tiny_course import make_course, submit_class

from grader import autograde, data, demo, paths
from grader.records import Result

LESSONS = paths.lessons()
REQUIRE_CUDA = "PYTORCH_COURSE_REQUIRE_CUDA"
"""Set to 1 on a GPU runner: the suite then refuses to pass on a machine without CUDA."""


def pytest_sessionstart(session: pytest.Session) -> None:
    """On a runner that must prove the lessons on CUDA, stop at once if there is none."""
    import os

    import torch

    if os.environ.get(REQUIRE_CUDA) == "1" and not torch.cuda.is_available():
        pytest.exit(f"{REQUIRE_CUDA}=1 but torch.cuda.is_available() is False: refusing to pass on a CPU", returncode=1)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``lesson`` over the lessons in source/ and ``student`` over each demo class."""
    if "student" in metafunc.fixturenames:
        pairs = [(lesson, student) for lesson in LESSONS for student in demo.students(lesson)]
        metafunc.parametrize(("lesson", "student"), pairs, ids=[f"{l}-{s}" for l, s in pairs])
    elif "lesson" in metafunc.fixturenames:
        metafunc.parametrize("lesson", LESSONS)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data root with MNIST and FashionMNIST staged from the offline mirror (never downloaded)."""
    root = paths.default_data_root()
    data.stage(root, paths.default_mirror(), require=True)  # DatasetError says how to fix a missing mirror
    return root


@pytest.fixture(scope="session")
def demo_course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway course directory with the lessons' sources and the course config."""
    course = tmp_path_factory.mktemp("course")
    shutil.copytree(paths.SOURCE, course / "source", ignore=shutil.ignore_patterns(*paths.SCRATCH))
    shutil.copy(paths.CONFIG, course / "nbgrader_config.py")
    return course


@pytest.fixture(scope="session")
def graded_demo_class(demo_course: Path, data_root: Path) -> dict[str, dict[str, Result]]:
    """lesson -> student -> Result: the demo class built and autograded once, in parallel (one worker per core)."""
    graded = demo.grade_class(demo_course, data_root)
    return {lesson: {r.student: r for r in results} for lesson, results in graded.items()}


@pytest.fixture(scope="session")
def graded_tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list]:
    """The tiny class (tests/tiny_course.py) graded by the local pool, two workers: course, expected, results."""
    course = make_course(tmp_path_factory.mktemp("tiny"))
    expected = submit_class(course)
    results = autograde.autograde(course, "tiny", workers=2, progress=False)
    return course, expected, results
