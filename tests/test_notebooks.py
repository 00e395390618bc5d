"""Validate both ways: the source passes every test, the release fails every graded test.

Each notebook runs once in the suite: the demo class's ``reference`` student is the source and its
``blank`` student the release, both executed top to bottom by nbgrader autograde (with
``NBGRADER_EXECUTION=autograde``, as when grading a class); these checks read what they left in
``autograded/``.
"""

from __future__ import annotations

from pathlib import Path

from grader import demo, notebooks, validate


def executed(course: Path, student: str, lesson: str) -> validate.Run:
    path = course / "autograded" / student / lesson / f"{lesson}.ipynb"
    nb = notebooks.read(path)
    cells = [validate.cell_run(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    return validate.Run(path, 0.0, cells, nb)


def test_source_runs_clean_top_to_bottom(lesson: str, graded_demo_class: dict, demo_course: Path) -> None:
    reference = graded_demo_class[lesson][demo.REFERENCE]
    print(f"\n{lesson} source (reference student): graded in {reference.seconds:.1f} s")
    problems = validate.source_problems(executed(demo_course, demo.REFERENCE, lesson))
    assert not problems, "source notebook:\n  " + "\n  ".join(problems)


def test_release_fails_every_graded_test(lesson: str, graded_demo_class: dict, demo_course: Path) -> None:
    run = executed(demo_course, demo.BLANK, lesson)
    problems = validate.release_problems(run)
    assert not problems, "release notebook:\n  " + "\n  ".join(problems)
    assert any(c.test for c in run.cells), "the release has no test cells"
