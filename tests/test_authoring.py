"""A test that names a check, an evidence key or a lesson definition that does not exist is found
before grading (``grader.authoring``), naming the cell and the name: ``grader validate`` fails on it
and ``grader autograde`` grades nothing. The lessons and the tiny ``judged`` assignment have none."""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

import nbformat
import pytest
from tiny_course import judged_notebook, make_course, submit

from grader import authoring, autograde, paths, validate

JUDGED = "judged"
CHECKS = '''\
DEFINITIONS = ("helpers",)


def add(evidence, lesson):
    e = evidence
    sums_of(e, L=lesson)
    assert e["first"] == 3


def sums_of(found, L):
    assert found["sums"] == [a + b for a, b in L["{pairs}"]()]
'''
"""A checks file whose ``add`` reads through an alias and a helper it hands the evidence and the lesson to."""


def test_the_lessons_tests_name_only_what_exists(lesson: str) -> None:
    assert authoring.problems(lesson, paths.REPO) == []


def test_the_tiny_course_names_only_what_exists(tmp_path: Path) -> None:
    course = make_course(tmp_path)
    assert {name: authoring.problems(name, course) for name in ("tiny", "dice", JUDGED)} == {"tiny": [], "dice": [], JUDGED: []}


def course_with(tmp_path: Path, *changes: tuple[str, str], grade_id: str | None = None) -> Path:
    """The tiny course with each (old, new) of ``changes`` made in the ``judged`` notebook's cells
    (only in the cell ``grade_id``, if given), never recorded."""
    course = make_course(tmp_path, recorded=False)
    path = paths.source_notebook(JUDGED, course)
    nb = nbformat.read(str(path), as_version=4)
    for old, new in changes:
        cells = [c for c in nb.cells if grade_id in (None, c.metadata.nbgrader.grade_id) and old in c.source]
        assert cells, f"{old!r} is not in the judged notebook"
        for cell in cells:
            cell.source = cell.source.replace(old, new)
    nbformat.write(nb, str(path))
    return course


def with_cell(course: Path, index: int, **nbgrader) -> Path:
    """``course`` with the nbgrader metadata of the judged notebook's cell ``index`` updated."""
    path = paths.source_notebook(JUDGED, course)
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[index].metadata.nbgrader.update(nbgrader)
    nbformat.write(nb, str(path))
    return course


MISTAKES = {
    "misspelt function": (
        '"add"', '"ad"', ["test_add: ad: checks.py has no function ad"],
    ),
    "key passed, never read": (
        "sums=[", "sum=[", [
            "test_add: add reads evidence key 'sums', which the test does not pass",
            "test_add: passes sum=... to add, which never reads it",
        ],
    ),
    "key read, never passed": (
        "evidence.check(\"add\", first=add(1, 2), ", "evidence.check(\"add\", ",
        ["test_add: add reads evidence key 'first', which the test does not pass"],
    ),
    "lesson name no locked cell defines": (
        "def check_pairs(drawn=0):", "def check_inputs(drawn=0):",
        ["test_add: add reads 'check_pairs' from the lesson, which no locked cell in checks.DEFINITIONS (helpers) defines"],
    ),
    "check named in a comment only": (
        "### END HIDDEN TESTS", '# evidence.check("scale") comes later\n### END HIDDEN TESTS', [
            "test_call_each: the judge reads scale in this cell, but the cell never calls it (a comment or a string?)",
        ],
    ),
}  # fmt: skip
"""mistake -> (text in the judged notebook, its misspelt form, the problems reported)."""


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_name_that_does_not_exist_is_reported_with_its_cell(tmp_path: Path, mistake: str) -> None:
    old, new, expected = MISTAKES[mistake]
    course = course_with(tmp_path, (old, new), grade_id="test_call_each" if "comment" in mistake else None)
    assert authoring.problems(JUDGED, course) == expected


def test_a_definitions_grade_id_no_cell_has_is_reported(tmp_path: Path) -> None:
    course = with_cell(make_course(tmp_path), 0, grade_id="helper_cells")  # the helpers cell, renamed
    assert authoring.problems(JUDGED, course) == [
        "test_add: add reads 'check_pairs' from the lesson, which no locked cell in checks.DEFINITIONS (helpers) defines",
        "test_scale: scale reads 'check_vector' from the lesson, which no locked cell in checks.DEFINITIONS (helpers) defines",
        "helpers: named in checks.DEFINITIONS, but no cell of the notebook has this grade_id",
    ]


def test_an_assignment_without_its_checks_file_is_reported_with_each_cell(tmp_path: Path) -> None:
    course = make_course(tmp_path)
    (course / "source" / JUDGED / "checks.py").unlink()
    found = authoring.problems(JUDGED, course)
    assert [p.split(" (")[0] for p in found] == ["test_add: add: checks.py does not load", "test_scale: scale: checks.py does not load", "test_call_each: call_each: checks.py does not load"], found
    assert "the assignment has no checks file" in found[0]


def test_a_course_config_that_would_release_the_checks_is_reported(tmp_path: Path) -> None:
    course = make_course(tmp_path)
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text().replace(', "checks.py"]', "]"))
    assert authoring.problems(JUDGED, course) == [
        "nbgrader_config.py: c.CourseDirectory.ignore lacks 'checks.py': nbgrader would copy the checks into release/"
    ]
    assert authoring.problems("tiny", course) == [], "an assignment without checks needs no such setting"


def test_a_definition_the_judge_does_not_run_is_reported(tmp_path: Path) -> None:
    course = with_cell(make_course(tmp_path), 0, solution=True, locked=False)  # the helpers cell, now an answer
    assert authoring.problems(JUDGED, course) == [
        "test_add: add reads 'check_pairs' from the lesson, which no locked cell in checks.DEFINITIONS (helpers) defines",
        "test_scale: scale reads 'check_vector' from the lesson, which no locked cell in checks.DEFINITIONS (helpers) defines",
        "helpers: named in checks.DEFINITIONS, but it is not a locked code cell: the judge does not run it",
    ]


def test_a_check_outside_a_graded_test_cell_is_reported(tmp_path: Path) -> None:
    course = with_cell(make_course(tmp_path), 2, grade=False)  # test_add, no longer graded
    assert authoring.problems(JUDGED, course) == [
        "test_add: calls evidence.check, but is not a graded test cell: the judge never runs its checks"
    ]


def with_checks(course: Path, pairs: str = "check_pairs") -> Path:
    """``course`` with the judged assignment's ``add`` check replaced by ``CHECKS``'s (defined after the original)."""
    checks = course / "source" / JUDGED / "checks.py"
    checks.write_text(checks.read_text() + "\n\n" + CHECKS.replace("{pairs}", pairs))
    return course


def test_a_reproducible_mark_on_a_key_not_passed_or_a_check_not_replayed_is_reported(tmp_path: Path) -> None:
    course = make_course(tmp_path)
    checks = course / "source" / JUDGED / "checks.py"
    checks.write_text(checks.read_text() + (
        "\n\nfrom grader.checks import reproducible\n\n\n"
        "add = reproducible('sums', 'total', message='differs from run to run')(add)\n"
    ))  # fmt: skip
    assert authoring.problems(JUDGED, course) == [
        "test_add: add marks outputs reproducible, but is not @replayed: no second run is there to compare",
        "test_add: add marks evidence key 'total' reproducible, which the test does not pass",
    ]


def test_keys_and_names_read_through_an_alias_and_a_helper_are_seen(tmp_path: Path) -> None:
    course = with_checks(make_course(tmp_path / "both"))
    assert authoring.problems(JUDGED, course) == []
    first_only = with_checks(course_with(tmp_path / "first-only", (", sums=[add(a, b) for a, b in check_pairs(evidence.drawn())]", "")))
    assert authoring.problems(JUDGED, first_only) == ["test_add: add reads evidence key 'sums', which the test does not pass"]


def test_a_lesson_name_read_by_a_helper_is_checked(tmp_path: Path) -> None:
    course = with_checks(make_course(tmp_path), pairs="check_pairz")
    assert authoring.problems(JUDGED, course) == [
        "test_add: add reads 'check_pairz' from the lesson, which no locked cell in checks.DEFINITIONS (helpers) defines"
    ]


def test_validate_fails_naming_the_problems_and_runs_nothing(tmp_path: Path) -> None:
    course = course_with(tmp_path, ('"add"', '"ad"'))
    lines: list[str] = []
    assert validate.main([JUDGED], course, log=lines.append) == 1
    assert lines == ["judged tests: PROBLEMS (its notebooks are not run)", "  test_add: ad: checks.py has no function ad"]
    assert validate.check_tests("tiny", course, log=lines.append) and lines[-1] == "tiny tests: ok"


class Refuses(Executor):
    """An executor that records what it was handed, and grades nothing."""

    def __init__(self):
        self.submitted: list = []

    def submit(self, fn, /, *args, **kwargs):
        self.submitted.append(args)
        raise AssertionError("nothing should be graded")


def test_autograde_refuses_before_grading_anything(tmp_path: Path) -> None:
    course = course_with(tmp_path, ("sums=[", "sum=["))
    submit(course, "student", JUDGED, judged_notebook())
    executor = Refuses()
    with pytest.raises(autograde.AutogradeError) as refused:
        autograde.autograde(course, JUDGED, executor=executor, progress=False, sandbox=False)
    message = str(refused.value)
    assert message.startswith("judged: its tests name what does not exist; nothing was graded:"), message
    assert "test_add: passes sum=... to add, which never reads it" in message
    assert executor.submitted == []
    assert not (course / autograde.LEDGER).exists() and not (course / "autograded").exists()
    assert not (course / "gradebook.db").exists()  # the assignment was not even recorded
