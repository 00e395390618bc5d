"""The class grader on a tiny course: same scores as nbgrader, parallel, resumable, deterministic,
robust to dead workers, merged into the gradebook as nbgrader merges, acting on the course it is
run in."""

from __future__ import annotations

import dataclasses
import html
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from commands import grader, nbgrader
from tiny_course import CLASS, WorkerKiller, answered, killer, make_course, submit, submit_class

from grader import autograde, gradebook
from grader.paths import tool_env
from grader.records import Submission, digest

TINY = "tiny"


def class_scores(course: Path, students) -> dict[str, dict[str, float | None]]:
    return {s: gradebook.scores(course, TINY, s) for s in students}


def test_pool_gives_each_student_the_expected_scores(graded_tiny) -> None:
    course, expected, results = graded_tiny
    by_student = {r.student: r for r in results}
    assert sorted(by_student) == sorted(expected)
    for student, want in expected.items():
        result = by_student[student]
        assert result.error is None, f"{student}: {result.error}"
        assert result.scores == want, student
        assert gradebook.scores(course, TINY, student) == want, f"{student}: gradebook differs from the result"
    assert any("not valid JSON" in note for note in by_student["broken"].notes), by_student["broken"].notes


def test_pool_scores_are_identical_to_sequential_nbgrader(graded_tiny, tmp_path: Path) -> None:
    course, expected, _ = graded_tiny
    plain = make_course(tmp_path / "plain")
    submit_class(plain)
    assert nbgrader("generate_assignment", TINY, "--force", cwd=plain).returncode == 0
    nbgrader("autograde", TINY, "--force", cwd=plain)  # exits 1: the broken notebook, which it cannot score
    graded = [s for s in expected if s != "broken"]
    sequential = class_scores(plain, graded)
    assert sequential["correct"] == expected["correct"], "plain nbgrader must grade the tiny class"
    assert class_scores(course, graded) == sequential


def test_report_csv_table_png_and_html_agree_with_the_gradebook(graded_tiny) -> None:
    import csv

    from grader import report

    course, expected, _ = graded_tiny
    written = report.write(course, TINY)
    folder = course / "reports" / TINY
    rows = list(csv.DictReader((folder / "grades.csv").open()))
    assert list(rows[0])[: len(report.EXPORT_COLUMNS)] == list(report.EXPORT_COLUMNS)
    assert list(rows[0])[len(report.EXPORT_COLUMNS) :] == ["test_add", "test_scale", "error", "notes", "flagged"]
    # The export columns are exactly what nbgrader export writes from the same gradebook.
    assert nbgrader("export", "--to", str(folder / "export.csv"), cwd=course).returncode == 0
    exported = {r["student_id"]: r for r in csv.DictReader((folder / "export.csv").open())}
    assert {r["student_id"]: {k: r[k] for k in report.EXPORT_COLUMNS} for r in rows} == exported
    by_student = {r["student_id"]: r for r in rows}
    for student, want in expected.items():
        assert {t: float(by_student[student][t]) for t in want} == want
    assert "not valid JSON" in by_student["broken"]["notes"]
    stats = {t.grade_id: t for t in written.tests}
    assert (stats["test_add"].graded, stats["test_add"].passed) == (5, 2)
    assert (stats["test_scale"].graded, stats["test_scale"].passed) == (5, 2)
    assert set(stats["test_scale"].failures) == {
        "AssertionError: scale must work on floats", "NotImplementedError", "no such cell was graded (see the notes)"
    }
    tests_csv = {r["test_cell"]: r for r in csv.DictReader((folder / "tests.csv").open())}
    assert float(tests_csv["test_add"]["pass_rate"]) == 0.4
    for png in ("scores.png", "pass-rates.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    page = (folder / "index.html").read_text()
    assert "scores.png" in page and "pass-rates.png" in page
    assert all(student in page for student in expected)
    assert "scale must work on floats" in page


def test_names_feedback_shows_failures_but_never_hidden_test_code(graded_tiny) -> None:
    from tiny_course import HIDDEN_ADD, HIDDEN_SCALE

    from grader import report

    course, expected, _ = graded_tiny
    written = report.write(course, TINY)
    assert len(written.feedback) == len(expected)
    pages = {p.parts[-3]: p.read_text() for p in written.feedback}
    for student, page in pages.items():
        for secret in (HIDDEN_ADD, HIDDEN_SCALE, "BEGIN HIDDEN TESTS", "add(-7, 7)", "scale(0.25)"):
            assert secret not in page, f"{student}'s feedback shows hidden test code: {secret!r}"
    assert "add must handle negative numbers" in pages["positives-only"]
    assert "scale must work on floats" in pages["ints-only"]
    assert "not valid JSON" in pages["broken"]


def test_full_feedback_is_nbgraders_own(graded_tiny, tmp_path: Path) -> None:
    from grader import report

    course, _, _ = graded_tiny
    config = course / "nbgrader_config.py"
    original = config.read_text()
    try:
        config.write_text(original + '\nc.GraderReport.feedback = "full"\n')
        written = report.write(course, TINY)
    finally:
        config.write_text(original)
    page = (course / "feedback" / "positives-only" / TINY / f"{TINY}.html").read_text()
    shown = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert written.feedback and "add(-7, 7)" in shown, "nbgrader's own feedback shows the hidden tests"


def test_resume_after_the_coordinator_is_killed(tmp_path: Path) -> None:
    course = make_course(tmp_path / "course")
    expected = submit_class(course)
    ledger = course / ".grader" / TINY
    proc = subprocess.Popen(
        [sys.executable, "-m", "grader", "autograde", TINY, "--course", str(course), "--workers", "1"],
        env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and len(list(ledger.glob("*.json")) if ledger.is_dir() else []) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and everything it started
    proc.wait()
    done = {p.stem: p.stat().st_mtime_ns for p in ledger.glob("*.json")}
    assert 2 <= len(done) < len(expected), f"killed too late or too early: {sorted(done)}"

    rerun = grader("autograde", TINY, "--workers", "2", cwd=course, timeout=600)
    assert f"{len(done)} of {len(expected)} already graded" in rerun.stderr, rerun.stderr
    for student, mtime in done.items():
        assert (ledger / f"{student}.json").stat().st_mtime_ns == mtime, f"{student} was graded again"
    for student, want in expected.items():
        assert gradebook.scores(course, TINY, student) == want, student

    # A changed submission is graded again, alone; --force regrades everyone.
    submit(course, "blank", TINY, answered())
    again = grader("autograde", TINY, cwd=course, timeout=600)
    assert f"{len(expected) - 1} of {len(expected)} already graded" in again.stderr, again.stderr
    assert gradebook.scores(course, TINY, "blank") == expected["correct"]
    forced = grader("autograde", TINY, "--force", cwd=course, timeout=600)
    assert "already graded" not in forced.stderr
    assert all((ledger / f"{s}.json").stat().st_mtime_ns != m for s, m in done.items())


def test_three_grades_of_one_submission_are_identical(tmp_path: Path) -> None:
    from tiny_course import dice_notebook

    course = make_course(tmp_path / "course")
    copies = ["first", "second", "third"]
    for student in copies:  # the same submission three times, graded side by side
        submit(course, student, "dice", dice_notebook())
    results = autograde.autograde(course, "dice", workers=2, progress=False)
    assert [r.error for r in results] == [None] * 3, [r.error for r in results]
    scores = [r.scores["test_dice"] for r in results]
    assert 0 < scores[0] < 10, "the dice cell scores a random number: partial credit"
    assert scores == [scores[0]] * 3, f"three grades differ: {scores}"


def test_a_dead_worker_costs_a_retry_never_the_batch(tmp_path: Path) -> None:
    course = make_course(tmp_path / "course")
    expected = submit_class(course, {s: CLASS[s] for s in ("correct", "positives-only", "blank")})
    submit(course, "kills-once", TINY, killer("once"))
    submit(course, "kills-always", TINY, killer("always"))
    with WorkerKiller() as oom:
        results = {r.student: r for r in autograde.autograde(course, TINY, workers=2, progress=False)}
    assert oom.kills.count("once") == 1 and oom.kills.count("always") >= 2, oom.kills
    once = results["kills-once"]
    assert once.error is None and once.scores == expected["correct"] and once.attempts in (2, 3), once
    always = results["kills-always"]
    assert always.error and "killed the worker 2 times" in always.error, always
    for student, want in expected.items():
        assert results[student].error is None and results[student].scores == want, results[student]
        assert gradebook.scores(course, TINY, student) == want


def test_regrading_keeps_manual_grades_comments_late_penalties_and_extensions(tmp_path: Path) -> None:
    course = make_course(tmp_path / "course")
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + '\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    submit(course, "late", TINY, answered(), timestamp="2026-01-02 12:00:00 UTC")
    submit(course, "excused", TINY, answered(), timestamp="2026-01-02 12:00:00 UTC")
    submit(course, "on-time", TINY, answered("return a - b"), timestamp="2025-12-31 12:00:00 UTC")
    from grader.release import record

    record(TINY, course, gradebook.db_url(course))
    with gradebook.open_course(course) as gb:
        gb.update_or_create_assignment(TINY, duedate="2026-01-01 00:00:00 UTC")
        for student in ("late", "excused", "on-time"):
            gb.update_or_create_student(student, first_name=student.title())
        gb.update_or_create_submission(TINY, "excused", extension=timedelta(days=3))
    autograde.autograde(course, TINY, workers=2, progress=False)
    with gradebook.open_course(course) as gb:
        late = gb.find_submission(TINY, "late")
        assert late.score == 3 and late.late_submission_penalty == 3, "late, penalty_method zero: all points off"
        assert late.timestamp.isoformat().startswith("2026-01-02T12:00:00")
        assert gb.find_submission(TINY, "excused").late_submission_penalty == 0, "the extension counts"
        assert gb.find_submission(TINY, "on-time").late_submission_penalty == 0
        grade = gb.find_grade("test_add", TINY, TINY, "on-time")
        assert grade.auto_score == 0
        grade.manual_score = 1.5
        comment = gb.find_comment("add", TINY, TINY, "on-time")
        comment.manual_comment = "Close: check the sign."
        gb.db.commit()
    autograde.autograde(course, TINY, workers=2, force=True, progress=False)
    with gradebook.open_course(course) as gb:
        grade = gb.find_grade("test_add", TINY, TINY, "on-time")
        assert (grade.manual_score, grade.auto_score, grade.score) == (1.5, 0, 1.5)
        assert grade.needs_manual_grade, "an overridden auto grade is flagged for review, as nbgrader does"
        assert gb.find_comment("add", TINY, TINY, "on-time").manual_comment == "Close: check the sign."
        assert gb.find_student("late").first_name == "Late"
        assert gb.find_submission(TINY, "excused").extension == timedelta(days=3)
        assert len(gb.find_assignment(TINY).submissions) == 3


def test_the_grader_acts_on_the_course_it_is_run_in(tmp_path: Path) -> None:
    course = make_course(tmp_path / "course")
    submit(course, "correct", TINY, answered())
    done = grader("autograde", TINY, cwd=course, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert gradebook.scores(course, TINY, "correct") == CLASS["correct"][1]
    assert (course / "autograded" / "correct" / TINY / f"{TINY}.ipynb").is_file()
    assert (course / "reports" / TINY / "index.html").is_file()
    elsewhere = grader("autograde", TINY, cwd=tmp_path, timeout=60)
    assert elsewhere.returncode == 2 and "not an nbgrader course directory" in elsewhere.stderr


def test_the_worker_is_a_plain_function_of_picklable_values(graded_tiny) -> None:
    import pickle

    course, _, _ = graded_tiny
    packed = autograde.load_assignment(course, TINY)
    submission = Submission("s", {"tiny.ipynb": b"{}"})
    settings = autograde.settings_for(course, 2, None)
    assert pickle.loads(pickle.dumps((submission, packed, settings))) == (submission, packed, settings)
    changed = dataclasses.replace(packed, files={**packed.files, "tiny.ipynb": packed.files["tiny.ipynb"] + b" "})
    assert changed.digest != packed.digest, "a change to the assignment's tests changes its digest"
    assert digest({"a": b"1"}) != digest({"a": b"2"})
    assert settings.threads == max(1, autograde.cores() // 2)


def test_student_kernels_never_see_secrets_from_the_graders_environment(monkeypatch, tmp_path: Path) -> None:
    from grader.records import Assignment, Result, Settings
    from grader.worker import Context, kernel_env

    monkeypatch.setenv("NBGRADER_DB_URL", "postgresql+psycopg://grader:hunter2@db/course")
    monkeypatch.setenv("PGPASSWORD", "hunter2")
    monkeypatch.setenv("LANG", "C.UTF-8")
    ctx = Context(Submission("s", {}), Assignment(TINY, {}, b"", b"", "course"), Settings(threads=3), tmp_path, Result("s", TINY))
    env = kernel_env(ctx)
    assert "hunter2" not in " ".join(env.values())
    assert env["LANG"] == "C.UTF-8" and env["OMP_NUM_THREADS"] == "3" and env["PYTHONHASHSEED"] == "0"
