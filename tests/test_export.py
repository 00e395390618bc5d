"""``grader export``: a gradebook made with nbgrader's API, exported into each LMS's own download (samples in
tests/lms/, written to the byte as the LMSs write them), and read back the way each LMS reads its upload."""

from __future__ import annotations

import csv
import io
import re
import shutil
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from commands import grader
from nbgrader.api import Gradebook

from grader import export, gradebook, paths
from grader.paths import tool_env

SAMPLES = Path(__file__).parent / "lms"
TINY = "tiny"
EXPECTED = {"ana": "4.50", "ben": "4.00"}
"""ana: 2 + 1 (a manual grade over an automatic 0) + 1.5 (manual) of 5; ben: 5 of 5, late penalty 1."""
PENDING, MISSING = "cai", "dee"
"""cai's written answer awaits manual grading; dee is on the roster with no submission."""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def course(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the built course for each test (an export must not change it, and a test may)."""
    monkeypatch.setenv("PATH", tool_env()["PATH"])
    return Path(shutil.copytree(built, tmp_path / "course"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course whose gradebook holds, through nbgrader's API, the tiny assignment (5 points: two auto-graded cells
    and a manually graded answer) and six students: ana and ben graded, cai awaiting manual grading, dee with no
    submission, eve and gus graded but off the LMS roster."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("PATH", tool_env()["PATH"])  # nbgrader runs alembic when it creates the database
        return build_course(tmp_path_factory.mktemp("built") / "course")


def build_course(course: Path) -> Path:
    course.mkdir()
    shutil.copy(paths.CONFIG, course / "nbgrader_config.py")
    due = datetime(2025, 3, 4, 12, 0)
    with Gradebook(gradebook.db_url(course), gradebook.course_id(course)) as gb:
        gb.add_assignment(TINY, duedate=due)
        gb.add_notebook(TINY, TINY)
        for name, points, kind in (("test_add", 2, "code"), ("test_scale", 1, "code"), ("written", 2, "markdown")):
            gb.add_grade_cell(name, TINY, TINY, max_score=points, cell_type=kind)
        scores = {
            # student: (auto or manual score per cell, late penalty); a pair is (auto, manual)
            "ana": ({"test_add": 2, "test_scale": (0, 1), "written": (None, 1.5)}, 0.0),
            "ben": ({"test_add": 2, "test_scale": 1, "written": (None, 2)}, 1.0),
            "cai": ({"test_add": 2, "test_scale": 1, "written": (None, None)}, 0.0),
            "eve": ({"test_add": 2, "test_scale": 1, "written": (None, 2)}, 0.0),
            "gus": ({"test_add": 1, "test_scale": 1, "written": (None, 1)}, 0.0),
        }
        for student in [*scores, MISSING]:
            gb.add_student(student)
        for student, (cells, penalty) in scores.items():
            gb.add_submission(TINY, student, timestamp=due)
            for cell, score in cells.items():
                auto, manual = score if isinstance(score, tuple) else (score, None)
                grade = gb.find_grade(cell, TINY, TINY, student)
                grade.auto_score, grade.manual_score = auto, manual
                grade.needs_manual_grade = auto is None and manual is None
            gb.find_submission_notebook(TINY, TINY, student).late_submission_penalty = penalty
        gb.db.commit()
    for student in [*scores]:
        page = course / "feedback" / student / TINY / f"{TINY}.html"
        page.parent.mkdir(parents=True)
        page.write_text(f"<html><body>feedback for {student}</body></html>")
    return course


def id_map(tmp_path: Path, logins: dict[str, str]) -> Path:
    """The id map: ana..dee, plus gus, whose login the LMS file does not have; eve is not in it."""
    rows = "".join(f"{student},{login}\n" for student, login in {**logins, "gus": "gus@elsewhere.example"}.items())
    return write(tmp_path / "ids.csv", "nbgrader_id,lms_login\n" + rows)


def rows_of(data: bytes, encoding: str, delimiter: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(encoding), newline=""), delimiter=delimiter))


def changed_cells(before: list[list[str]], after: list[list[str]]) -> set[tuple[int, int]]:
    assert len(before) == len(after), "rows were added or dropped"
    assert [len(r) for r in before] == [len(r) for r in after], "columns were added or dropped"
    return {(i, j) for i, (b, a) in enumerate(zip(before, after)) for j, (x, y) in enumerate(zip(b, a)) if x != y}


def check_outcome(outcome: export.Outcome) -> None:
    """Missing, awaiting grading, off the roster and unmapped students are each reported."""
    assert sorted(outcome.written) == sorted(EXPECTED)
    assert [m.split()[0] for m in outcome.missing] == [MISSING]
    assert [m.split()[0] for m in outcome.ungraded] == [PENDING]
    off_roster = {"eve": "not in the id map", "gus": f"no row for 'gus@elsewhere.example' in the {outcome.lms} file"}
    assert outcome.unrostered == off_roster
    assert any("jose" in u for u in outcome.unmapped), outcome.unmapped


CANVAS_LOGINS = {"ana": "ana@uni.example", "ben": "S1002", "cai": "9003", "dee": "dee@uni.example"}
"""Canvas rows may be named by SIS Login ID, SIS User ID or Canvas user ID."""


@pytest.mark.parametrize(
    ("sample", "bom", "delimiter", "decimal"),
    [("canvas-gradebook.csv", b"", ",", "."), ("canvas-gradebook-semicolon.csv", b"\xef\xbb\xbf", ";", ",")],
)
def test_canvas_gradebook_gets_one_column_filled_and_nothing_else(course, tmp_path, sample, bom, delimiter, decimal) -> None:
    source, out = SAMPLES / sample, tmp_path / "upload.csv"
    outcome = export.export(course, TINY, "canvas", source, id_map(tmp_path, CANVAS_LOGINS), out, column="Tiny")
    check_outcome(outcome)
    data = out.read_bytes()
    # Canvas's own encoding and separator, as its gradebook export options write them; no BOM added or lost.
    assert data[:3] == bom[:3] if bom else data[:3] != b"\xef\xbb\xbf"
    before = rows_of(source.read_bytes(), "utf-8-sig", delimiter)
    after = rows_of(data, "utf-8-sig", delimiter)
    # Read back as Canvas's importer does: header Student, ID ...; the "Points Possible" row; students by ID.
    header = after[0]
    assert header == before[0] and header[:2] == ["Student", "ID"]
    column = next(i for i, h in enumerate(header) if h.endswith("(12345)"))
    possible = next(r for r in after if "Points Possible" in r[0])
    assert possible == next(r for r in before if "Points Possible" in r[0])
    by_id = {r[1]: r for r in after if re.fullmatch(r"\d+", r[1] or "")}
    assert by_id["9001"][column] == EXPECTED["ana"].replace(".", decimal)
    assert by_id["9002"][column] == EXPECTED["ben"].replace(".", decimal)
    assert by_id["9003"][column] == "" and by_id["9004"][column] == "", "no grade (never 0) for missing or ungraded students"
    assert by_id["9005"][column] == "3" + decimal + "00", "an unmapped student keeps the grade Canvas had"
    rows = {r: i for i, r in enumerate(row[1] for row in after)}
    assert changed_cells(before, after) == {(rows["9001"], column), (rows["9002"], column)}
    # Every line but the two filled ones is byte for byte as downloaded.
    old, new = source.read_bytes().splitlines(keepends=True), data.splitlines(keepends=True)
    assert [i for i, (a, b) in enumerate(zip(old, new)) if a != b] == sorted([rows["9001"], rows["9002"]])


def test_canvas_column_by_id_and_unknown_column(course, tmp_path) -> None:
    ids, out = id_map(tmp_path, CANVAS_LOGINS), tmp_path / "upload.csv"
    by_id = export.export(course, TINY, "canvas", SAMPLES / "canvas-gradebook.csv", ids, out, column="12345")
    assert by_id.column == "Tiny (12345)"
    with pytest.raises(export.ExportError, match=r"no Canvas column 'Quiz'.*'Tiny' \(id 12345\).*'Dice' \(id 12346\)"):
        export.export(course, TINY, "canvas", SAMPLES / "canvas-gradebook.csv", ids, tmp_path / "other.csv", column="Quiz")


def test_points_that_differ_from_nbgrader_stop_the_export_unless_rescaled(course, tmp_path) -> None:
    ids, out = id_map(tmp_path, CANVAS_LOGINS), tmp_path / "upload.csv"
    with pytest.raises(export.ExportError, match="worth 10 points and the assignment 5"):
        export.export(course, TINY, "canvas", SAMPLES / "canvas-gradebook.csv", ids, out, column="Dice")
    assert not out.exists()
    rescaled = export.export(course, TINY, "canvas", SAMPLES / "canvas-gradebook.csv", ids, out, column="Dice", rescale=True)
    assert rescaled.written == {"ana": "9.00", "ben": "8.00"}


def test_canvas_has_no_bulk_feedback_upload_to_fill(course, tmp_path) -> None:
    with pytest.raises(export.ExportError, match="Re-upload submissions"):
        export.export(course, TINY, "canvas", SAMPLES / "canvas-gradebook.csv", id_map(tmp_path, CANVAS_LOGINS),
                      tmp_path / "upload.csv", column="Tiny", feedback_dir=tmp_path / "fb")  # fmt: skip


MOODLE_LOGINS = {s: f"{s}@uni.example" for s in ("ana", "ben", "cai", "dee")}


def test_moodle_worksheet_and_feedback_zip(course, tmp_path) -> None:
    source, out = SAMPLES / "moodle-worksheet.csv", tmp_path / "worksheet.csv"
    outcome = export.export(course, TINY, "moodle", source, id_map(tmp_path, MOODLE_LOGINS), out, feedback_dir=tmp_path / "fb")
    check_outcome(outcome)
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "the BOM of Moodle's download is kept"
    before, after = rows_of(source.read_bytes(), "utf-8-sig", ","), rows_of(data, "utf-8-sig", ",")
    # Read back as Moodle's offline grading importer does: columns found by name, the participant number after
    # "Participant ", rows with an empty grade skipped.
    header = after[0]
    assert header == before[0]
    ident, grade, modified = header.index("Identifier"), header.index("Grade"), header.index("Last modified (grade)")
    imported = {r[ident][len("Participant ") :]: r[grade] for r in after[1:] if r[grade] != ""}
    assert imported == {"1001": EXPECTED["ana"], "1002": EXPECTED["ben"], "1005": "3.00"}
    assert {(i, grade) for i in (1, 2)} == changed_cells(before, after)
    assert [r[modified] for r in after] == [r[modified] for r in before], "Moodle's stale-grade check keeps its dates"
    # Fields are quoted as Moodle's CSV writer quotes them (fields with spaces), the filled ones too.
    assert b'"Participant 1001","Ana Lima",ana@uni.example,"Submitted for grading",4.50,5.00,' in data
    # The feedback zip, read as Moodle's "Upload multiple feedback files in a zip" reads it.
    assert outcome.feedback and outcome.feedback_files == 2
    with zipfile.ZipFile(outcome.feedback) as zf:
        names = sorted(zf.namelist())
        assert names == ["Ana Lima_1001_assignsubmission_file_/tiny.html", "Ben Bauer_1002_assignsubmission_file_/tiny.html"]
        for name in names:
            folder = name.split("/")[0].split("_", 4)
            assert len(folder) == 5 and folder[2:4] == ["assignsubmission", "file"]
            student = {"1001": "ana", "1002": "ben"}[folder[1]]
            assert zf.read(name).decode() == f"<html><body>feedback for {student}</body></html>"


@pytest.mark.parametrize(
    ("sample", "encoding", "delimiter"),
    [("blackboard-gradecenter.xls", "utf-16", "\t"), ("blackboard-gradecenter.csv", "utf-8", ",")],
)
def test_blackboard_grade_center_download(course, tmp_path, sample, encoding, delimiter) -> None:
    source, out = SAMPLES / sample, tmp_path / f"upload{Path(sample).suffix}"
    logins = {"ana": "ana", "ben": "ben", "cai": "cai", "dee": "S1004"}
    outcome = export.export(course, TINY, "blackboard", source, id_map(tmp_path, logins), out, column="123456")
    check_outcome(outcome)
    data = out.read_bytes()
    if encoding == "utf-16":
        assert data[:2] == b"\xff\xfe", "Blackboard's tab-delimited download is UTF-16LE with a BOM, and stays so"
        assert data.count(b"\t\x00") == source.read_bytes().count(b"\t\x00")
    before, after = rows_of(source.read_bytes(), encoding, delimiter), rows_of(data, encoding, delimiter)
    # Read back as Blackboard's upload matches: students by Username, the column by its id after '|'.
    header = after[0]
    assert header == before[0]
    column = next(i for i, h in enumerate(header) if h.endswith("|123456"))
    by_user = {r[header.index("Username")]: r[column] for r in after[1:]}
    assert by_user == {"ana": EXPECTED["ana"], "ben": EXPECTED["ben"], "cai": "", "dee": "", "jose": "3.00000"}
    assert changed_cells(before, after) == {(1, column), (2, column)}
    # Every field stays quoted, as Blackboard writes them and as its comma-delimited upload requires.
    text = data.decode(encoding)
    assert all(line.startswith('"') and line.endswith('"') for line in text.splitlines())
    assert f'"{EXPECTED["ana"]}"' in text


def test_blackboard_calculated_columns_take_no_grades(course, tmp_path) -> None:
    with pytest.raises(export.ExportError, match="no Blackboard column 'Total'"):
        export.export(course, TINY, "blackboard", SAMPLES / "blackboard-gradecenter.xls",
                      id_map(tmp_path, {"ana": "ana"}), tmp_path / "upload.xls", column="Total")  # fmt: skip


def test_the_lms_file_must_be_the_lms_own(course, tmp_path) -> None:
    ids = id_map(tmp_path, MOODLE_LOGINS)
    with pytest.raises(export.ExportError, match="not a Moodle grading worksheet"):
        export.export(course, TINY, "moodle", SAMPLES / "canvas-gradebook.csv", ids, tmp_path / "x.csv")
    resaved = write(tmp_path / "resaved.csv", "")
    resaved.write_bytes((SAMPLES / "moodle-worksheet.csv").read_bytes()[3:].decode().encode("cp1252"))
    with pytest.raises(export.ExportError, match="neither UTF-8 nor UTF-16"):
        export.export(course, TINY, "moodle", resaved, ids, tmp_path / "x.csv")


def test_id_map_must_name_each_student_once(tmp_path) -> None:
    ok = write(tmp_path / "ok.csv", "nbgrader_id,lms_login\nana,ana@x\n\nben,ben@x\n")
    assert export.read_map(ok) == {"ana": "ana@x", "ben": "ben@x"}
    with pytest.raises(export.ExportError, match="header 'nbgrader_id,lms_login'"):
        export.read_map(write(tmp_path / "bad.csv", "student,login\nana,ana@x\n"))
    with pytest.raises(export.ExportError, match="names 'ana@x' twice"):
        export.read_map(write(tmp_path / "twice.csv", "nbgrader_id,lms_login\nana,ana@x\nben,ana@x\n"))


def test_grader_export_command(course, tmp_path) -> None:
    ids = id_map(tmp_path, MOODLE_LOGINS)
    done = grader(
        "export", TINY, "--lms", "moodle", "--from", str(SAMPLES / "moodle-worksheet.csv"), "--map", str(ids),
        "--out", str(tmp_path / "upload.csv"), "--feedback-dir", str(tmp_path / "fb"), cwd=course,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 grades into column 'Grade', 5 points" in done.stdout
    assert "missing (no submission; grade left empty, not 0): dee (dee@uni.example)" in done.stdout
    assert "awaiting manual grading (grade left empty): cai" in done.stdout
    assert "eve (not in the id map)" in done.stdout and "gus (no row for 'gus@elsewhere.example'" in done.stdout
    assert (tmp_path / "fb" / "upload-feedback.zip").is_file()
    refused = grader(
        "export", TINY, "--lms", "blackboard", "--from", str(SAMPLES / "blackboard-gradecenter.xls"), "--map", str(ids),
        "--out", str(tmp_path / "bb.xls"), "--feedback-dir", str(tmp_path / "fb"), cwd=course,
    )  # fmt: skip
    assert refused.returncode == 2 and "no bulk upload of feedback files" in refused.stderr
