"""Submissions as they really arrive — renamed, saved by Colab, metadata stripped, cells deleted,
duplicated, moved, split or merged, not a notebook at all, a kernel that dies — each graded as
what it is; and faulty or hostile ones — an endless loop, memory until the limit, a flood of
output, processes left behind, reads of the hidden tests, writes to the gradebook, to installed
packages and to other students' folders — each kept inside its own sandbox; links, FIFOs and huge files that student code leaves or a
submission brings, never followed or copied by the grader outside the sandbox; and limits that hold
for the whole submission (memory of all its processes, /dev/shm, the working folder). All on the tiny
course (seconds per submission), in one parallel batch, beside a correct submission whose grade
must not change."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell
from tiny_course import answered, make_course

from grader import autograde, cgroup, gradebook, mangle, untrusted

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


# Links and odd files: student code leaves them in its working folder, or the submission brings them.
LINKS_ITSELF = """
import os
os.remove("tiny.ipynb")
os.symlink("OUTSIDE/sentinel.txt", "tiny.ipynb")  # nbgrader writes the graded notebook here
"""
LEAVES_LINKS = """
import os
os.symlink("COURSE/source/tiny/tiny.ipynb", "copied.ipynb")  # would be copied into autograded/
os.symlink("OUTSIDE/sentinel.txt", "chmod-me.txt")  # would be made read-only by nbgrader's chmod
os.symlink("/proc/self/environ", "environ")  # would abort nbgrader's chmod
os.symlink("COURSE", "course")  # a folder
os.mkfifo("pipe")
open("plain.txt", "w").write("kept")
open("kept.txt", "w").write("two names")
os.link("kept.txt", "hard-link.txt")
open("huge.bin", "wb").write(bytes(12 << 20))  # past the largest file kept
for i in range(4):
    open(f"part-{i}.bin", "wb").write(bytes(7 << 20))  # together past what is kept of a folder
"""
READS_WHAT_IT_BROUGHT = """
import os
for name in ("source.ipynb", "gradebook.db", "pipe"):
    try:
        found = open(name, "rb").read() if not os.path.exists(name) or not os.path.isdir(name) else b""
        print("LEAKED" if b"add(-7, " + b"7)" in found or b"SQLite" in found else "read nothing of " + name)
    except OSError as error:
        print("no", name, type(error).__name__)
"""
LIMITS_SEEN = """
import os
def fill(path, megabytes):
    try:
        with open(path, "wb") as out:
            for _ in range(megabytes):
                out.write(bytes(1 << 20))
                out.flush()
        return "wrote all"
    except OSError as error:
        return type(error).__name__ + " " + str(error.errno)
    finally:
        if os.path.exists(path):
            os.remove(path)
shm = os.statvfs("/dev/shm")
work = os.statvfs(".")
print("shm size MB", shm.f_blocks * shm.f_frsize >> 20, "| /dev/shm 100 MB:", fill("/dev/shm/fill", 100))
print("working folder size MB", work.f_blocks * work.f_frsize >> 20, "| working folder 200 MB:", fill("fill.bin", 200))
"""
CHILDREN_HOG = """
import subprocess, sys
child = "import time; b = bytearray(700 << 20); b[::4096] = bytes(len(b[::4096])); time.sleep(3); print('held')"
runs = [subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE) for _ in range(3)]
print("children that held 700 MB at once:", sum(b"held" in run.communicate()[0] for run in runs), "of 3")
"""
SHARED_HOG = """
import mmap
try:
    shared = mmap.mmap(-1, 3 << 30)  # shared anonymous memory: not private data of the process
    for offset in range(0, len(shared), 4096):
        shared[offset] = 1
    print("HELD 3 GB")
except (OSError, MemoryError) as error:
    print("refused:", type(error).__name__)
"""


def cgroup_here() -> bool:
    """Whether the grader can put a sandbox in a memory cgroup of its own here."""
    probe = cgroup.create(1 << 30)
    if probe is not None:
        probe.remove()
    return probe is not None


CGROUP = cgroup_here()


NAME = f"{TINY}.ipynb"
SHIPPED_UNSEEN = "assert not __import__('os').path.exists('model.pth'), 'a file the submission brought reached the kernel'\n    return 2 * x"
"""scale, correct only where the kernel never sees a file the submission brought beside its notebook."""
ANY_SCALE = {"test_add": 2.0}
"""Scores of a case whose last answer cell may or may not end with the kernel stopped: only those that ran before."""
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
    "ships-a-model-file": (
        {NAME: nb_bytes(with_code(scale_body=SHIPPED_UNSEEN)), "model.pth": b"trained elsewhere", "data/cache.pt": b"more"},
        FULL, "submitted model.pth: left out",
    ),
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
    "links-itself": (None, FULL, "tiny.ipynb: a symbolic link, removed"),
    "leaves-links": (None, FULL, "environ: a symbolic link, removed"),
    "brings-links": (None, FULL, "submitted source.ipynb: a symbolic link, left out"),
    "limits-seen": ({NAME: nb_bytes(with_code(LIMITS_SEEN))}, FULL, None),
    "children-hog": ({NAME: nb_bytes(with_code(scale_body="return 2 * x\n" + CHILDREN_HOG))}, ANY_SCALE, None),
    "shared-memory-hog": (
        {NAME: nb_bytes(with_code(scale_body="return 2 * x\n" + SHARED_HOG))},
        {"test_add": 2.0, "test_scale": 0.0} if CGROUP else FULL, None,  # stopped in its cell, or refused the memory
    ),
}
LIMITS = """
c.Execute.timeout = 10
c.GraderSandbox.memory_mb = 1536
c.GraderSandbox.processes = 64
c.GraderSandbox.output_kb = 256
c.GraderSandbox.notebook_timeout = 300
c.GraderSandbox.shm_mb = 32
c.GraderSandbox.workdir_mb = 96
c.GraderSandbox.keep_file_mb = 8
c.GraderSandbox.keep_mb = 24
"""


def snapshot(*folders: Path) -> dict[str, tuple]:
    """Every entry under ``folders`` (never following a link): its kind, mode and contents."""
    import hashlib
    import stat

    found = {}
    for folder in folders:
        for entry in untrusted.entries(folder):
            mode = entry.info.st_mode
            content = hashlib.sha256(entry.path.read_bytes()).hexdigest() if stat.S_ISREG(mode) else ""
            found[str(entry.path)] = (stat.S_IFMT(mode), stat.S_IMODE(mode), content)
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory):
    course = make_course(tmp_path_factory.mktemp("mangled"))
    with (course / "nbgrader_config.py").open("a") as config:
        config.write(LIMITS)
    outside = tmp_path_factory.mktemp("outside")
    (outside / "sentinel.txt").write_text("the grader must not touch this")
    (outside / "sentinel.txt").chmod(0o640)
    places = lambda code: code.replace("OUTSIDE", str(outside)).replace("COURSE", str(course))  # noqa: E731
    built = {
        "lives-on": {NAME: nb_bytes(with_code(places(LIVES_ON)))},
        "snoops-and-writes": {NAME: nb_bytes(with_code(places(SNOOP)))},
        "links-itself": {NAME: nb_bytes(with_code(places(LINKS_ITSELF)))},
        "leaves-links": {NAME: nb_bytes(with_code(places(LEAVES_LINKS)))},
        "brings-links": {NAME: nb_bytes(with_code(READS_WHAT_IT_BROUGHT))},
        "correct": {NAME: nb_bytes(correct())},
    }
    for student, files in {**{s: f for s, (f, _, _) in CASES.items()}, "correct": None}.items():
        folder = course / "submitted" / student / TINY
        folder.mkdir(parents=True)
        for name, content in (files or built[student]).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
    brought = course / "submitted" / "brings-links" / TINY
    (brought / "source.ipynb").symlink_to(course / "source" / TINY / NAME)
    (brought / "gradebook.db").symlink_to(course / "gradebook.db")
    os.mkfifo(brought / "pipe")  # reading it would wait for ever
    before = snapshot(course / "source", course / "release", course / "submitted", course / "nbgrader_config.py", outside)
    results = {r.student: r for r in autograde.autograde(course, TINY, workers=2, progress=False)}
    after = snapshot(course / "source", course / "release", course / "submitted", course / "nbgrader_config.py", outside)
    return course, results, outside, (before, after)


def outputs(course: Path, student: str, cell: int) -> str:
    """The text a cell of the student's autograded notebook printed or raised."""
    nb = nbformat.read(str(course / "autograded" / student / TINY / NAME), as_version=4)
    return "".join(o.get("text", "") + o.get("ename", "") + o.get("evalue", "") for o in nb.cells[cell].outputs)


@pytest.mark.parametrize("case", list(CASES))
def test_each_submission_is_graded_as_what_it_is(graded, case: str) -> None:
    course, results, _, _ = graded
    student = case
    _, want, note = CASES[student]
    result = results[student]
    if want is None:
        assert result.error and note in result.error, f"{student}: expected an error naming {note!r}, got {result.error!r}"
        return
    assert result.error is None, f"{student}: {result.error}"
    scores = {k: v for k, v in result.scores.items() if k in want or want is not ANY_SCALE}
    assert scores == want, f"{student}: {result.scores}, notes: {result.notes}"
    assert gradebook.scores(course, TINY, student) == {**gradebook.scores(course, TINY, student), **want}, student
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

    course, _, _, _ = graded
    rows = {r["student_id"]: r for r in report.write(course, TINY).rows}
    assert "graded as tiny.ipynb" in rows["copy-of"]["notes"]
    assert "kernel died" in rows["kernel-dies"]["notes"]
    page = (course / "reports" / TINY / "index.html").read_text()
    assert "kernel died" in page and "Copy of tiny.ipynb" in page


def test_no_fault_changes_another_students_grade(graded) -> None:
    course, results, _, _ = graded
    assert results["correct"].error is None and results["correct"].scores == FULL
    assert gradebook.scores(course, TINY, "correct") == FULL
    for folder in ("autograded", "submitted"):
        assert not (course / folder / "correct" / TINY / "pwned.py").exists(), folder


def test_hidden_tests_gradebook_packages_and_network_are_out_of_reach(graded) -> None:
    import nbgrader
    import torch

    course, _, _, _ = graded
    said = outputs(course, "snoops-and-writes", 1)
    assert "SEALED" in said and "LEAKED" not in said, said
    for package in (nbgrader, torch):
        assert not (Path(package.__file__).parent / "pwned.py").exists(), package.__name__


def test_memory_and_processes_stop_at_their_limits(graded) -> None:
    course, _, _, _ = graded
    assert "MemoryError" in outputs(course, "memory-hog", 1)
    assert "Resource temporarily unavailable" in outputs(course, "fork-bomb", 1)


def test_output_is_capped_while_the_notebook_runs(graded) -> None:
    course, _, _, _ = graded
    held = outputs(course, "output-flood", 1)
    assert len(held) < 400_000 and "output over the limit dropped" in held, len(held)


def test_nothing_outlives_its_grading(graded) -> None:
    _, _, outside, _ = graded
    alive = subprocess.run(["pgrep", "-f", MARKER], capture_output=True, text=True).stdout.split()
    assert not alive, f"processes left behind by a submission: {alive}"
    assert not (Path("/tmp") / MARKER).exists(), "a submission wrote into the grading machine's /tmp"
    assert not (outside / MARKER).exists(), "a submission wrote outside its sandbox"


def test_nothing_outside_a_sandbox_follows_what_student_code_left(graded) -> None:
    course, results, _, (before, after) = graded
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    assert not changed, f"files outside the submissions' private courses changed: {changed}"
    left = course / "autograded" / "leaves-links" / TINY
    kept = sorted(p.name for p in left.iterdir())
    assert kept == ["part-1.bin", "part-2.bin", "part-3.bin", "plain.txt", NAME], kept  # plain files, within the limits
    for name in ("copied.ipynb", "chmod-me.txt", "environ", "course", "pipe"):
        assert any(note.startswith(f"working folder {name}: ") for note in results["leaves-links"].notes), (name, results["leaves-links"].notes)
    assert any("huge.bin" in note and "over the 8.0 MB" in note for note in results["leaves-links"].notes)
    for note in ("part-0.bin: 7.0 MB, past the 24.0 MB", "kept.txt: a hard link", "hard-link.txt: a hard link"):
        assert any(note in n for n in results["leaves-links"].notes), (note, results["leaves-links"].notes)
    graded_notebook = course / "autograded" / "links-itself" / TINY / NAME
    assert not graded_notebook.is_symlink() and b"test_add" in graded_notebook.read_bytes()


def test_links_a_submission_brings_are_never_read(graded) -> None:
    course, results, _, _ = graded
    said = outputs(course, "brings-links", 1)
    assert "LEAKED" not in said and said.count("no ") == 3, said
    notes = results["brings-links"].notes
    for note in ("source.ipynb: a symbolic link", "gradebook.db: a symbolic link", "pipe: a FIFO"):
        assert any(note in n for n in notes), (note, notes)


def test_limits_hold_for_the_whole_submission(graded) -> None:
    course, results, _, _ = graded
    seen = outputs(course, "limits-seen", 1)
    assert "shm size MB 32 " in seen and "/dev/shm 100 MB: OSError 28" in seen, seen  # ENOSPC
    if os.geteuid() == 0:  # the working folder is a tmpfs of its own where the grader may mount one
        assert "working folder size MB 96 " in seen and "working folder 200 MB: OSError 28" in seen, seen
    hog = outputs(course, "shared-memory-hog", 3)
    assert "HELD 3 GB" not in hog, hog
    if not CGROUP:
        pytest.skip("no memory cgroup can be made here: only each process's address space is limited")
    children = outputs(course, "children-hog", 3)  # 2.1 GB together, past the 1.5 GB of the submission
    assert "children that held 700 MB at once: 3" not in children, children
    assert any("memory limit" in note for note in results["children-hog"].notes), results["children-hog"].notes
    assert any("memory limit" in note for note in results["shared-memory-hog"].notes), results["shared-memory-hog"].notes
