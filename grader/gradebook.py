"""The course's gradebook, through nbgrader's own API: the single record of grades.

The coordinator merges each worker's result here the way ``nbgrader autograde`` updates its
rows: update or create the student and the submission, set auto scores and auto comments,
never touch a manual score or an instructor's comment, never delete a submission.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import tempfile
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Iterator

from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.exc import SAWarning
from sqlalchemy.pool import NullPool
from traitlets.config.loader import PyFileConfigLoader

from .release import generate_to, record
from .records import Result


def course_config(course_dir: Path):
    """The course's ``nbgrader_config.py`` as a traitlets Config (empty when there is none)."""
    if not (Path(course_dir) / "nbgrader_config.py").is_file():
        from traitlets.config import Config

        return Config()
    return PyFileConfigLoader("nbgrader_config.py", path=str(course_dir)).load_config()


def course_id(course_dir: Path) -> str:
    """``c.CourseDirectory.course_id`` of the course."""
    return course_config(course_dir).CourseDirectory.get("course_id", "default_course")


def db_url(course_dir: Path) -> str:
    """``c.CourseDirectory.db_url`` of the course, else its SQLite ``gradebook.db``."""
    return course_config(course_dir).CourseDirectory.get("db_url") or f"sqlite:///{(Path(course_dir) / 'gradebook.db').resolve()}"


def open_course(course_dir: Path) -> Gradebook:
    """The course's gradebook (use as a context manager)."""
    return Gradebook(db_url(course_dir), course_id(course_dir))


def locked_record(assignment: str, course_dir: Path) -> None:
    """``record`` while holding the course's writer lock."""
    with writing(course_dir):
        record(assignment, course_dir, db_url(course_dir))


RECORDED = Path(".grader") / "recorded"
"""Where the course keeps, per assignment, what its last recording made (``record_assignment``)."""


def record_assignment(course_dir: Path, assignment: str) -> tuple[bytes, dict[str, bytes]]:
    """Record the assignment in the course gradebook from ``source/`` (as generate_assignment does);
    return a private SQLite gradebook holding only the assignment (cells, checksums, due date) and
    the release notebooks generated with it (name -> bytes).

    The two nbgrader runs go side by side. They are skipped where nothing they depend on changed since the
    last recording (the source folder, the config, nbgrader's version: ``recording_key``) and the course
    gradebook still holds the assignment's cells as that recording left them; the due date is always read
    afresh from the course gradebook.
    """
    cache = Path(course_dir) / RECORDED / assignment
    key = recording_key(course_dir, assignment)
    if not (cache_holds(cache, key) and recorded_as(course_dir, assignment, cache / "gradebook.db")):
        with tempfile.TemporaryDirectory(prefix="grader-template-") as tmp, ThreadPoolExecutor(2) as pool:
            path = Path(tmp) / "gradebook.db"
            recorded = pool.submit(locked_record, assignment, course_dir)
            release = generate_to(assignment, course_dir, Path(tmp) / "release", gradebook=path)
            recorded.result()
            shutil.rmtree(cache, ignore_errors=True)
            (cache / "release").mkdir(parents=True)
            shutil.copy(path, cache / "gradebook.db")
            for notebook in sorted(release.glob("*.ipynb")):
                shutil.copy(notebook, cache / "release" / notebook.name)
            (cache / "key").write_text(key)  # last: a recording cut short is never taken for one
    notebooks = {p.name: p.read_bytes() for p in sorted((cache / "release").glob("*.ipynb"))}
    with open_course(course_dir) as course:
        duedate = course.find_assignment(assignment).duedate
    with tempfile.TemporaryDirectory(prefix="grader-template-") as tmp:
        path = Path(tmp) / "gradebook.db"
        shutil.copy(cache / "gradebook.db", path)
        with Gradebook(f"sqlite:///{path}", course_id(course_dir)) as gb:
            gb.update_or_create_assignment(assignment, duedate=duedate)
        return path.read_bytes(), notebooks


def recording_key(course_dir: Path, assignment: str) -> str:
    """What a recording of the assignment depends on: its source folder (scratch files left out), the course
    config and nbgrader's version, as a hash."""
    from importlib.metadata import version

    from .paths import is_scratch
    from .records import digest, read_tree

    config = Path(course_dir) / "nbgrader_config.py"
    parts = {
        "nbgrader": version("nbgrader").encode(),
        "config": config.read_bytes() if config.is_file() else b"",
        "source": digest(read_tree(Path(course_dir) / "source" / assignment, is_scratch)).encode(),
    }
    return digest(parts)


def cache_holds(cache: Path, key: str) -> bool:
    """Whether ``cache`` holds a complete recording made for ``key``."""
    try:
        return (cache / "key").read_text() == key and (cache / "gradebook.db").is_file()
    except OSError:
        return False


def recorded_cells(gb: Gradebook, assignment: str) -> dict[str, list[tuple]] | None:
    """notebook -> its recorded cells (name, kind, checksum or points), as nbgrader recorded them; None if the
    assignment is not in the gradebook."""
    try:
        found = gb.find_assignment(assignment)
    except MissingEntry:
        return None
    return {
        nb.name: sorted(
            [("source", c.name, c.checksum or "") for c in nb.source_cells] + [("grade", c.name, str(c.max_score)) for c in nb.grade_cells]
        )
        for nb in found.notebooks
    }  # fmt: skip


def recorded_as(course_dir: Path, assignment: str, template: Path) -> bool:
    """Whether the course gradebook holds the assignment's cells exactly as the recording in ``template`` has them."""
    with Gradebook(f"sqlite:///{template}", course_id(course_dir)) as gb:
        expected = recorded_cells(gb, assignment)
    with open_course(course_dir) as course:
        return expected is not None and recorded_cells(course, assignment) == expected


def extensions(course_dir: Path, assignment: str) -> dict[str, timedelta]:
    """student -> extension granted on the assignment in the course gradebook."""
    with open_course(course_dir) as gb:
        try:
            found = gb.find_assignment(assignment)
        except MissingEntry:
            return {}
        return {s.student.id: s.extension for s in found.submissions if s.extension is not None}


def has_submission(course_dir: Path, assignment: str, student: str) -> bool:
    """Whether the course gradebook holds a submission of ``student`` for ``assignment``."""
    with open_course(course_dir) as gb:
        try:
            gb.find_submission(assignment, student)
        except MissingEntry:
            return False
        return True


@contextmanager
def writing(course_dir: Path) -> Iterator[None]:
    """Hold the course's writer lock: one coordinator writes the gradebook at a time.

    On PostgreSQL a session advisory lock (coordinators on several machines), on SQLite an
    exclusive lock on ``gradebook.db.lock`` beside the database (nbgrader warns against
    concurrent SQLite writers).
    """
    url = db_url(course_dir)
    if url.startswith("sqlite"):
        path = Path(url.split("sqlite:///", 1)[-1] + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(url, poolclass=NullPool)
    key = int.from_bytes(hashlib.sha256(course_id(course_dir).encode()).digest()[:8], "big", signed=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        engine.dispose()


def merge(course_dir: Path, result: Result) -> None:
    """Merge one worker result into the course gradebook, as nbgrader's autograde would.

    A failed submission keeps its row but all its auto scores are cleared, so it shows as needing
    manual grading (what nbgrader records for a notebook it could not execute).
    """
    with writing(course_dir):
        _merge(course_dir, result)


def _merge(course_dir: Path, result: Result) -> None:
    with open_course(course_dir) as gb, warnings.catch_warnings():
        # nbgrader's add_submission trips SQLAlchemy 2's autoflush warnings; the rows are written.
        warnings.simplefilter("ignore", SAWarning)
        gb.update_or_create_student(result.student)
        extra = {"timestamp": result.timestamp} if result.timestamp else {}
        submission = gb.update_or_create_submission(result.assignment, result.student, **extra)
        for notebook in submission.notebooks:
            graded = result.notebooks.get(notebook.name)
            notebook.late_submission_penalty = graded.late_penalty if graded else None
            for grade in notebook.grades:
                auto = graded.scores.get(grade.name) if graded else None
                grade.auto_score = auto
                # nbgrader's SaveAutoGrades rule: a manual grade, or no auto score, needs review.
                grade.needs_manual_grade = grade.manual_score is not None or auto is None or grade.name in result.undecided
            for comment in notebook.comments:
                comment.auto_comment = graded.comments.get(comment.name) if graded else None
        gb.db.commit()


def scores(course_dir: Path, assignment: str, student: str) -> dict[str, float | None]:
    """grade_id -> score as nbgrader counts it (manual over auto; None while it needs grading)."""
    with open_course(course_dir) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return {}
        return {
            grade.name: None if grade.needs_manual_grade and grade.manual_score is None else float(grade.score)
            for notebook in submission.notebooks
            for grade in notebook.grades
        }
