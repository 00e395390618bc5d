"""The class report and per-student feedback, read from the gradebook and the autograded notebooks.

``grader report ASSIGNMENT`` (and every ``grader autograde``) writes ``reports/<assignment>/``:
- ``grades.csv``: the columns of ``nbgrader export`` plus one column per test cell and the
  grading error, if any;
- ``tests.csv``: per test cell its points, pass rate and most common failure message;
- ``scores.png`` (histogram) and ``pass-rates.png`` (per test), and ``index.html`` showing them;
and feedback per student under ``feedback/<student>/<assignment>/``, by the course's policy
``c.GraderReport.feedback``: ``names`` (default: which checks failed and their messages, never the
hidden tests' code) or ``full`` (nbgrader's own ``generate_feedback``, which shows hidden tests).
"""

from __future__ import annotations

import csv
import html
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nbgrader.api import MissingEntry

from . import gradebook, notebooks
from .judge import FLAG
from .paths import course_dir as find_course, source_notebook
from .release import run_nbgrader, secret_lines

EXPORT_COLUMNS = (
    "assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
    "raw_score", "late_submission_penalty", "score", "max_score",
)  # fmt: skip
"""The columns of ``nbgrader export``, in its order."""
POLICIES = ("names", "full")
REDACTED = "[hidden test code]"
NOT_ATTEMPTED = "NotImplementedError"
MISSING = "no such cell was graded"
"""Failure of a test cell the graded notebook did not have (a missing or unreadable notebook)."""


@dataclass
class TestStat:
    grade_id: str
    points: float
    graded: int = 0
    passed: int = 0
    failures: Counter = field(default_factory=Counter)

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.graded if self.graded else None

    @property
    def common_failure(self) -> str:
        """The most common failure message; an unattempted exercise only when nothing else failed."""
        attempted = Counter({m: n for m, n in self.failures.items() if not m.startswith((NOT_ATTEMPTED, MISSING))})
        if attempted:
            return attempted.most_common(1)[0][0]
        return f"{NOT_ATTEMPTED} (not attempted)" if self.failures else ""


@dataclass
class Report:
    assignment: str
    folder: Path
    rows: list[dict]
    tests: list[TestStat]
    feedback: list[Path]

    @property
    def flagged(self) -> dict[str, str]:
        """student -> the test cells that passed in the kernel and failed the judge."""
        return {r["student_id"]: r["flagged"] for r in self.rows if r.get("flagged")}

    def summary(self) -> str:
        """The per-test table and where the files are, as text for the terminal."""
        width = max([len(t.grade_id) for t in self.tests] + [9])
        lines = [f"{'test cell'.ljust(width)}  points  pass rate  most common failure"]
        for t in self.tests:
            rate = "-" if t.pass_rate is None else f"{t.pass_rate:.0%}"
            lines.append(f"{t.grade_id.ljust(width)}  {t.points:>6g}  {rate:>9}  {t.common_failure[:100]}")
        if self.flagged:
            lines.append(f"{FLAG}: " + "; ".join(f"{student} ({cells})" for student, cells in self.flagged.items()))
        lines.append(f"report: {self.folder / 'index.html'} (grades.csv, tests.csv, scores.png, pass-rates.png)")
        lines.append(f"feedback: {len(self.feedback)} pages under {self.folder.parent.parent / 'feedback'}")
        return "\n".join(lines)


def policy(course_dir: Path) -> str:
    """``c.GraderReport.feedback`` of the course config: ``names`` (default) or ``full``."""
    value = gradebook.course_config(course_dir).GraderReport.get("feedback", "names")
    if value not in POLICIES:
        raise ValueError(f"c.GraderReport.feedback = {value!r}: use one of {', '.join(POLICIES)}")
    return value


def cell_outcome(cell) -> str | None:
    """Why an executed test cell failed, in one line (None if it raised nothing and wrote no stderr)."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            value = " ".join(str(out.get("evalue", "")).split())
            return f"{out.get('ename', 'Error')}: {value}"[:300] if value else out.get("ename", "Error")
    if any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in cell.get("outputs", [])):
        return "wrote to stderr (a test cell must not)"
    return None


def failure_messages(autograded: Path) -> dict[str, str]:
    """grade_id -> failure line of each failed test cell of an autograded notebook."""
    if not autograded.is_file():
        return {}
    try:
        nb = notebooks.read(autograded)
    except Exception:
        return {}
    return {gid: msg for gid, cell in notebooks.cells_by_grade_id(nb).items() if notebooks.is_test(cell) and (msg := cell_outcome(cell))}


def ledger(course_dir: Path, assignment: str) -> dict[str, dict]:
    """student -> what the coordinator's ledger holds for them (error, notes)."""
    folder = course_dir / ".grader" / assignment
    found = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


def text(value) -> str:
    return "" if value is None else str(value)


def grade_rows(course_dir: Path, assignment: str, tests: list[str]) -> list[dict]:
    """One row per student of the gradebook, as ``nbgrader export`` writes it, plus the test cells."""
    filed = ledger(course_dir, assignment)
    rows = []
    with gradebook.open_course(course_dir) as gb:
        found = gb.find_assignment(assignment)
        for student in gb.students:
            row = {
                "assignment": assignment, "duedate": text(found.duedate), "student_id": student.id,
                "last_name": text(student.last_name), "first_name": text(student.first_name),
                "email": text(student.email), "max_score": found.max_score,
            }  # fmt: skip
            try:
                submission = gb.find_submission(assignment, student.id)
            except MissingEntry:
                row.update(timestamp="", raw_score=0.0, late_submission_penalty=0.0, score=0.0)
                row.update(dict.fromkeys(tests, ""))
            else:
                penalty = submission.late_submission_penalty
                row.update(
                    timestamp=text(submission.timestamp), raw_score=submission.score,
                    late_submission_penalty=penalty, score=max(0.0, submission.score - penalty),
                )  # fmt: skip
                grades = {g.name: g for nb in submission.notebooks for g in nb.grades}
                row.update({t: grades[t].score if t in grades else "" for t in tests})
            row["error"] = filed.get(student.id, {}).get("error") or ""
            row["notes"] = "; ".join(filed.get(student.id, {}).get("notes") or [])
            row["flagged"] = " ".join(filed.get(student.id, {}).get("flagged") or [])
            row["_submitted"] = row["timestamp"] != "" or any(row[t] != "" for t in tests) or bool(row["error"])
            rows.append(row)
    return rows


def test_stats(course_dir: Path, assignment: str, points: dict[str, float], rows: list[dict]) -> list[TestStat]:
    """Pass rate and failure messages per test cell, over the students graded without error."""
    stats = {gid: TestStat(gid, pts) for gid, pts in points.items()}
    for row in rows:
        if row["error"] or not row["_submitted"]:
            continue
        notebook = autograded_notebook(course_dir, row["student_id"], assignment)
        messages = failure_messages(notebook)
        try:
            present = set(notebooks.cells_by_grade_id(notebooks.read(notebook)))
        except Exception:
            present = set()
        for gid, stat in stats.items():
            if row.get(gid, "") == "":
                continue
            stat.graded += 1
            if float(row[gid]) >= stat.points:
                stat.passed += 1
            else:
                missing = "no points (no error message)" if gid in present else f"{MISSING} (see the notes)"
                stat.failures[messages.get(gid, missing)] += 1
    return list(stats.values())


def autograded_notebook(course_dir: Path, student: str, assignment: str) -> Path:
    return course_dir / "autograded" / student / assignment / f"{assignment}.ipynb"


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def plot(folder: Path, rows: list[dict], stats: list[TestStat], max_score: float) -> None:
    """``scores.png``: histogram of scores; ``pass-rates.png``: pass rate per test cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = [float(r["score"]) for r in rows if not r["error"] and r["_submitted"]]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(scores, bins=min(20, max(5, int(max_score) or 5)), range=(0, max_score or 1), color="#4c72b0", edgecolor="white")
    ax.set(xlabel=f"score (of {max_score:g})", ylabel="students", title=f"Scores ({len(scores)} graded)")
    fig.tight_layout()
    fig.savefig(folder / "scores.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(stats) + 1.2))
    names = [s.grade_id for s in stats][::-1]
    rates = [100 * (s.pass_rate or 0) for s in stats][::-1]
    ax.barh(names, rates, color="#55a868")
    ax.set(xlim=(0, 100), xlabel="students passing (%)", title="Pass rate per test")
    fig.tight_layout()
    fig.savefig(folder / "pass-rates.png", dpi=100)
    plt.close(fig)


def html_table(columns: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = (
    "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f3f3f3}"
    ".fail{color:#b00}.pass{color:#070}</style>"
)


def write_index(folder: Path, assignment: str, rows: list[dict], stats: list[TestStat], tests: list[str]) -> None:
    """``index.html``: the plots, the per-test table and the grade table."""
    e = html.escape
    test_rows = [
        [e(s.grade_id), f"{s.points:g}", "-" if s.pass_rate is None else f"{s.pass_rate:.0%}", e(s.common_failure)]
        for s in stats
    ]
    grade_rows_ = [
        [e(r["student_id"]), e(str(r["score"])), e(str(r["max_score"])), *[e(str(r[t])) for t in tests], e(r["error"]), e(r["notes"])]
        for r in rows
    ]
    flagged = [[e(r["student_id"]), e(r["flagged"])] for r in rows if r.get("flagged")]
    tampering = (
        f"<h2 class='fail'>{e(FLAG[0].upper() + FLAG[1:])}</h2>"
        "<p>These test cells ran without an error in the student's kernel, but the judge, deciding outside the kernel "
        "on what the student's code produced, failed them: they scored 0. Read these notebooks.</p>"
        + html_table(["student", "test cells"], flagged)
    ) if flagged else ""  # fmt: skip
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(assignment)}: class report</title>{STYLE}</head><body>"
        f"<h1>{e(assignment)}: class report</h1>"
        "<p><img src='scores.png' alt='score histogram'> <img src='pass-rates.png' alt='pass rate per test'></p>"
        + tampering
        + "<h2>Tests</h2>" + html_table(["test cell", "points", "pass rate", "most common failure"], test_rows)
        + "<h2>Grades</h2>" + html_table(["student", "score", "max", *tests, "error", "repaired / notes"], grade_rows_)
        + "<p>Also: <a href='grades.csv'>grades.csv</a>, <a href='tests.csv'>tests.csv</a></p></body></html>"
    )  # fmt: skip
    (folder / "index.html").write_text(page)


# --- feedback ------------------------------------------------------------------------------------


def redact(message: str, hidden: set[str]) -> str:
    """The message with every line of hidden-test code in it replaced."""
    for line in sorted(hidden, key=len, reverse=True):
        if len(line) > 3 and line in message:
            message = message.replace(line, REDACTED)
    return message


def first_comment(cell) -> str:
    """What a test cell checks: its first line, when it is a comment."""
    first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    return first.lstrip("#").strip() if first.startswith("#") else ""


def names_feedback(course_dir: Path, assignment: str, student: str, row: dict, source) -> Path:
    """The ``names`` feedback page of one student: every check, its points and failure message."""
    _, hidden, visible = secret_lines(source)
    hidden -= visible
    messages = failure_messages(autograded_notebook(course_dir, student, assignment))
    e = html.escape
    rows = []
    for gid, cell in notebooks.cells_by_grade_id(source).items():
        if not notebooks.is_test(cell):
            continue
        score, points = row.get(gid, ""), notebooks.points(cell)
        passed = score != "" and float(score) >= points
        status = "<span class='pass'>passed</span>" if passed else "<span class='fail'>failed</span>"
        message = "" if passed else redact(messages.get(gid, ""), hidden)
        got = "-" if score == "" else f"{float(score):g}"
        rows.append([e(gid), e(first_comment(cell)), f"{got} / {points:g}", status, e(message)])
    error = f"<p class='fail'>Your notebook could not be graded: {e(row['error'])}</p>" if row["error"] else ""
    error += f"<p>Before grading: {e(row['notes'])}</p>" if row.get("notes") else ""
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(assignment)}: feedback</title>{STYLE}</head><body>"
        f"<h1>{e(assignment)}: feedback for {e(student)}</h1>"
        f"<p>Score: <b>{float(row['score']):g} / {float(row['max_score']):g}</b>"
        + (f" (late penalty {float(row['late_submission_penalty']):g})" if row["late_submission_penalty"] else "")
        + f"</p>{error}"
        + html_table(["check", "what it checks", "points", "result", "message"], rows)
        + "</body></html>"
    )  # fmt: skip
    out = course_dir / "feedback" / student / assignment / f"{assignment}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out


def write_feedback(course_dir: Path, assignment: str, rows: list[dict]) -> list[Path]:
    """Feedback pages for every student with a submission, by the course's policy."""
    graded = [r for r in rows if r["_submitted"]]
    if policy(course_dir) == "full":
        run_nbgrader(["generate_feedback", assignment, "--force"], cwd=course_dir)
        found = [course_dir / "feedback" / r["student_id"] / assignment / f"{assignment}.html" for r in graded]
        return [p for p in found if p.is_file()]
    source = notebooks.read(source_notebook(assignment, course_dir))
    return [names_feedback(course_dir, assignment, r["student_id"], r, source) for r in graded]


def write(course_dir: Path, assignment: str) -> Report:
    """Write ``reports/<assignment>/`` and the feedback pages; return what was written."""
    course_dir = Path(course_dir).resolve()
    points = notebooks.test_points(notebooks.read(source_notebook(assignment, course_dir)))
    tests = list(points)
    rows = grade_rows(course_dir, assignment, tests)
    stats = test_stats(course_dir, assignment, points, rows)
    folder = course_dir / "reports" / assignment
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "grades.csv", [*EXPORT_COLUMNS, *tests, "error", "notes", "flagged"], rows)
    write_csv(
        folder / "tests.csv",
        ["test_cell", "points", "graded", "passed", "pass_rate", "most_common_failure"],
        [
            {"test_cell": s.grade_id, "points": s.points, "graded": s.graded, "passed": s.passed,
             "pass_rate": "" if s.pass_rate is None else round(s.pass_rate, 4), "most_common_failure": s.common_failure}
            for s in stats
        ],
    )  # fmt: skip
    max_score = float(rows[0]["max_score"]) if rows else sum(points.values())
    plot(folder, rows, stats, max_score)
    write_index(folder, assignment, rows, stats, tests)
    return Report(assignment, folder, rows, stats, write_feedback(course_dir, assignment, rows))


def main(assignment: str, course: Path | None = None, log: Callable[[str], None] = print) -> int:
    """``grader report``: the class report and feedback from the gradebook as it stands."""
    course_dir = find_course(course)
    log(write(course_dir, assignment).summary())
    return 0
