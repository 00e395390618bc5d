"""Grade a class: one ``nbgrader autograde`` subprocess per student, scores from the gradebook.

A broken submission (invalid JSON, no notebook, dead kernel, timeout) becomes an error for
that student, with a one-line reason, and never stops the batch. nbgrader 0.9.6 exits 1 for
such a student but may still leave rows in the gradebook (an invalid notebook gets grades
"needing manual grading", which read as 0), so the exit code decides, not the gradebook.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from nbgrader.api import Gradebook, MissingEntry
from traitlets.config.loader import PyFileConfigLoader

from . import notebooks
from .data import stage
from .paths import DATA_ENV, REPO, default_data_root, default_mirror, nbgrader_cmd, source_notebook, tool_env
from .release import ReleaseError, record

STUDENT_TIMEOUT = 1800
"""Seconds for one student's whole autograde run (cells have their own limit in the config)."""
EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)$")
GENERIC = ("There was an error processing", "Please see the the above traceback", "Did you mean")


class AutogradeError(RuntimeError):
    """The class cannot be graded at all (as opposed to one broken submission)."""


@dataclass
class Result:
    """One student's grade for one assignment."""

    student: str
    scores: dict[str, float | None] = field(default_factory=dict)
    """grade_id -> score (None: needs manual grading), in notebook order."""
    max_scores: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    @property
    def total(self) -> float | None:
        return None if self.error else sum(s or 0.0 for s in self.scores.values())

    @property
    def max_total(self) -> float:
        return sum(self.max_scores.values())


def reason(log: str, returncode: int) -> str:
    """One line saying why nbgrader failed for a student, taken from its log."""
    exceptions = [m.group(1).split(".")[-1] + ": " + m.group(2) for m in map(EXCEPTION_LINE.match, log.splitlines()) if m]
    if exceptions:
        return exceptions[-1][:200]
    errors = [line.split("]", 1)[-1].strip() for line in log.splitlines() if "| ERROR]" in line]
    errors = [e for e in errors if not e.startswith(GENERIC)]
    return (errors[-1] if errors else f"nbgrader exited with code {returncode}")[:200]


def run_student(
    course_dir: Path, assignment: str, student: str, data_root: Path, timeout: float = STUDENT_TIMEOUT
) -> str | None:
    """Autograde one student in its own process; return an error line, or None on success."""
    cmd = nbgrader_cmd("autograde", assignment, "--student", student, "--force")
    env = tool_env(**{DATA_ENV: str(data_root)})
    # A session of its own, so a timeout also ends the kernel nbgrader started.
    proc = subprocess.Popen(
        cmd, cwd=course_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return f"timed out after {timeout:g} s"
    return reason(log, proc.returncode) if proc.returncode != 0 else None


def gradebook_url(course_dir: Path) -> str:
    """SQLite URL of a course directory's gradebook."""
    return f"sqlite:///{(course_dir / 'gradebook.db').resolve()}"


def course_id(course_dir: Path) -> str:
    """``c.CourseDirectory.course_id`` from the course's nbgrader_config.py."""
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course_dir)).load_config()
    return config.CourseDirectory.get("course_id", "default_course")


def read_scores(course_dir: Path, assignment: str, student: str) -> tuple[dict[str, float | None], dict[str, float]]:
    """(scores, max scores) per graded cell of a student's notebook, from the gradebook."""
    with Gradebook(gradebook_url(course_dir), course_id(course_dir)) as gb:
        try:
            submitted = gb.find_submission_notebook(assignment, assignment, student)
        except MissingEntry:
            return {}, {}
        scores, maxima = {}, {}
        for grade in submitted.grades:
            manual = grade.needs_manual_grade and grade.manual_score is None
            scores[grade.name] = None if manual else float(grade.score)
            maxima[grade.name] = float(grade.max_score)
    return scores, maxima


def source_points(course_dir: Path, assignment: str) -> dict[str, float]:
    """grade_id -> points of the graded cells, in notebook order."""
    return notebooks.graded_points(notebooks.read(source_notebook(assignment, course_dir)))


def ordered(mapping: dict, order: list[str]) -> dict:
    """``mapping`` re-keyed in ``order`` (unknown keys last)."""
    return {k: mapping[k] for k in [*order, *sorted(set(mapping) - set(order))] if k in mapping}


def student_folders(course_dir: Path, students: Iterable[str] | None = None) -> list[str]:
    """Student ids: folders of ``submitted/`` (or the given ones), sorted."""
    if students:
        return list(students)
    submitted = course_dir / "submitted"
    return sorted(p.name for p in submitted.iterdir() if p.is_dir()) if submitted.is_dir() else []


def autograde(
    course_dir: Path,
    assignment: str,
    students: Iterable[str] | None = None,
    data_root: Path | None = None,
    timeout: float = STUDENT_TIMEOUT,
) -> list[Result]:
    """Autograde every student folder of ``<course_dir>/submitted/`` (or the given students).

    The assignment is first recorded in the gradebook from ``source/`` (what
    ``nbgrader generate_assignment`` does), so grading uses the current tests.
    """
    course_dir = Path(course_dir).resolve()
    root = Path(data_root).resolve() if data_root else default_data_root()
    try:
        record(assignment, course_dir)
    except ReleaseError as exc:
        raise AutogradeError(f"cannot record {assignment} in {course_dir / 'gradebook.db'}: {exc}") from exc
    points = source_points(course_dir, assignment)
    order = list(points)
    results = []
    for student in student_folders(course_dir, students):
        start = time.perf_counter()
        error = run_student(course_dir, assignment, student, root, timeout)
        scores, maxima = read_scores(course_dir, assignment, student)
        if error:
            scores, maxima = {}, points
        results.append(Result(student, ordered(scores, order), ordered(maxima, order), error, time.perf_counter() - start))
    return results


def fmt(x: float | None) -> str:
    """A score as text: integers without decimals, None as '-'."""
    return "-" if x is None else f"{x:g}"


def format_table(results: list[Result]) -> str:
    """Plain-text grade table: student, total/max, one numbered column per graded cell, error."""
    cells = list(dict.fromkeys(k for r in results for k in r.max_scores))
    maxima = {k: v for r in results for k, v in r.max_scores.items()}
    header = ["student", "total", *[f"[{i}]" for i in range(1, len(cells) + 1)], "error"]
    rows = [
        [r.student, f"{fmt(r.total)}/{fmt(r.max_total)}", *[fmt(r.scores.get(c)) for c in cells], r.error or ""]
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[-1] for row in [header, *rows]]
    legend = [f"[{i}] {c} ({fmt(maxima[c])} pt)" for i, c in enumerate(cells, 1)]
    return "\n".join([line.rstrip() for line in lines] + legend)


def main(assignment: str, students: list[str] | None = None, log: Callable[[str], None] = print) -> int:
    """``grader autograde``: grade the repo's submitted/ folder and print the table."""
    root = default_data_root()
    stage(root, default_mirror())
    try:
        results = autograde(REPO, assignment, students, root)
    except AutogradeError as exc:
        log(str(exc))
        return 1
    if not results:
        log(f"no student folders in {REPO / 'submitted'}")
        return 1
    log(format_table(results))
    return int(any(r.error for r in results))
