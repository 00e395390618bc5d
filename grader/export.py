"""``grader export``: the gradebook's grades into the file an LMS gave the instructor, for upload back into it.

The LMS matches rows and columns by identifiers only its own files hold (Canvas's ``Assignment (12345)``
header and user ids, Moodle's ``Participant 123`` identifiers, Blackboard's ``|123456`` column ids). So the
export starts from the file the instructor downloaded from the LMS, fills one column with the grades nbgrader
computes (manual grades over automatic ones, late penalty subtracted, never below 0, as ``nbgrader export``),
and writes the file back as it came: same encoding and byte-order mark, same delimiter, quoting and line
endings; every byte outside the filled cells is left as downloaded.

- A student the LMS lists with no submission in the gradebook keeps the cell as downloaded (no grade, never 0)
  and is listed as missing; a submission still waiting for manual grading is left out the same way.
- A submission whose student has no roster entry (no login in the id map, or no row of that login in the LMS
  file) is listed and written nowhere.
- Feedback pages (``feedback/<student>/<assignment>/``) go out as the LMS's bulk feedback upload expects them,
  where it documents one: Moodle's zip of participant folders. Canvas and Blackboard document none that this
  export can produce (see docs/lms-export.md).

The id map is a CSV file with the header ``nbgrader_id,lms_login``: one row per student, the login being the
identifier the LMS file shows for that student (Canvas: SIS Login ID, SIS User ID or Canvas user ID; Moodle:
the email address, username or ID number the worksheet shows; Blackboard: the username).
"""

from __future__ import annotations

import csv
import re
import sys
import zipfile
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Callable

LMS = ("canvas", "moodle", "blackboard")
BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


class ExportError(RuntimeError):
    """The LMS file, the id map or the gradebook cannot give a correct upload file."""


# --- the LMS file, cell by cell ----------------------------------------------------------------------


@dataclass
class Cell:
    value: str
    raw: str
    """The cell exactly as the file holds it (quotes included)."""
    quoted: bool


@dataclass
class Record:
    cells: list[Cell]
    end: str
    """The line ending after the record (``\\r\\n``, ``\\n``, or nothing at the end of the file)."""

    @property
    def values(self) -> list[str]:
        return [c.value for c in self.cells]


@dataclass
class Sheet:
    """A delimited file as the LMS wrote it; written back byte for byte but for the cells set."""

    bom: bytes
    encoding: str
    delimiter: str
    records: list[Record]

    @property
    def header(self) -> list[str]:
        return self.records[0].values if self.records else []

    def get(self, row: int, column: int) -> str:
        cells = self.records[row].cells
        return cells[column].value if column < len(cells) else ""

    def set(self, row: int, column: int, value: str, quote: bool = False) -> None:
        """Set one cell, quoted as the cell was (or when the value or the format needs it)."""
        cells = self.records[row].cells
        while len(cells) <= column:
            cells.append(Cell("", "", False))
        special = any(ch in value for ch in (self.delimiter, '"', "\r", "\n"))
        quoted = cells[column].quoted or quote or special
        cells[column] = Cell(value, f'"{value.replace(chr(34), chr(34) * 2)}"' if quoted else value, quoted)

    def text(self) -> str:
        return "".join(self.delimiter.join(c.raw for c in r.cells) + r.end for r in self.records)

    def to_bytes(self) -> bytes:
        return self.bom + self.text().encode(self.encoding)


def decode(data: bytes) -> tuple[bytes, str, str]:
    """(byte-order mark, encoding, text) of an LMS file: UTF-8 or UTF-16, as the LMSs write them."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return bom, encoding, data[len(bom) :].decode(encoding)
    try:
        return b"", "utf-8", data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExportError(
            "the LMS file is neither UTF-8 nor UTF-16 (was it re-saved by a spreadsheet?): download it again from the LMS"
        ) from exc


def tokenize(text: str, delimiter: str) -> list[Record]:
    """Records of cells, each with its raw text, so that writing them back gives ``text`` again (RFC 4180 quoting)."""
    records: list[Record] = []
    cells: list[Cell] = []
    i, n = 0, len(text)
    while i < n:
        start = i
        if text[i] == '"':
            parts, i = [], i + 1
            while True:
                j = text.find('"', i)
                if j < 0:
                    raise ExportError(f"a quoted field never ends (record {len(records) + 1})")
                parts.append(text[i:j])
                if text.startswith('""', j):
                    parts.append('"')
                    i = j + 2
                else:
                    i = j + 1
                    break
            cells.append(Cell("".join(parts), text[start:i], True))
        else:
            j = i
            while j < n and text[j] not in (delimiter, "\r", "\n"):
                j += 1
            cells.append(Cell(text[i:j], text[i:j], False))
            i = j
        if i < n and text[i] == delimiter:
            i += 1
            if i == n:
                cells.append(Cell("", "", False))
            else:
                continue
        end = "\r\n" if text.startswith("\r\n", i) else text[i : i + 1]
        if end not in ("", "\r", "\n", "\r\n"):
            raise ExportError(f"unexpected {end!r} after a quoted field (record {len(records) + 1})")
        records.append(Record(cells, end))
        cells, i = [], i + len(end)
    if cells:
        records.append(Record(cells, ""))
    return records


def cells_in(line: str, delimiter: str) -> int:
    """How many cells ``delimiter`` splits a header line into (0 where the line is not valid with it)."""
    try:
        return len(tokenize(line, delimiter)[0].cells) if line else 0
    except ExportError:
        return 0


def read_sheet(path: Path, delimiters: str) -> Sheet:
    """The LMS file at ``path``; its delimiter is the candidate that splits the header line into most cells."""
    try:
        bom, encoding, text = decode(Path(path).read_bytes())
    except OSError as exc:
        raise ExportError(f"cannot read the LMS file {path}: {exc.strerror}") from exc
    first = text.splitlines()[0] if text else ""
    delimiter = max(delimiters, key=lambda d: cells_in(first, d))
    sheet = Sheet(bom, encoding, delimiter, tokenize(text, delimiter))
    if sheet.text() != text:  # the writer must give back what was read
        raise ExportError(f"{path}: the file does not read back as it is written")
    if len(sheet.records) < 2:
        raise ExportError(f"{path}: no students in the LMS file")
    return sheet


# --- where the grades go, per LMS --------------------------------------------------------------------


@dataclass
class LmsStudent:
    row: int
    logins: tuple[str, ...]
    """The identifiers of this student the id map may name, in the LMS's order of preference."""
    name: str
    participant: str = ""
    """Moodle's participant number (the ``Participant 123`` identifier), for feedback folders."""


@dataclass
class Target:
    column: int
    title: str
    points: float | None
    """Points possible of the column as the LMS file states them (None where it does not)."""
    students: list[LmsStudent]
    decimal: str = "."
    quote: bool = False
    """Quote every value written (Blackboard's comma-separated files)."""


def number(text: str) -> float | None:
    """A number as an LMS file writes it (``10.00``, ``10,00``), or None."""
    text = text.strip().replace(",", ".")
    try:
        return float(text)
    except ValueError:
        return None


def identified(sheet: Sheet, columns: list[str], name: Callable[[list[str]], str], first: int) -> list[LmsStudent]:
    """Rows from ``first`` on with an identifier in one of ``columns`` (the header's names): the LMS's students."""
    index = [sheet.header.index(c) for c in columns if c in sheet.header]
    students = []
    for row in range(first, len(sheet.records)):
        values = sheet.records[row].values
        logins = tuple(values[i].strip() for i in index if i < len(values) and values[i].strip())
        if logins:
            students.append(LmsStudent(row, logins, name(values)))
    return students


def choose(columns: dict[int, tuple[str, str]], wanted: str, lms: str) -> int:
    """The column whose title, id or full header is ``wanted`` (columns: index -> (title, id))."""
    header_of = {i: f"{t} ({c})" for i, (t, c) in columns.items()}
    for match in (lambda i: columns[i][0] == wanted, lambda i: columns[i][1] == wanted, lambda i: header_of[i] == wanted):
        found = [i for i in columns if match(i)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ExportError(f"{len(found)} {lms} columns are named {wanted!r}: give its id with --column")
    names = ", ".join(f"{t!r} (id {c})" for t, c in columns.values()) or "none"
    raise ExportError(f"no {lms} column {wanted!r} in the file; --column takes the name or id of one of: {names}")


CANVAS_ASSIGNMENT = re.compile(r"^(?P<title>.*) \((?P<id>\d+)\)$")
CANVAS_LOGINS = ["SIS Login ID", "SIS User ID", "ID"]
CANVAS_NAMES = ("Student", "LastName")


def canvas_target(sheet: Sheet, wanted: str) -> Target:
    """Canvas's gradebook export: header ``Student, ID, [SIS User ID,] SIS Login ID, ..., Section, <custom columns>,
    <Assignment> (<id>) ...``, an optional "Manual Posting" row, the ``    Points Possible`` row, then one row per
    student (the Test Student last)."""
    header = sheet.header
    if len(header) < 4 or header[0] not in CANVAS_NAMES or "ID" not in header or "Section" not in header:
        raise ExportError("not a Canvas gradebook export: its header must start 'Student, ID, ... Section' (Grades > Export)")
    section = header.index("Section")
    columns = {i: (m["title"], m["id"]) for i, h in enumerate(header) if i > section and (m := CANVAS_ASSIGNMENT.match(h))}
    column = choose(columns, wanted, "Canvas")
    possible = next((r for r in range(1, len(sheet.records)) if "Points Possible" in sheet.get(r, 0)), None)
    points_text = sheet.get(possible, column) if possible is not None else ""
    first = (possible if possible is not None else 0) + 1
    name = (lambda v: v[0]) if header[0] == "Student" else (lambda v: f"{v[0]}, {v[1]}")
    return Target(
        column, header[column], number(points_text), identified(sheet, CANVAS_LOGINS, name, first),
        decimal="," if "," in points_text else ".",
    )  # fmt: skip


MOODLE_ID, MOODLE_GRADE, MOODLE_MAX = "Identifier", "Grade", "Maximum Grade"
MOODLE_LOGINS = ["Email address", "Username", "ID number"]


def moodle_target(sheet: Sheet, wanted: str) -> Target:
    """Moodle's assignment grading worksheet (Assignment > View all submissions > Download grading worksheet):
    ``Identifier, Full name, <identity fields>, Status, Grade, Maximum Grade, Grade can be changed, ...,
    Last modified (grade), Feedback comments``; the identifier is ``Participant <number>``. The worksheet holds
    one assignment: ``--column`` is not needed."""
    header = sheet.header
    if MOODLE_ID not in header or MOODLE_GRADE not in header:
        raise ExportError(
            "not a Moodle grading worksheet: it needs the columns 'Identifier' and 'Grade' (download it from the "
            "assignment's submissions page with the offline grading worksheet enabled, Moodle in English)"
        )
    if "Last modified (grade)" not in header:
        raise ExportError("the Moodle worksheet lacks 'Last modified (grade)', which Moodle's upload requires")
    column, ident = header.index(MOODLE_GRADE), header.index(MOODLE_ID)
    full = header.index("Full name") if "Full name" in header else ident
    students = identified(sheet, MOODLE_LOGINS, lambda v: v[full] if full < len(v) else "", 1)
    for s in students:
        found = re.search(r"(\d+)\s*$", sheet.get(s.row, ident))
        s.participant = found.group(1) if found else ""
    maxima = [sheet.get(s.row, header.index(MOODLE_MAX)) for s in students] if MOODLE_MAX in header else []
    points = {number(m) for m in maxima if number(m) is not None}
    return Target(
        column, MOODLE_GRADE, points.pop() if len(points) == 1 else None, students,
        decimal="," if any("," in m for m in maxima) else ".",
    )  # fmt: skip


BLACKBOARD_COLUMN = re.compile(
    r"^(?P<title>.*?)\s*\[Total Pts: (?P<upto>up to )?(?P<points>[\d.,]+) (?P<kind>[^\]]+)\] \|(?P<id>\d+)$"
)
BLACKBOARD_LOGINS = ["Username", "Student ID"]


def blackboard_target(sheet: Sheet, wanted: str) -> Target:
    """Blackboard Learn's Grade Center download (Work Offline > Download): ``Last Name, First Name, Username,
    Student ID, Last Access, Availability, <Column> [Total Pts: 100 Score] |<column id>, ...``; tab-delimited
    (``.xls``) or comma-delimited (``.csv``). Calculated columns ("up to" points) cannot take grades."""
    header = sheet.header
    if "Username" not in header:
        raise ExportError(
            "not a Blackboard Grade Center download: no 'Username' column (Work Offline > Download, user information included)"
        )
    parsed = {i: m for i, h in enumerate(header) if (m := BLACKBOARD_COLUMN.match(h))}
    columns = {i: (m["title"], m["id"]) for i, m in parsed.items() if not m["upto"]}
    column = choose(columns, wanted, "Blackboard")
    first_name = header.index("First Name") if "First Name" in header else None
    last_name = header.index("Last Name") if "Last Name" in header else None

    def name(v: list[str]) -> str:
        parts = [v[i] for i in (last_name, first_name) if i is not None and i < len(v)]
        return ", ".join(p for p in parts if p)

    return Target(
        column, header[column], number(parsed[column]["points"]), identified(sheet, BLACKBOARD_LOGINS, name, 1),
        quote=sheet.delimiter == ",",
    )  # fmt: skip


@dataclass(frozen=True)
class Format:
    delimiters: str
    target: Callable[[Sheet, str], Target]
    feedback: str | None
    """How feedback files go out: None where the LMS documents no bulk upload this export can produce."""


FORMATS = {
    "canvas": Format(",;", canvas_target, None),
    "moodle": Format(",;\t", moodle_target, "moodle-zip"),
    "blackboard": Format("\t,", blackboard_target, None),
}
NO_FEEDBACK_UPLOAD = {
    "canvas": (
        "Canvas's only bulk feedback upload (Assignments > Re-upload submissions) takes back the files of its own "
        "submissions download, matched by the ids of the files the student submitted to Canvas; the export cannot make those"
    ),
    "blackboard": (
        "Blackboard Learn documents no bulk upload of feedback files to the Grade Center (comments travel only as "
        "text in a selected column's download)"
    ),
}


# --- the grades, from nbgrader's gradebook -----------------------------------------------------------


@dataclass
class Grade:
    student: str
    score: float | None
    """nbgrader's score: manual over automatic, minus the late penalty, never below 0; None while a cell awaits manual grading."""
    max_score: float
    late_penalty: float = 0.0


def gradebook_grades(course_dir: Path, assignment: str) -> tuple[dict[str, Grade], float]:
    """(student -> grade of each submission, the assignment's max score)."""
    from nbgrader.api import MissingEntry

    from . import gradebook

    url = gradebook.db_url(course_dir)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise ExportError(f"no gradebook at {url[len('sqlite:///'):]}: grade the assignment first (grader autograde)")
    with gradebook.open_course(course_dir) as gb:
        try:
            found = gb.find_assignment(assignment)
        except MissingEntry as exc:
            raise ExportError(f"the gradebook has no assignment {assignment!r}") from exc
        maximum = float(found.max_score)
        grades = {}
        for submission in found.submissions:
            cells = [g for nb in submission.notebooks for g in nb.grades]
            pending = any(g.needs_manual_grade and g.manual_score is None for g in cells)
            penalty = float(submission.late_submission_penalty or 0.0)
            score = None if pending else max(0.0, float(submission.score) - penalty)
            grades[submission.student.id] = Grade(submission.student.id, score, maximum, penalty)
        return grades, maximum


# --- the id map --------------------------------------------------------------------------------------


def read_map(path: Path) -> dict[str, str]:
    """nbgrader id -> LMS login, from a CSV file with the header ``nbgrader_id,lms_login``."""
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows, columns = list(reader), set(reader.fieldnames or [])
    except OSError as exc:
        raise ExportError(f"cannot read the id map {path}: {exc.strerror}") from exc
    if not {"nbgrader_id", "lms_login"} <= columns:
        raise ExportError(f"the id map {path} needs the header 'nbgrader_id,lms_login'")
    found: dict[str, str] = {}
    logins: dict[str, str] = {}
    for row in rows:
        student, login = (row.get("nbgrader_id") or "").strip(), (row.get("lms_login") or "").strip()
        if not student and not login:
            continue
        if not student or not login:
            raise ExportError(f"the id map {path} has a row without an nbgrader id or a login: {row}")
        if student in found or login in logins:
            raise ExportError(f"the id map {path} names {student if student in found else login!r} twice")
        found[student], logins[login] = login, student
    return found


# --- the export --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    lms: str
    column: str
    points: float | None
    out: Path
    written: dict[str, str] = field(default_factory=dict)
    """nbgrader id -> the value written."""
    missing: list[str] = field(default_factory=list)
    """On the LMS roster and mapped, no submission: the cell is left as downloaded (never 0)."""
    ungraded: list[str] = field(default_factory=list)
    """A submission with cells still awaiting manual grading: left as downloaded."""
    unrostered: dict[str, str] = field(default_factory=dict)
    """A submission with no roster entry: nbgrader id -> why (written nowhere)."""
    unmapped: list[str] = field(default_factory=list)
    """LMS rows no nbgrader id maps to: left as downloaded."""
    feedback: Path | None = None
    feedback_files: int = 0
    no_feedback: list[str] = field(default_factory=list)

    def summary(self) -> str:
        points = "" if self.points is None else f", {self.points:g} points"
        lines = [f"{self.lms}: {len(self.written)} grades into column {self.column!r}{points} -> {self.out}"]
        if self.missing:
            lines.append("missing (no submission; grade left empty, not 0): " + ", ".join(self.missing))
        if self.ungraded:
            lines.append("awaiting manual grading (grade left empty): " + ", ".join(self.ungraded))
        if self.unrostered:
            why = "; ".join(f"{s} ({reason})" for s, reason in self.unrostered.items())
            lines.append(f"submissions with no roster entry (not exported): {why}")
        if self.unmapped:
            lines.append("in the LMS file but not in the id map (left as downloaded): " + "; ".join(self.unmapped))
        if self.feedback:
            lines.append(f"feedback: {self.feedback_files} files in {self.feedback}")
        if self.no_feedback:
            lines.append("no feedback page for: " + ", ".join(self.no_feedback))
        return "\n".join(lines)


def points_text(value: float, decimal: str) -> str:
    """A grade as the LMS files write points: two decimals (``4.50``), with the file's decimal mark."""
    text = str(Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    return text.replace(".", decimal)


def fill(
    sheet: Sheet, target: Target, grades: dict[str, Grade], ids: dict[str, str], scale: float, out: Path, lms: str
) -> Outcome:
    """Write each mapped student's grade into the target column; sort everyone else into the lists."""
    outcome = Outcome(lms, target.title, target.points, out)
    by_login = {}
    for student in target.students:
        for login in student.logins:
            by_login.setdefault(login, student)
    student_of = {login: sid for sid, login in ids.items()}
    placed = set()
    for sid, login in ids.items():
        lms_student = by_login.get(login)
        if lms_student is None:
            continue
        placed.add(lms_student.row)
        grade = grades.get(sid)
        if grade is None:
            outcome.missing.append(f"{sid} ({login})")
        elif grade.score is None:
            outcome.ungraded.append(f"{sid} ({login})")
        else:
            value = points_text(grade.score * scale, target.decimal)
            sheet.set(lms_student.row, target.column, value, quote=target.quote)
            outcome.written[sid] = value
    for sid in sorted(grades):
        login = ids.get(sid)
        if login is None:
            outcome.unrostered[sid] = "not in the id map"
        elif login not in by_login:
            outcome.unrostered[sid] = f"no row for {login!r} in the {lms} file"
    outcome.unmapped = [
        f"{s.name or s.logins[0]} ({s.logins[0]})" for s in target.students
        if s.row not in placed and not any(login in student_of for login in s.logins)
    ]  # fmt: skip
    return outcome


def scale_for(target: Target, maximum: float, rescale: bool, lms: str) -> float:
    """1, or the factor from nbgrader's points to the LMS column's when they differ and --rescale is given."""
    if target.points is None or abs(target.points - maximum) < 1e-9:
        return 1.0
    if not rescale:
        raise ExportError(
            f"the {lms} column {target.title!r} is worth {target.points:g} points and the assignment {maximum:g} in nbgrader: "
            "change one of them, or pass --rescale to scale the grades to the LMS's points"
        )
    if maximum <= 0:
        raise ExportError("the assignment is worth 0 points in nbgrader: nothing to rescale")
    return target.points / maximum


def feedback_pages(course_dir: Path, student: str, assignment: str) -> list[Path]:
    folder = course_dir / "feedback" / student / assignment
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def moodle_folder(name: str, participant: str) -> str:
    """The folder Moodle's "Download all submissions" gives a participant and its feedback zip upload reads back:
    ``<Full name>_<participant number>_assignsubmission_file_`` (underscores in the name become spaces, as Moodle does)."""
    clean = re.sub(r"[_/\\:*?\"<>|]", " ", name).strip() or "Participant"
    return f"{clean}_{participant}_assignsubmission_file_"


def write_moodle_feedback(
    course_dir: Path, assignment: str, target: Target, ids: dict[str, str], path: Path, outcome: Outcome
) -> None:
    """The zip for Moodle's "Upload multiple feedback files in a zip": one participant folder per graded student."""
    rows = {login: s for s in target.students for login in s.logins}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for sid in sorted(outcome.written):
            student = rows[ids[sid]]
            pages = feedback_pages(course_dir, sid, assignment)
            if not pages or not student.participant:
                outcome.no_feedback.append(sid)
                continue
            for page in pages:
                zf.write(page, f"{moodle_folder(student.name, student.participant)}/{page.name}")
                outcome.feedback_files += 1
    outcome.feedback = path


def export(course_dir: Path, assignment: str, lms: str, source: Path, id_map: Path, out: Path, column: str | None = None,
           feedback_dir: Path | None = None, rescale: bool = False) -> Outcome:  # fmt: skip
    """Fill ``source`` (the LMS's own download) with the assignment's grades and write it to ``out``."""
    if lms not in FORMATS:
        raise ExportError(f"unknown LMS {lms!r}: one of {', '.join(LMS)}")
    fmt = FORMATS[lms]
    if feedback_dir is not None and fmt.feedback is None:
        hint = f"give students feedback/<student>/{assignment}/ another way"
        raise ExportError(f"--feedback-dir: {NO_FEEDBACK_UPLOAD[lms]}; {hint}")
    ids = read_map(id_map)
    sheet = read_sheet(source, fmt.delimiters)
    target = fmt.target(sheet, column or assignment)
    grades, maximum = gradebook_grades(course_dir, assignment)
    outcome = fill(sheet, target, grades, ids, scale_for(target, maximum, rescale, lms), Path(out), lms)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_bytes(sheet.to_bytes())
    if feedback_dir is not None:
        name = f"{Path(out).stem}-feedback.zip"
        write_moodle_feedback(course_dir, assignment, target, ids, Path(feedback_dir) / name, outcome)
    return outcome


def main(assignment: str, lms: str, source: Path, id_map: Path, out: Path, column: str | None = None,
         feedback_dir: Path | None = None, rescale: bool = False, course: Path | None = None,
         log: Callable[[str], None] = print) -> int:  # fmt: skip
    """``grader export``: print what was written and who was left out; 2 when no correct file can be written."""
    from .paths import course_dir as find_course

    try:
        outcome = export(find_course(course), assignment, lms, source, id_map, out, column, feedback_dir, rescale)
    except ExportError as exc:
        print(f"grader export: {exc}", file=sys.stderr)
        return 2
    log(outcome.summary())
    return 0
