"""The class report and per-student feedback, read from the gradebook and the autograded notebooks.

``grader report ASSIGNMENT`` (and every ``grader autograde``) writes ``reports/<assignment>/``:
- ``grades.csv``: the columns of ``nbgrader export`` plus one column per test cell and the
  grading error, if any;
- ``tests.csv``: per test cell its points, pass rate and most common failure message;
- ``scores.png`` (one bar per score) and ``pass-rates.png`` (per test), and ``index.html`` showing them
  with the per-test table and the grade table of the students who submitted (those who did not are
  counted in one line; ``grades.csv`` lists them as ``nbgrader export`` does);
- a test's failure is its root error: the first error raised in the cells it depends on (an answer
  left as ``NotImplementedError``, a crash in the cell that defines what it tests), else its own;
- ``similarity.csv`` and ``similarity/pair-N.html``: pairs of students whose answers are alike
  (``grader.similarity``), ranked, each side by side with the matching regions marked;
- where the judge measured something (the project's test accuracy): ``leaderboard.csv``,
  ``leaderboard.png`` and, for students, ``leaderboard-students.html``, which names only students
  listed in ``leaderboard-opt-in.txt`` in the course directory (one student id a line, optionally
  followed by the name to show) and shows everyone else under a pseudonym, an HMAC of the student id
  with the course's secret ``.grader/leaderboard-secret`` (made on first use): stable, and not
  reversible without the secret;
and feedback per student under ``feedback/<student>/<assignment>/``, by the course's policy
``c.GraderReport.feedback``: ``names`` (default: which checks failed and their messages, never the
hidden tests' code) or ``full`` (nbgrader's own ``generate_feedback``, which shows hidden tests).
"""

from __future__ import annotations

import ast
import base64
import csv
import hashlib
import hmac
import html
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nbgrader.api import MissingEntry

from . import gradebook, notebooks, similarity
from .judge import FLAG
from .paths import course_dir as find_course, course_secret, source_notebook
from .release import run_nbgrader

EXPORT_COLUMNS = (
    "assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
    "raw_score", "late_submission_penalty", "score", "max_score",
)  # fmt: skip
"""The columns of ``nbgrader export``, in its order."""
POLICIES = ("names", "full")
NOT_ATTEMPTED = "NotImplementedError"
MISSING = "no such cell was graded"
"""Failure of a test cell the graded notebook did not have (a missing or unreadable notebook)."""
TAMPERED = FLAG
"""Failure of a test cell the judge failed after it passed in the kernel (its message is the judge's bookkeeping)."""
PLACEHOLDERS = (NOT_ATTEMPTED, MISSING, TAMPERED)
"""Failures that say nothing about the exercise: the most common failure is another, where there is one."""
OPT_IN = "leaderboard-opt-in.txt"
"""In the course directory: students shown by name on the students' leaderboard, one a line."""
SECRET = "leaderboard-secret"
"""The course's key for pseudonyms, ``.grader/leaderboard-secret`` (``grader.paths.course_secret``)."""
"""In the course directory: the key of the leaderboard's pseudonyms (made on first use)."""
ADJECTIVES = (
    "amber", "brave", "calm", "clever", "coral", "crimson", "eager", "gentle", "golden", "happy", "jolly", "keen",
    "lively", "lucky", "mellow", "misty", "nimble", "proud", "quiet", "rapid", "rosy", "shy", "silver", "sleepy",
    "snowy", "sunny", "swift", "tidy", "violet", "witty", "young", "zesty",
)  # fmt: skip
ANIMALS = (
    "badger", "beaver", "bison", "crane", "dolphin", "falcon", "ferret", "gecko", "heron", "ibis", "jaguar", "koala",
    "lemur", "lynx", "marmot", "narwhal", "ocelot", "otter", "panda", "puffin", "quokka", "raven", "salmon", "seal",
    "tapir", "toucan", "turtle", "walrus", "weasel", "wombat", "yak", "zebra",
)  # fmt: skip


@dataclass(frozen=True)
class Measure:
    """How the report shows a number the judge measured (``Result.measures``)."""

    title: str
    about: str
    bars: tuple[tuple[float, str], ...]
    """(value, what reaching it earns), ascending."""


MEASURES = {
    "test_accuracy": Measure(
        "Judged test accuracy",
        "The saved best checkpoint's accuracy on the 10,000 test images, as the judge measured it in a fresh process "
        "(never what the notebook printed).",
        ((0.85, "partial credit"), (0.88, "full credit")),
    ),
}
"""The leaderboards: one per measure the judge records."""


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
        """The most common failure message; an unattempted exercise, a missing notebook or tampering only
        when nothing else failed."""
        attempted = Counter({m: n for m, n in self.failures.items() if not m.startswith(PLACEHOLDERS)})
        if attempted:
            return attempted.most_common(1)[0][0]
        if any(m.startswith(NOT_ATTEMPTED) for m in self.failures):
            return f"{NOT_ATTEMPTED} (not attempted)"
        return self.failures.most_common(1)[0][0] if self.failures else ""


@dataclass
class Report:
    assignment: str
    folder: Path
    rows: list[dict]
    tests: list[TestStat]
    feedback: list[Path]
    similar: similarity.Similarity | None = None
    leaderboards: dict[str, list[dict]] = field(default_factory=dict)
    """measure -> ranked rows (rank, student_id, value, pseudonym, shown)."""

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
        if self.similar is not None:
            pairs = "; ".join(f"{p.a} & {p.b} ({p.score:.0%})" for p in self.similar.flagged[:5])
            more = f" and {len(self.similar.flagged) - 5} more" if len(self.similar.flagged) > 5 else ""
            n = len(self.similar.flagged)
            lines.append(f"similar answers: {n} pair{'' if n == 1 else 's'}" + (f": {pairs}{more}" if pairs else ""))
        for measure, board in self.leaderboards.items():
            lines.append(f"leaderboard ({measure}): {len(board)} students; for students: {self.folder / 'leaderboard-students.html'}")
        lines.append(f"report: {self.folder / 'index.html'} (grades.csv, tests.csv, scores.png, pass-rates.png)")
        lines.append(f"feedback: {len(self.feedback)} pages under {self.folder.parent.parent / 'feedback'}")
        return "\n".join(lines)


def policy(course_dir: Path) -> str:
    """``c.GraderReport.feedback`` of the course config: ``names`` (default) or ``full``."""
    value = gradebook.course_config(course_dir).GraderReport.get("feedback", "names")
    if value not in POLICIES:
        raise ValueError(f"c.GraderReport.feedback = {value!r}: use one of {', '.join(POLICIES)}")
    return value


def error_line(out) -> str:
    """An error output in one line: ``Name: message``."""
    value = " ".join(str(out.get("evalue", "")).split())
    return f"{out.get('ename', 'Error')}: {value}"[:300] if value else out.get("ename", "Error")


STDERR = "wrote to stderr (a test cell must not)"


def cell_outcome(cell) -> str | None:
    """Why an executed test cell failed, in one line (None if it raised nothing and wrote no stderr)."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return error_line(out)
    if any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in cell.get("outputs", [])):
        return STDERR
    return None


def raised(cell) -> str | None:
    """The first error the kernel raised in a cell (not one the judge added after the kernel had passed it)."""
    for out in cell.get("outputs", []):
        if out.get("output_type") != "error":
            continue
        judged = out.get("ename") == "AssertionError" and list(out.get("traceback") or []) == [f"AssertionError: {out.get('evalue')}"]
        if not judged:
            return error_line(out)
    return None


def names_of(source: str) -> tuple[set[str], set[str]]:
    """(the names a cell defines at its top level, the names it reads from outside: a function's or class's
    parameters and locals left out); magics dropped."""
    try:
        tree = ast.parse(similarity.MAGIC.sub("", source))
    except SyntaxError:
        return set(), set()
    defined, used = set(), set()
    for statement in tree.body:
        loads = {n.id for n in ast.walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        stores = {n.id for n in ast.walk(statement) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(statement.name)
            params = {a.arg for a in ast.walk(statement) if isinstance(a, ast.arg)}
            inner = {n.name for n in ast.walk(statement) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
            used |= loads - params - stores - inner
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in statement.names}
        else:
            defined |= stores
            used |= loads
    return defined, used


def root_error(cells: list, index: int, source: dict[str, str]) -> str | None:
    """Why the test cell ``cells[index]`` failed: the first error raised in a cell it depends on (a cell
    before it that defines a name it reads, and so on back), with that cell's name; else its own failure.

    A cell's names are read from its code as graded and from the source notebook's cell of the same
    grade_id (``source``): an answer left as the release's stub still counts as what defines them."""
    outcome = cell_outcome(cells[index])
    own, used = names_of(cells[index].get("source", ""))
    needed = used - own
    depends = []
    for j in range(index - 1, -1, -1):
        cell = cells[j]
        if cell.get("cell_type") != "code" or not needed:
            continue
        defined, used = names_of(cell.get("source", ""))
        also = source.get(notebooks.grade_id(cell) or "")
        if also is not None:
            more_defined, more_used = names_of(also)
            defined, used = defined | more_defined, used | more_used
        hit = defined & needed
        if hit:
            depends.append(j)
            needed = (needed - hit) | (used - defined)
    for j in reversed(depends):
        error = raised(cells[j])
        if error:
            return f"{error} (in {notebooks.grade_id(cells[j]) or f'cell {j + 1}'})"
    return outcome


def failure_messages(autograded: Path, source=None) -> dict[str, str]:
    """grade_id -> root error (``root_error``) of each failed test cell of an autograded notebook;
    ``source``: the source notebook, whose cells say what each answer defines."""
    if not autograded.is_file():
        return {}
    try:
        nb = notebooks.read(autograded)
    except Exception:
        return {}
    given = {gid: c.source for gid, c in notebooks.cells_by_grade_id(source).items()} if source is not None else {}
    found = {}
    for index, cell in enumerate(nb.cells):
        gid = notebooks.grade_id(cell)
        if gid and notebooks.is_test(cell) and cell_outcome(cell):
            found[gid] = root_error(nb.cells, index, given)
    return found


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
            row["_student_notes"] = [n for n in filed.get(student.id, {}).get("notes") or [] if for_student(n)]
            row["flagged"] = " ".join(filed.get(student.id, {}).get("flagged") or [])
            row["_judged"] = dict(filed.get(student.id, {}).get("judged") or {})
            row["_measures"] = {k: float(v) for k, v in (filed.get(student.id, {}).get("measures") or {}).items()}
            row["_submitted"] = row["timestamp"] != "" or any(row[t] != "" for t in tests) or bool(row["error"])
            rows.append(row)
    return rows


def test_stats(course_dir: Path, assignment: str, points: dict[str, float], rows: list[dict], source=None) -> list[TestStat]:
    """Pass rate and failure messages per test cell, over the students graded without error."""
    stats = {gid: TestStat(gid, pts) for gid, pts in points.items()}
    for row in rows:
        if row["error"] or not row["_submitted"]:
            continue
        notebook = autograded_notebook(course_dir, row["student_id"], assignment)
        messages = failure_messages(notebook, source)
        tampered = set(row.get("flagged", "").split())
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
            elif gid in tampered:
                stat.failures[TAMPERED] += 1
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


def score_bars(scores: list[float]) -> tuple[list[float], list[int], float]:
    """One bar per score (per point where every score is whole, else per half point): positions, heights, step."""
    step = 1.0 if all(float(x).is_integer() for x in scores) else 0.5
    counts = Counter(round(x / step) * step for x in scores)
    values = sorted(counts)
    return values, [counts[v] for v in values], step


def plot(folder: Path, rows: list[dict], stats: list[TestStat], max_score: float) -> None:
    """``scores.png``: students per score, full marks apart from every near miss; ``pass-rates.png``: pass rate per test cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = [float(r["score"]) for r in rows if not r["error"] and r["_submitted"]]
    values, counts, step = score_bars(scores)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    colours = ["#55a868" if v >= max_score else "#4c72b0" for v in values]
    bars = ax.bar(values, counts, width=0.8 * step, color=colours)
    ax.bar_label(bars, fontsize=8)
    ax.set_xlim(-step, (max_score or 1) + step)
    if max_score <= 30:
        ax.set_xticks([x for x in range(int(max_score) + 1)])
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylim(0, max(counts, default=1) * 1.15 + 0.5)
    ax.set(xlabel=f"score (of {max_score:g}; full marks in green)", ylabel="students", title=f"Scores ({len(scores)} graded)")
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


# --- leaderboards ----------------------------------------------------------------------------------


def pseudonym(secret: bytes, student: str) -> str:
    """A stable name for a student, from an HMAC of the id: ``adjective animal NNN``."""
    digest = hmac.new(secret, student.encode(), hashlib.sha256).digest()
    return f"{ADJECTIVES[digest[0] % len(ADJECTIVES)]} {ANIMALS[digest[1] % len(ANIMALS)]} {int.from_bytes(digest[2:4], 'big') % 1000:03d}"


def opted_in(course_dir: Path) -> dict[str, str]:
    """student -> the name to show, from ``OPT_IN`` (``id`` or ``id  name`` a line; ``#`` starts a comment)."""
    path = course_dir / OPT_IN
    found = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        line = line.split("#", 1)[0].strip()
        if line:
            student, _, name = line.partition(" ")
            found[student] = name.strip()
    return found


def leaderboard(course_dir: Path, rows: list[dict], measure: str) -> list[dict]:
    """The students with a judged ``measure``, best first: rank (ties share one), id, value, pseudonym and
    the name the students' page shows (the opted-in name, else the pseudonym)."""
    measured = [r for r in rows if r["_submitted"] and not r["error"] and measure in r["_measures"]]
    if not measured:
        return []
    secret, names = course_secret(course_dir, SECRET), opted_in(course_dir)
    measured.sort(key=lambda r: (-r["_measures"][measure], r["student_id"]))
    board, rank = [], 0
    for i, r in enumerate(measured):
        value = r["_measures"][measure]
        rank = rank if board and value == board[-1]["value"] else i + 1
        alias = pseudonym(secret, r["student_id"])
        full = " ".join(filter(None, (r["first_name"], r["last_name"]))) or r["student_id"]
        shown = (names[r["student_id"]] or full) if r["student_id"] in names else alias
        board.append({"rank": rank, "student_id": r["student_id"], "value": value, "pseudonym": alias, "shown": shown})
    return board


def reached(value: float, measure: Measure) -> str:
    """The highest bar a value reaches, in words."""
    met = [f"≥ {bar:.0%}: {what}" for bar, what in measure.bars if value >= bar]
    return met[-1] if met else f"below {measure.bars[0][0]:.0%}"


def leaderboard_png(board: list[dict], measure: Measure) -> bytes:
    """Each student's value by rank (no names), the bars as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [100 * b["value"] for b in board]
    top = [bar for bar, _ in measure.bars]
    colours = ["#55a868" if v >= 100 * top[-1] else "#dd8452" if v >= 100 * top[0] else "#c44e52" for v in values]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(range(1, len(values) + 1), values, color=colours, width=0.8)
    for bar, what in measure.bars:
        ax.axhline(100 * bar, color="#333", linestyle="--", linewidth=1)
        ax.annotate(f"{bar:.0%} {what}", (0.01, 100 * bar), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
    low = min(values + [100 * top[0]])
    ax.set_ylim(max(0.0, low - 3), min(100.0, max(values + [100 * top[-1]]) + 2))
    ax.set(xlabel="students, best first (ties share a rank in the table)", ylabel="%", title=f"{measure.title} ({len(values)} students)")
    if len(values) <= 30:
        ax.set_xticks(range(1, len(values) + 1))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_leaderboard(folder: Path, assignment: str, name: str, board: list[dict]) -> str:
    """``leaderboard.csv``, ``leaderboard.png`` and the students' page; the instructor's section of index.html."""
    e, measure = html.escape, MEASURES[name]
    png = leaderboard_png(board, measure)
    (folder / "leaderboard.png").write_bytes(png)
    write_csv(
        folder / "leaderboard.csv", ["rank", "student_id", name, "reached", "pseudonym", "shown_to_students"],
        [{**b, name: round(b["value"], 6), "reached": reached(b["value"], measure), "shown_to_students": b["shown"]} for b in board],
    )  # fmt: skip
    bars = ", ".join(f"{bar:.0%} ({what})" for bar, what in measure.bars)
    students = html_table(
        ["rank", "student", measure.title.lower(), "reached"],
        [[str(b["rank"]), e(b["shown"]), f"{b['value']:.2%}", e(reached(b["value"], measure))] for b in board],
    )
    (folder / "leaderboard-students.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(assignment)}: leaderboard</title>{STYLE}</head><body>"
        f"<h1>{e(assignment)}: leaderboard</h1><p>{e(measure.about)} Bars: {e(bars)}. Students appear under a pseudonym "
        "unless they asked to be named.</p>"
        f"<p><img alt='leaderboard' src='data:image/png;base64,{base64.b64encode(png).decode()}'></p>{students}</body></html>"
    )  # fmt: skip
    rows = []
    for b in board:
        css = "pass" if b["value"] >= measure.bars[-1][0] else "" if b["value"] >= measure.bars[0][0] else "fail"
        rows.append([str(b["rank"]), e(b["student_id"]), f"<span class='{css}'>{b['value']:.2%}</span>", e(reached(b["value"], measure)), e(b["shown"])])
    return (
        f"<h2 id='leaderboard'>Leaderboard: {e(measure.title.lower())}</h2><p>{e(measure.about)} Bars: {e(bars)}. "
        f"For students: <a href='leaderboard-students.html'>leaderboard-students.html</a> (pseudonyms, and the names of "
        f"students listed in <code>{OPT_IN}</code>).</p><p><img src='leaderboard.png' alt='leaderboard'></p>"
        + html_table(["rank", "student", measure.title.lower(), "reached", "shown to students as"], rows)
    )


# --- similarity ------------------------------------------------------------------------------------


def similarity_section(folder: Path, found: similarity.Similarity) -> str:
    """``similarity.csv``, the side-by-side pages and the section of index.html: the flagged pairs, ranked."""
    e = html.escape
    pages = similarity.write_pages(found, folder / "similarity")
    write_csv(
        folder / "similarity.csv", ["rank", "student_a", "student_b", "score", "shared", "fingerprints_a", "fingerprints_b", "flagged", "page"],
        [
            {"rank": i, "student_a": p.a, "student_b": p.b, "score": round(p.score, 4), "shared": p.shared,
             "fingerprints_a": p.sizes[0], "fingerprints_b": p.sizes[1], "flagged": int(p.flagged), "page": pages.get(p, "")}
            for i, p in enumerate(found.pairs, 1)
        ],
    )  # fmt: skip
    flagged = found.flagged
    rows = [
        [str(i), e(p.a), e(p.b), f"<b>{p.score:.0%}</b>", f"{p.shared} of {min(p.sizes)}",
         f"<a href='{e(pages[p])}'>side by side</a>" if p in pages else ""]
        for i, p in enumerate(flagged, 1)
    ]  # fmt: skip
    intro = (
        f"<p>{len(found.solutions)} submissions compared on their answer cells: names, comments, layout and cell order "
        "set aside, the release's own code and what most of the class wrote left out. Score: the fingerprints two answers "
        f"share over those of the smaller one; flagged from {similarity.THRESHOLD:.0%} and {similarity.MIN_SHARED} shared "
        "fingerprints. A reason to read both notebooks, not a verdict.</p>"
    )
    if not flagged:
        best = found.pairs[0] if found.pairs else None
        table = "<p>No pair reaches the threshold." + (f" Highest: {e(best.a)} and {e(best.b)}, {best.score:.0%}." if best else "") + "</p>"
    else:
        table = html_table(["rank", "student", "student", "similarity", "shared fingerprints", ""], rows)
    skipped = f"<p>Not compared: {e('; '.join(f'{s} ({why})' for s, why in found.skipped.items()))}</p>" if found.skipped else ""
    return f"<h2 id='similarity'>Similar answers ({len(flagged)} pair{'' if len(flagged) == 1 else 's'})</h2>{intro}{table}{skipped}<p>All pairs from {similarity.LISTED:.0%}: <a href='similarity.csv'>similarity.csv</a></p>"


def write_index(
    folder: Path, assignment: str, rows: list[dict], stats: list[TestStat], tests: list[str], sections: list[str] = ()
) -> None:
    """``index.html``: the plots, the per-test table, the grade table of the students who submitted, and ``sections``."""
    e = html.escape
    test_rows = [
        [e(s.grade_id), f"{s.points:g}", "-" if s.pass_rate is None else f"{s.pass_rate:.0%}", e(s.common_failure)]
        for s in stats
    ]
    submitted = [r for r in rows if r["_submitted"]]
    absent = len(rows) - len(submitted)
    grade_rows_ = [
        [e(r["student_id"]), e(f"{float(r['score']):g}"), e(f"{float(r['max_score']):g}"), *[e(str(r[t])) for t in tests], e(r["error"]), e(r["notes"])]
        for r in submitted
    ]
    flagged = [[e(r["student_id"]), e(r["flagged"])] for r in rows if r.get("flagged")]
    tampering = (
        f"<h2 class='fail'>{e(FLAG[0].upper() + FLAG[1:])}</h2>"
        "<p>These test cells ran without an error in the student's kernel, but the judge, deciding outside the kernel "
        "on what the student's code produced, failed them: they scored 0. Read these notebooks.</p>"
        + html_table(["student", "test cells"], flagged)
    ) if flagged else ""  # fmt: skip
    missing = f"<p>{absent} student{'s' if absent != 1 else ''} without a submission.</p>" if absent else ""
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(assignment)}: class report</title>{STYLE}</head><body>"
        f"<h1>{e(assignment)}: class report</h1>"
        "<p><img src='scores.png' alt='score histogram'> <img src='pass-rates.png' alt='pass rate per test'></p>"
        + tampering
        + "<h2>Tests</h2><p>Most common failure: the first error raised in the cells a test depends on, else the test's own.</p>"
        + html_table(["test cell", "points", "pass rate", "most common failure"], test_rows)
        + f"<h2>Grades ({len(submitted)} submissions)</h2>" + missing
        + html_table(["student", "score", "max", *tests, "error", "repaired / notes"], grade_rows_)
        + "".join(sections)
        + regraded(folder)
        + "<p>Also: <a href='grades.csv'>grades.csv</a>, <a href='tests.csv'>tests.csv</a></p></body></html>"
    )  # fmt: skip
    (folder / "index.html").write_text(page)


def regraded(folder: Path) -> str:
    """A line linking ``regrades.csv`` (written by ``grader autograde``) when the last regrade changed scores."""
    try:
        with (folder / "regrades.csv").open(newline="") as handle:
            changed = list(csv.DictReader(handle))
    except OSError:
        return ""
    students = len({row["student"] for row in changed})
    return (
        f"<p>The last regrade changed {len(changed)} score{'s' if len(changed) != 1 else ''} of {students} "
        f"student{'s' if students != 1 else ''}: <a href='regrades.csv'>regrades.csv</a> (old and new score, and why).</p>"
    ) if changed else ""  # fmt: skip


# --- feedback ------------------------------------------------------------------------------------


def first_comment(cell) -> str:
    """What a test cell checks: its first line, when it is a comment."""
    first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    return first.lstrip("#").strip() if first.startswith("#") else ""


IDENTIFIER = re.compile(r"[A-Za-z_][\w.]{0,80}")
ELSEWHERE = re.compile(r"(.*) \(in ([\w\- ]{1,60})\)", re.S)


def templates(test_source: str) -> list[tuple[re.Pattern, str]]:
    """The messages the instructor wrote in a test cell: each string literal and f-string, as a pattern a kernel's
    message must match whole, and the text the feedback may show (an f-string's values shown as …)."""
    try:
        tree = ast.parse(similarity.MAGIC.sub("", test_source))
    except SyntaxError:
        return []
    squash = lambda text: re.sub(r"\s+", " ", text)  # noqa: E731 - as error_line writes a message
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [squash(v.value) if isinstance(v, ast.Constant) else None for v in node.values]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value.strip()) > 8:
            parts = [squash(node.value)]
        else:
            continue
        if parts[0] is not None:
            parts[0] = parts[0].lstrip()
        if parts[-1] is not None:
            parts[-1] = parts[-1].rstrip()
        pattern = "".join(".*?" if part is None else re.escape(part) for part in parts)
        found.append((re.compile(pattern, re.S), "".join("…" if part is None else part for part in parts)))
    return found


def feedback_message(root: str | None, test_source: str) -> str:
    """What a student's feedback says of a test cell that failed in the kernel: only text the instructor or the
    grader wrote. The kernel's message is shown where it is one the test cell itself spells out; anything else
    the kernel reported (which the student's code may have written: any text, encoded or not) is named by its
    exception class alone."""
    if root in (None, STDERR):
        return root or "the test cell failed"
    text, where = root, ""
    if found := ELSEWHERE.fullmatch(root):
        text, where = found.group(1), found.group(2)
    name, _, message = text.partition(": ")
    name = name if IDENTIFIER.fullmatch(name) else "an error"
    if where:
        return f"{name} raised in {where}, a cell this test needs: run that cell in your notebook to see why"
    found = spelled_out(message, templates(test_source))
    return f"{name}: {found}" if found else f"{name} raised in this test cell: run it in your notebook to see the message"


INSTRUCTOR_ONLY = ("working folder ", "autograded ", "submitted ")
"""Notes that name files the student's code made or the submission brought: names it chose, for the instructor only."""


def for_student(note: str) -> bool:
    """Whether a note may go on the student's feedback page: not one about the judge (each cell's row says what the
    judge found, as the check spells it) and not one naming a file the student's code chose."""
    from .judge import GRADER_FAILED

    return not (note.startswith(INSTRUCTOR_ONLY) or note.startswith(GRADER_FAILED) or FLAG in note)


def spelled_out(message: str, found: list[tuple[re.Pattern, str]]) -> str | None:
    """The template of ``found`` (``templates``) that ``message`` matches whole, the most specific one; None if none
    says at least a few words of its own."""
    words = lambda shown: len(re.sub(r"[\W_]", "", shown))  # noqa: E731 - how much of it the author's own
    best = max((shown for pattern, shown in found if pattern.fullmatch(message.strip())), key=words, default="")
    return best if words(best) >= 12 else None


def judge_message(message: str, sources: list[str]) -> str:
    """What a student's feedback says of the judge's message: the check's own words, every value in them (which
    the student's code may have made: a string, a list of numbers) shown as …; the judge's wording where no check
    spells the message out. A failed replay's verdict is the judge's words around the replay's error or the check's
    message: that part is spelled out on its own, an error as ``feedback_message`` shows one."""
    from .judge import REPLAY_FAILED

    found = [template for text in sources for template in templates(text)]
    if message.startswith(REPLAY_FAILED):
        inner = message[len(REPLAY_FAILED) :]
        name, _, text = inner.partition(": ")
        if shown := spelled_out(inner, found):
            return REPLAY_FAILED + shown
        if IDENTIFIER.fullmatch(name) and (shown := spelled_out(text, found)):
            return f"{REPLAY_FAILED}{name}: {shown}"
        return REPLAY_FAILED.removesuffix(": ") + "."
    return spelled_out(message, found) or "the judge found that your code's outputs do not pass this check"


def check_sources(source, grade_id: str, folder: Path) -> list[str]:
    """The source code of the judge, of the checks' helpers and of the assignment's checks (``folder/checks.py``),
    where a test cell names a check: where the judge's messages are spelled out."""
    from . import checks, judge
    from .evidence import CHECKS

    found = [Path(judge.__file__).read_text()]
    if judge.checks_of(source).get(grade_id) and (folder / CHECKS).is_file():
        found += [path.read_text() for path in sorted(Path(checks.__file__).parent.glob("*.py"))]
        found.append((folder / CHECKS).read_text())
    return found


def names_feedback(course_dir: Path, assignment: str, student: str, row: dict, source) -> Path:
    """The ``names`` feedback page of one student: every check, its points and failure message, in text the
    grader wrote: the judge's verdict, or ``feedback_message`` of the kernel's failure."""
    messages = failure_messages(autograded_notebook(course_dir, student, assignment), source)
    judged = row.get("_judged") or {}
    e = html.escape
    rows = []
    for gid, cell in notebooks.cells_by_grade_id(source).items():
        if not notebooks.is_test(cell):
            continue
        score, points = row.get(gid, ""), notebooks.points(cell)
        passed = score != "" and float(score) >= points
        status = "<span class='pass'>passed</span>" if passed else "<span class='fail'>failed</span>"
        if passed:
            message = ""
        elif gid in judged:
            message = judge_message(judged[gid], [*check_sources(source, gid, course_dir / "source" / assignment), cell.source])
        else:
            message = feedback_message(messages.get(gid), cell.source)
        got = "-" if score == "" else f"{float(score):g}"
        rows.append([e(gid), e(first_comment(cell)), f"{got} / {points:g}", status, e(message)])
    error = f"<p class='fail'>Your notebook could not be graded: {e(row['error'])}</p>" if row["error"] else ""
    notes = row.get("_student_notes") or []
    error += f"<p>Notes on the grading: {e('; '.join(notes))}</p>" if notes else ""
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
    source = notebooks.read(source_notebook(assignment, course_dir))
    points = notebooks.test_points(source)
    tests = list(points)
    rows = grade_rows(course_dir, assignment, tests)
    stats = test_stats(course_dir, assignment, points, rows, source)
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
    sections, boards = [], {}
    for name in MEASURES:
        board = leaderboard(course_dir, rows, name)
        if board and not boards:  # one leaderboard per assignment: its files are leaderboard.*
            boards[name] = board
            sections.append(write_leaderboard(folder, assignment, name, board))
    found = similarity.analyse(course_dir, assignment)
    sections.append(similarity_section(folder, found))
    write_index(folder, assignment, rows, stats, tests, sections)
    return Report(assignment, folder, rows, stats, write_feedback(course_dir, assignment, rows), found, boards)


def main(assignment: str, course: Path | None = None, log: Callable[[str], None] = print) -> int:
    """``grader report``: the class report and feedback from the gradebook as it stands."""
    course_dir = find_course(course)
    log(write(course_dir, assignment).summary())
    return 0
