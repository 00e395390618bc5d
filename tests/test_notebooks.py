"""Validate both ways: the source passes every test, the release fails every graded test.

Each notebook runs once in the suite: the demo class's ``reference`` student is the source and its
``blank`` student the release, both executed top to bottom by nbgrader autograde (with
``NBGRADER_EXECUTION=autograde``, as when grading a class); these checks read what they left in
``autograded/``.
"""

from __future__ import annotations

from pathlib import Path

from grader import demo, notebooks, validate
from grader.misconceptions import MISCONCEPTIONS


def executed(course: Path, student: str, lesson: str) -> validate.Run:
    path = course / "autograded" / student / lesson / f"{lesson}.ipynb"
    nb = notebooks.read(path)
    cells = [validate.cell_run(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    return validate.Run(path, 0.0, cells, nb)


def test_source_runs_clean_top_to_bottom(lesson: str, graded_demo_class: dict, demo_course: Path) -> None:
    reference = graded_demo_class[lesson][demo.REFERENCE]
    print(f"\n{lesson} source (reference student): graded in {reference.seconds:.1f} s")
    run = executed(demo_course, demo.REFERENCE, lesson)
    slowest = validate.cell_seconds(run.executed)[:3]
    print("  slowest cells: " + ", ".join(f"{name} {seconds:.1f} s" for seconds, _, name in slowest))
    problems = validate.source_problems(run)
    assert not problems, "source notebook:\n  " + "\n  ".join(problems)


def test_release_fails_every_graded_test(lesson: str, graded_demo_class: dict, demo_course: Path) -> None:
    run = executed(demo_course, demo.BLANK, lesson)
    problems = validate.release_problems(run)
    assert not problems, "release notebook:\n  " + "\n  ".join(problems)
    assert any(c.test for c in run.cells), "the release has no test cells"


def test_correct_variants_run_clean_top_to_bottom(lesson: str, graded_demo_class: dict, demo_course: Path) -> None:
    """Answers written other ways the text allows define only what the text names: every later cell still runs."""
    variants = [m.student for m in MISCONCEPTIONS.get(lesson, ()) if not m.loses and not m.also_loses_on_cuda]
    for student in variants:
        assert graded_demo_class[lesson][student].error is None, graded_demo_class[lesson][student].error
        problems = validate.source_problems(executed(demo_course, student, lesson))
        assert not problems, f"{student} ({lesson}):\n  " + "\n  ".join(problems)
