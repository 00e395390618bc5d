"""The demo class, autograded with nbgrader, scores exactly as each submission should."""

from __future__ import annotations

from grader import demo, report
from grader.autograde import Result


def test_student_scores_match_expectation(lesson: str, student: str, graded_demo_class: dict) -> None:
    result: Result = graded_demo_class[lesson][student]
    expected = demo.expected_scores(lesson, student)
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


def test_broken_notebook_scores_zero_with_a_reason_and_the_rest_are_graded(lesson: str, graded_demo_class: dict) -> None:
    results = graded_demo_class[lesson]
    broken = results[demo.BROKEN]
    assert broken.total == 0 and broken.max_total > 0, broken
    assert any("not valid JSON" in note for note in broken.notes), broken.notes
    errors = {s: r.error for s, r in results.items() if r.error}
    assert not errors, errors


def test_mangled_reference_keeps_full_marks_and_says_what_was_repaired(lesson: str, graded_demo_class: dict) -> None:
    for student in demo.REPAIRED.get(lesson, {}):
        result = graded_demo_class[lesson][student]
        assert result.error is None and result.total == result.max_total, (student, result.error, result.scores)
        assert result.notes, f"{student}: repaired without a note saying so"


def test_the_report_flags_exactly_the_cells_a_trick_made_pass_in_the_kernel(lesson: str, graded_demo_class: dict, demo_course) -> None:
    """No honest submission is ever flagged; each tampering submission is, on the cells its trick made pass."""
    results = graded_demo_class[lesson]
    cuda = demo.cuda_present()
    expected = {m.student: sorted(m.flagged_cells(cuda)) for m in demo.misconceptions_for(lesson) if m.flagged_cells(cuda)}
    for student in demo.BLANK_TRICKED.get(lesson, {}):
        if "ipython-hook" in student:  # every test cell "passed" in the kernel, none left evidence
            expected[student] = sorted(results[student].max_scores)
    assert {student: sorted(r.flagged) for student, r in results.items() if r.flagged} == expected
    written = report.write(demo_course, lesson).flagged
    assert {student: sorted(cells.split()) for student, cells in written.items()} == expected
