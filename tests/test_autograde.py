"""The demo class, autograded with nbgrader, scores exactly as each submission should."""

from __future__ import annotations

from grader import demo
from grader.autograde import Result


def test_student_scores_match_expectation(lesson: str, student: str, graded_demo_class: dict) -> None:
    result: Result = graded_demo_class[lesson][student]
    expected = demo.expected_scores(lesson, student)
    if expected is None:
        assert result.error, f"{student}: graded without error, but grading must fail"
        return
    assert result.error is None, f"{student}: grading failed: {result.error}"
    wrong = [
        f"cell {gid}: scored {result.scores.get(gid)}, expected {want:g}"
        for gid, want in expected.items()
        if result.scores.get(gid) != want
    ]
    assert not wrong, f"{student} ({lesson}):\n  " + "\n  ".join(wrong)


def test_every_demo_student_was_graded(lesson: str, graded_demo_class: dict) -> None:
    assert sorted(graded_demo_class[lesson]) == sorted(demo.students(lesson))


def test_reference_gets_full_marks(lesson: str, graded_demo_class: dict) -> None:
    reference = graded_demo_class[lesson][demo.REFERENCE]
    assert reference.error is None, reference.error
    assert reference.max_total > 0
    assert reference.total == reference.max_total, reference.scores


def test_blank_gets_zero_without_crashing(lesson: str, graded_demo_class: dict) -> None:
    blank = graded_demo_class[lesson][demo.BLANK]
    assert blank.error is None, f"blank release crashed the grader: {blank.error}"
    assert blank.total == 0, blank.scores


def test_broken_notebook_is_an_error_and_the_rest_are_graded(lesson: str, graded_demo_class: dict) -> None:
    results = graded_demo_class[lesson]
    assert results[demo.BROKEN].error, "an invalid notebook must be reported as an error"
    others = {s: r.error for s, r in results.items() if s != demo.BROKEN}
    assert not any(others.values()), others
