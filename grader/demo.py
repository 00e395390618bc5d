"""The bundled demo class: submissions built in code from each lesson, with known scores.

Students: ``reference`` (the source, solutions included), ``blank`` (the release unchanged),
one per ``grader.misconceptions.MISCONCEPTIONS[assignment]`` entry (the reference with one
solution cell edited, some with a kernel trick added), for the lessons in ``BLANK_TRICKED`` the
release with a trick (0 expected), for the lessons in ``REPAIRED``, the reference as students' tools mangle
it (``grader.mangle``; full marks expected), and ``broken-notebook`` (not JSON: scored 0, with a
note). Expected scores are per test cell.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Callable, Sequence

import nbformat
from nbgrader.api import MissingEntry

from . import gradebook, mangle, notebooks, report, tricks
from .autograde import autograde_many, format_table
from .data import DatasetError, stage
from .misconceptions import MISCONCEPTIONS, Misconception
from .paths import REPO, default_data_root, default_mirror, lessons, release_notebook, source_notebook
from .release import generate, write_readme
from .records import Result

REFERENCE, BLANK, BROKEN = "reference", "blank", "broken-notebook"
REPAIRED: dict[str, dict[str, Callable]] = {
    "saving-and-loading": {
        # student -> (the reference as a student submits it) -> the submitted files
        "colab-copy": lambda a, nb: {f"Copy of {a}.ipynb": mangle.colab_saved(nb)},
        "cells-rearranged": lambda a, nb: {
            f"{a}.ipynb": nbformat.writes(mangle.stripped(mangle.answers_split_and_merged(mangle.tests_rearranged(nb)))).encode()
        },
    },
}
"""Submissions of the reference solution that a Colab save, a metadata-stripping editor or a
student's rearranging has mangled; the grader must repair them to full marks."""
BROKEN_TEXT = '{"cells": [ this is not a notebook\n'
BLANK_TRICKED: dict[str, dict[str, str]] = {
    "saving-and-loading": {"blank+ipython-hook": tricks.IPYTHON_HOOK},
    "gpu-training": {"blank+ipython-hook": tricks.IPYTHON_HOOK},
}
"""The release notebook with a trick (``grader.tricks``) in its first answer cell: every test scores 0."""


class DemoError(ValueError):
    """A misconception cannot be built from the current source notebook."""


def misconceptions_for(assignment: str, given: Sequence[Misconception] | None = None) -> Sequence[Misconception]:
    """``given``, else the lesson's entry in MISCONCEPTIONS (none if it has no entry)."""
    return MISCONCEPTIONS.get(assignment, ()) if given is None else given


def students(assignment: str, misconceptions: Sequence[Misconception] | None = None) -> list[str]:
    """Student ids of the demo class for a lesson."""
    ids = [
        REFERENCE, BLANK, *(m.student for m in misconceptions_for(assignment, misconceptions)),
        *REPAIRED.get(assignment, {}), *BLANK_TRICKED.get(assignment, {}), BROKEN,
    ]  # fmt: skip
    duplicates = sorted({s for s in ids if ids.count(s) > 1})
    if duplicates:
        raise DemoError(f"{assignment}: student ids used twice: {', '.join(duplicates)}")
    return ids


def apply_edits(nb, m: Misconception):
    """A copy of the reference notebook with the submission's edits in its cells."""
    nb = copy.deepcopy(nb)
    cells = notebooks.cells_by_grade_id(nb)
    for grade_id, edits in m.cell_edits():
        if grade_id not in cells:
            raise DemoError(f"{m.student}: no cell with grade_id {grade_id!r}")
        cell = cells[grade_id]
        for old, new in edits:
            count = cell.source.count(old)
            if count != 1:
                raise DemoError(f"{m.student}: cell {grade_id!r} contains {old!r} {count} times, expected exactly once")
            cell.source = cell.source.replace(old, new)
    for grade_id, source in m.written:
        if grade_id not in cells:
            raise DemoError(f"{m.student}: no cell with grade_id {grade_id!r}")
        cells[grade_id].source = source
    if m.trick:
        cells[m.cell].source += "\n" + m.trick
    return nb


def submission_path(course_dir: Path, student: str, assignment: str) -> Path:
    """``submitted/<student>/<assignment>/<assignment>.ipynb``."""
    return course_dir / "submitted" / student / assignment / f"{assignment}.ipynb"


def build(course_dir: Path, assignment: str, misconceptions: Sequence[Misconception] | None = None) -> list[str]:
    """Write the demo class's submissions into ``<course_dir>/submitted/``; return student ids."""
    ms = misconceptions_for(assignment, misconceptions)
    reference = notebooks.read(source_notebook(assignment, course_dir))
    built = {m.student: apply_edits(reference, m) for m in ms}  # fail before writing anything
    for student in students(assignment, ms):
        folder = submission_path(course_dir, student, assignment).parent
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    notebooks.write(reference, submission_path(course_dir, REFERENCE, assignment))
    shutil.copy(release_notebook(assignment, course_dir), submission_path(course_dir, BLANK, assignment))
    for student, trick in BLANK_TRICKED.get(assignment, {}).items():
        tricked = notebooks.read(release_notebook(assignment, course_dir))
        next(c for c in tricked.cells if notebooks.is_solution(c)).source += "\n" + trick
        notebooks.write(tricked, submission_path(course_dir, student, assignment))
    for student, nb in built.items():
        notebooks.write(nb, submission_path(course_dir, student, assignment))
    submission_path(course_dir, BROKEN, assignment).write_text(BROKEN_TEXT)
    answered = mangle.answered(reference, notebooks.read(release_notebook(assignment, course_dir)))
    for student, mangled in REPAIRED.get(assignment, {}).items():
        folder = submission_path(course_dir, student, assignment).parent
        for name, content in mangled(assignment, answered).items():
            (folder / name).write_bytes(content)
    return students(assignment, ms)


def expected_scores(
    assignment: str,
    student: str,
    course_dir: Path = REPO,
    misconceptions: Sequence[Misconception] | None = None,
) -> dict[str, float]:
    """grade_id -> expected score of each test cell."""
    ms = misconceptions_for(assignment, misconceptions)
    full = notebooks.test_points(notebooks.read(source_notebook(assignment, course_dir)))
    if student == REFERENCE or student in REPAIRED.get(assignment, {}):
        return full
    if student in (BLANK, BROKEN, *BLANK_TRICKED.get(assignment, {})):
        return {gid: 0.0 for gid in full}
    by_student = {m.student: m for m in ms}
    if student not in by_student:
        raise DemoError(f"{student}: not a demo student of {assignment}")
    lost = by_student[student].lost_cells(cuda=cuda_present())
    unknown = lost - set(full)
    if unknown:
        raise DemoError(f"{student}: loses {sorted(unknown)}, which are not test cells of {assignment}")
    return {gid: 0.0 if gid in lost else pts for gid, pts in full.items()}


def cuda_present() -> bool:
    """Whether the notebooks graded here run on CUDA (some device bugs only show there)."""
    import torch

    return torch.cuda.is_available()


def mismatches(result: Result, expected: dict[str, float]) -> list[str]:
    """How a graded student differs from its expectation ([] if it matches)."""
    if result.error:
        return [f"error: {result.error}"]
    return [
        f"{gid}: scored {result.scores.get(gid)}, expected {want:g}"
        for gid, want in expected.items()
        if result.scores.get(gid) != want
    ]


def forget(course_dir: Path, assignment: str, student_ids: Sequence[str]) -> None:
    """Remove earlier demo submissions from the gradebook so the lesson can be re-recorded."""
    if gradebook.db_url(course_dir).startswith("sqlite") and not (course_dir / "gradebook.db").is_file():
        return
    with gradebook.open_course(course_dir) as gb:
        for student in student_ids:
            try:
                gb.remove_submission(assignment, student)
            except MissingEntry:
                pass


def grade_class(
    course_dir: Path,
    data_root: Path,
    assignments: Sequence[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, list[Result]]:
    """Regenerate release/, build and autograde the demo classes of every lesson in ``course_dir``, in one parallel batch."""
    ids = {}
    for assignment in assignments or lessons(course_dir):
        generate(assignment, course_dir)
        ids[assignment] = build(course_dir, assignment)
        forget(course_dir, assignment, ids[assignment])
    students = list(dict.fromkeys(s for group in ids.values() for s in group))
    graded = autograde_many(course_dir, list(ids), students, data_root, workers, force=True, progress=progress)
    return {a: [r for r in results if r.student in ids[a]] for a, results in graded.items()}


def main(course: Path = REPO, workers: int | None = None, log: Callable[[str], None] = print) -> int:
    """``grader demo``: grade the demo class of the course, compare with the expected scores, report."""
    root = default_data_root(course)
    try:
        stage(root, default_mirror(course), require=True)
    except DatasetError as exc:
        log(str(exc))
        return 1
    status = 0
    graded = grade_class(course, root, workers=workers)
    write_readme(course)
    for assignment, results in graded.items():
        log(f"== {assignment}")
        log(format_table(results))
        about = {m.student: f" ({m.description})" for m in misconceptions_for(assignment)}
        for result in results:
            problems = mismatches(result, expected_scores(assignment, result.student, course))
            verdict = "as expected" if not problems else "MISMATCH " + "; ".join(problems)
            log(f"{result.student}{about.get(result.student, '')}: {verdict}")
            status |= bool(problems)
        log(report.write(course, assignment).summary())
    return status
