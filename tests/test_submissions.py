"""Submissions as they really arrive — renamed, saved by Colab, metadata stripped, cells deleted,
duplicated, moved, split or merged, not a notebook at all, a kernel that dies — each graded as
what it is; and faulty or hostile ones — an endless loop, memory until the limit, a flood of
output, processes left behind, reads of the hidden tests, writes to the gradebook, to installed
packages and to other students' folders — each kept inside its own sandbox. All on the tiny
course (seconds per submission), in one parallel batch, beside a correct submission whose grade
must not change."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell
from tiny_course import answered, make_course

from grader import autograde, gradebook, mangle

TINY = "tiny"
FULL = {"test_add": 2.0, "test_scale": 1.0}
ZERO = {"test_add": 0.0, "test_scale": 0.0}
BLANK = "raise NotImplementedError()"


def nb_bytes(nb) -> bytes:
    return nbformat.writes(nb).encode()


def correct():
    return answered()


def blank():
    return answered(BLANK, BLANK)


def without_tests(nb):
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if not c.metadata.get("nbgrader", {}).get("grade")]
    return nb


def checks_edited(nb):
    """Every test cell's asserts replaced: a student making the checks pass."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.source = "# my checks\nassert True"
    return nb


def checks_moved_and_duplicated(nb):
    nb = copy.deepcopy(nb)
    test_add, test_scale = (c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    nb.cells.remove(test_scale)
    nb.cells.insert(0, test_scale)  # before anything is defined
    duplicate = copy.deepcopy(test_add)
    duplicate.id = "duplicate"
    nb.cells.append(duplicate)
    return nb


def merged(nb):
    """Both answers in the first answer cell; the second answer cell deleted."""
    nb = copy.deepcopy(nb)
    nb.cells[1].source += "\n\n" + nb.cells[3].source
    del nb.cells[3]
    return nb


def split(nb):
    """The add answer over two cells with no nbgrader metadata, the helper first."""
    nb = copy.deepcopy(nb)
    nb.cells[1].source = "def _plus(a, b):\n    return a + b"
    nb.cells.insert(2, new_code_cell("def add(a, b):\n    return _plus(a, b)"))
    return mangle.stripped(nb)


def kernel_dies_in_scale(nb):
    nb = copy.deepcopy(nb)
    nb.cells[3].source += "\nimport os\nos._exit(3)"
    return nb


def exits(nb):
    nb = copy.deepcopy(nb)
    nb.cells[3].source += "\nimport sys\nsys.exit(0)"
    return nb


def with_code(add_extra: str = "", scale_body: str = "return 2 * x"):
    """The correct answers, with ``add_extra`` run in the add cell after ``add`` is defined."""
    nb = answered(scale_body=scale_body)
    nb.cells[1].source += "\n" + add_extra
    return nb


MARKER = "grader-test-lives-on"
DETACHED = """
import time
for _ in range(300):
    for path in ("/tmp/MARKER", "OUTSIDE/MARKER"):
        try:
            open(path, "a").write("x")
        except OSError:
            pass
    time.sleep(0.2)
""".replace("MARKER", MARKER)
LIVES_ON = f"""
import subprocess, sys
# A detached process that tries to outlive the grading and write where it should not.
subprocess.Popen([sys.executable, "-c", {DETACHED!r}], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""
SNOOP = r"""
import glob, os, socket, sqlite3
found = []
for path in ["../../../source/tiny/tiny.ipynb", "../../../gradebook.db", "COURSE/source/tiny/tiny.ipynb", "COURSE/gradebook.db",
             *glob.glob("/tmp/**/*.ipynb", recursive=True), *glob.glob("/*/*/source/*/*.ipynb"), *glob.glob("/*/source/*/*.ipynb")]:
    try:
        if os.path.abspath(path).startswith(os.getcwd()):
            continue  # its own notebook
        if "add(-7, " + "7)" in open(path, errors="replace").read() or path.endswith(".db"):
            found.append("LEAKED read " + path)
    except OSError:
        pass
for db in ("../../../gradebook.db", "COURSE/gradebook.db"):
    try:
        with sqlite3.connect(db) as con:
            con.execute("UPDATE grade SET auto_score = 999")
        found.append("LEAKED gradebook " + db)
    except Exception:
        pass
import nbgrader, torch
for target in (os.path.dirname(nbgrader.__file__), os.path.dirname(torch.__file__), "COURSE/autograded/correct/tiny", "COURSE/submitted/correct/tiny"):
    try:
        open(os.path.join(target, "pwned.py"), "w").write("raise SystemExit('pwned')")
        found.append("LEAKED wrote " + target)
    except OSError:
        pass
try:
    socket.create_connection(("1.1.1.1", 53), timeout=3)
    found.append("LEAKED network")
except OSError:
    pass
print("\n".join(found) or "SEALED")
"""


NAME = f"{TINY}.ipynb"
CASES = {
    # student: (files, expected scores, a note that must say what happened; None: an error naming ...)
    "copy-of": ({f"Copy of {NAME}": nb_bytes(correct())}, FULL, "graded as tiny.ipynb"),
    "numbered-copy": ({"tiny (1).ipynb": nb_bytes(correct())}, FULL, "graded as tiny.ipynb"),
    "jupyter-copy": ({"tiny-Copy1.ipynb": nb_bytes(correct())}, FULL, "graded as tiny.ipynb"),
    "other-case": ({"Tiny.ipynb": nb_bytes(correct())}, FULL, "graded as tiny.ipynb"),
    "colab": ({NAME: mangle.colab_saved(correct())}, FULL, "by Colab"),
    "colab-blank": ({NAME: mangle.colab_saved(blank())}, ZERO, "by Colab"),
    "metadata-stripped": ({NAME: nb_bytes(mangle.stripped(correct()))}, FULL, "matched to the release"),
    "metadata-stripped-blank": ({NAME: nb_bytes(mangle.stripped(blank()))}, ZERO, "matched to the release"),
    "tests-deleted": ({NAME: nb_bytes(without_tests(correct()))}, FULL, "restored: test_add, test_scale"),
    "tests-deleted-blank": ({NAME: nb_bytes(without_tests(blank()))}, ZERO, "restored"),
    "tests-edited-wrong-answers": ({NAME: nb_bytes(checks_edited(answered("return 0", "return 0")))}, ZERO, None),
    "tests-edited-stripped-wrong": ({NAME: nb_bytes(mangle.stripped(checks_edited(answered("return 0", "return 0"))))}, ZERO, "matched"),
    "tests-moved-duplicated": ({NAME: nb_bytes(checks_moved_and_duplicated(correct()))}, FULL, "run as released"),
    "answers-merged": ({NAME: nb_bytes(merged(correct()))}, FULL, "no code of their own"),
    "answer-split-stripped": ({NAME: nb_bytes(split(correct()))}, FULL, "graded together"),
    "empty-file": ({NAME: b""}, ZERO, "is empty"),
    "no-notebook": ({"answers.py": b"def add(a, b):\n    return a + b\n"}, ZERO, "no notebook tiny.ipynb"),
    "kernel-dies": ({NAME: nb_bytes(kernel_dies_in_scale(correct()))}, {"test_add": 2.0, "test_scale": 0.0}, "kernel died"),
    "sys-exit": ({NAME: nb_bytes(exits(correct()))}, FULL, None),
    "two-candidates": ({f"Copy of {NAME}": nb_bytes(correct()), "tiny (1).ipynb": nb_bytes(blank())}, None, "Copy of tiny.ipynb, tiny (1).ipynb"),
    # Faults and hostile code: each stays inside its own submission.
    "endless-loop": ({NAME: nb_bytes(with_code(scale_body="while True:\n        pass"))}, {"test_add": 2.0, "test_scale": 0.0}, "time limit"),
    "memory-hog": ({NAME: nb_bytes(with_code("_hog = [bytearray(64 << 20) for _ in range(10**6)]"))}, FULL, None),
    "kills-its-kernel": (
        {NAME: nb_bytes(with_code(scale_body="return 2 * x\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)"))},
        {"test_add": 2.0, "test_scale": 0.0}, "kernel died",
    ),
    "output-flood": ({NAME: nb_bytes(with_code("for _ in range(3000):\n    print('x' * 10_000)"))}, FULL, "output over the limit"),
    "fork-bomb": ({NAME: nb_bytes(with_code("import subprocess\n_children = [subprocess.Popen(['sleep', '30']) for _ in range(10_000)]"))}, FULL, None),
    "lives-on": (None, FULL, None),  # built in the fixture: they name folders of the test
    "snoops-and-writes": (None, FULL, None),
}
LIMITS = """
c.Execute.timeout = 10
c.GraderSandbox.memory_mb = 1536
c.GraderSandbox.processes = 64
c.GraderSandbox.output_kb = 256
c.GraderSandbox.notebook_timeout = 300
"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory):
    course = make_course(tmp_path_factory.mktemp("mangled"))
    with (course / "nbgrader_config.py").open("a") as config:
        config.write(LIMITS)
    outside = tmp_path_factory.mktemp("outside")
    built = {
        "lives-on": {NAME: nb_bytes(with_code(LIVES_ON.replace("OUTSIDE", str(outside))))},
        "snoops-and-writes": {NAME: nb_bytes(with_code(SNOOP.replace("COURSE", str(course))))},
        "correct": {NAME: nb_bytes(correct())},
    }
    for student, files in {**{s: f for s, (f, _, _) in CASES.items()}, "correct": None}.items():
        folder = course / "submitted" / student / TINY
        folder.mkdir(parents=True)
        for name, content in (files or built[student]).items():
            (folder / name).write_bytes(content)
    results = {r.student: r for r in autograde.autograde(course, TINY, workers=2, progress=False)}
    return course, results, outside


def outputs(course: Path, student: str, cell: int) -> str:
    """The text a cell of the student's autograded notebook printed or raised."""
    nb = nbformat.read(str(course / "autograded" / student / TINY / NAME), as_version=4)
    return "".join(o.get("text", "") + o.get("ename", "") + o.get("evalue", "") for o in nb.cells[cell].outputs)


@pytest.mark.parametrize("case", list(CASES))
def test_each_submission_is_graded_as_what_it_is(graded, case: str) -> None:
    course, results, _ = graded
    student = case
    _, want, note = CASES[student]
    result = results[student]
    if want is None:
        assert result.error and note in result.error, f"{student}: expected an error naming {note!r}, got {result.error!r}"
        return
    assert result.error is None, f"{student}: {result.error}"
    assert result.scores == want, f"{student}: {result.scores}, notes: {result.notes}"
    assert gradebook.scores(course, TINY, student) == want, f"{student}: the gradebook differs from the result"
    if note:
        assert any(note in n for n in result.notes), f"{student}: no note saying {note!r}: {result.notes}"


def test_an_intact_notebook_is_graded_untouched() -> None:
    from grader.normalize import repair

    release = {NAME: nb_bytes(blank())}
    raw = nb_bytes(correct())
    assert repair({NAME: raw}, release).files[NAME] == raw
    assert repair({NAME: raw}, release).notes == []


def test_the_report_shows_what_was_repaired(graded) -> None:
    from grader import report

    course, _, _ = graded
    rows = {r["student_id"]: r for r in report.write(course, TINY).rows}
    assert "graded as tiny.ipynb" in rows["copy-of"]["notes"]
    assert "kernel died" in rows["kernel-dies"]["notes"]
    page = (course / "reports" / TINY / "index.html").read_text()
    assert "kernel died" in page and "Copy of tiny.ipynb" in page


def test_no_fault_changes_another_students_grade(graded) -> None:
    course, results, _ = graded
    assert results["correct"].error is None and results["correct"].scores == FULL
    assert gradebook.scores(course, TINY, "correct") == FULL
    for folder in ("autograded", "submitted"):
        assert not (course / folder / "correct" / TINY / "pwned.py").exists(), folder


def test_hidden_tests_gradebook_packages_and_network_are_out_of_reach(graded) -> None:
    import nbgrader
    import torch

    course, _, _ = graded
    said = outputs(course, "snoops-and-writes", 1)
    assert "SEALED" in said and "LEAKED" not in said, said
    for package in (nbgrader, torch):
        assert not (Path(package.__file__).parent / "pwned.py").exists(), package.__name__


def test_memory_and_processes_stop_at_their_limits(graded) -> None:
    course, _, _ = graded
    assert "MemoryError" in outputs(course, "memory-hog", 1)
    assert "Resource temporarily unavailable" in outputs(course, "fork-bomb", 1)


def test_output_is_capped_while_the_notebook_runs(graded) -> None:
    course, _, _ = graded
    held = outputs(course, "output-flood", 1)
    assert len(held) < 400_000 and "output over the limit dropped" in held, len(held)


def test_nothing_outlives_its_grading(graded) -> None:
    _, _, outside = graded
    alive = subprocess.run(["pgrep", "-f", MARKER], capture_output=True, text=True).stdout.split()
    assert not alive, f"processes left behind by a submission: {alive}"
    assert not (Path("/tmp") / MARKER).exists(), "a submission wrote into the grading machine's /tmp"
    assert not (outside / MARKER).exists(), "a submission wrote outside its sandbox"
