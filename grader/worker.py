"""Grade one submission, alone, in a throwaway course directory, through a declared list of steps.

``grade(submission, assignment, settings)`` is a plain function of picklable values: it needs no
shared file system, no global state and no access to the course's gradebook, so the same function
runs in a local process pool and on a Dask worker. It builds a private course directory holding
only the assignment's source files, the course config, a private gradebook with the assignment
recorded (due date included) and this one submission; runs real ``nbgrader autograde`` there; and
returns what nbgrader recorded (per-cell scores, comments, timestamp, late penalty) with the
autograded files. The coordinator (``grader.autograde``) alone writes the course's gradebook.

The work is the list ``STEPS``: each step is a small function of the ``Context``. A step that
finds the submission ungradable raises ``SubmissionError``; the loop stops there and the result
carries the reason. New steps (repairing a notebook, a sandbox, a judge) slot into the list. The values
it takes and returns are in ``grader.records``; it starts its processes with ``grader.processes``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nbformat

from . import untrusted, warm
from .cgroup import Cgroup
from .judge import FLAG, GRADER_FAILED, MEASURES, Verdict, checks_of, kernel_passed, runs_student_code, undecided
from .paths import DATA_ENV
from .processes import run_to_end
from .sandbox import Limits
from .records import Assignment, NotebookGrades, Result, Settings, Submission, SubmissionError, digest_of, draw, parts_of, write_tree

EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)$")
GENERIC = ("There was an error processing", "Please see the the above traceback", "Did you mean")
SECRET = re.compile(r"PASSW|SECRET|TOKEN|DB_URL|PGPASS|CREDENTIAL|_KEY$", re.IGNORECASE)
"""Environment variables the coordinator's or worker's environment may hold that student code must not see."""
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
WORKER_ONLY = ("MALLOC_TRIM_THRESHOLD_",)
"""Settings a Dask nanny gives its worker process that must not reach a kernel (glibc returning every
freed block to the system slows a training loop)."""


COURSE_CONFIG = b"""

# --- added by the grader to this one submission's private course ---
from grader.preprocessors import with_grader_preprocessors as _with_grader_preprocessors
c.Autograde.autograde_preprocessors = _with_grader_preprocessors(
    c.Autograde.autograde_preprocessors if "autograde_preprocessors" in c.Autograde else None
)
c.Autograde.sanitize_preprocessors = _with_grader_preprocessors(
    c.Autograde.sanitize_preprocessors if "sanitize_preprocessors" in c.Autograde else None, "sanitize"
)
c.CourseDirectory.ignore.append("checks.py")  # the assignment's checks stay in source/, out of the student's folder
"""


KEPT = ("timestamp.txt",)
"""What a submission holds besides its notebooks that nbgrader reads: the submission time."""
LEFT_OUT = "left out (the notebook runs beside the release's files only, and makes what it needs)"
"""Why a submitted file that is not a notebook of the release never reaches the kernel (a model file shipped
beside the project notebook must not stand in for its training)."""


@dataclass
class Context:
    """What the steps share while grading one submission."""

    submission: Submission
    assignment: Assignment
    settings: Settings
    course: Path
    result: Result
    files: dict[str, bytes] = field(default_factory=dict)
    """The submission as it will be graded (after repairs)."""
    config: list[str] = field(default_factory=list)
    """Lines the steps add to the private course's nbgrader_config.py."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment the steps add for nbgrader (and so its kernel)."""
    missing: list[str] = field(default_factory=list)
    """Notebooks the student did not submit in a readable form: each of their tests scores 0."""
    cgroup: Cgroup | None = None
    """The memory cgroup the sandbox runs in, where one could be made."""
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    """What undoes a step's side effects outside the private course (a mount, a cgroup), run last to first."""

    @property
    def drawn(self) -> int:
        """The number this submission's check inputs are drawn from (``grader.records.draw``): the kernel's and the judge's."""
        return draw(self.submission, self.assignment)

    @property
    def replay_drawn(self) -> int:
        """The number the judge's replay draws from: never handed to the kernel."""
        return draw(self.submission, self.assignment, "replay")

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.course / 'gradebook.db'}"

    @property
    def notes(self) -> Path:
        """The notes file nbgrader's process adds to (``grader.preprocessors.add_notes``)."""
        return self.course / ".grader-notes.json"

    @property
    def submitted(self) -> Path:
        return self.course / "submitted" / self.submission.student / self.assignment.name

    @property
    def autograded(self) -> Path:
        return self.course / "autograded" / self.submission.student / self.assignment.name


def nbgrader_reason(log: str, returncode: int) -> str:
    """One line saying why nbgrader failed, taken from its log."""
    exceptions = [m.group(1).split(".")[-1] + ": " + m.group(2) for m in map(EXCEPTION_LINE.match, log.splitlines()) if m]
    if exceptions:
        return exceptions[-1][:200]
    errors = [line.split("]", 1)[-1].strip() for line in log.splitlines() if "| ERROR]" in line]
    errors = [e for e in errors if not e.startswith(GENERIC)]
    return (errors[-1] if errors else f"nbgrader exited with code {returncode}")[:200]


# --- the steps -------------------------------------------------------------------------------


def repair(ctx: Context) -> None:
    """Put a renamed, Colab-saved or re-arranged notebook back into the release's shape (``grader.normalize``)."""
    from .normalize import NotebookNameError, repair as repaired

    try:
        fixed = repaired(ctx.files, ctx.assignment.release)
    except NotebookNameError as exc:
        raise SubmissionError(str(exc))
    ctx.files = {name: content for name, content in fixed.files.items() if name in ctx.assignment.release or name in KEPT}
    ctx.result.notes += fixed.notes
    ctx.result.notes += [f"submitted {name}: {LEFT_OUT}" for name in sorted(set(fixed.files) - set(ctx.files))]
    ctx.missing = fixed.missing


def write_course(ctx: Context) -> None:
    """The private course: source files, config, gradebook (student and extension), submission."""
    a, s = ctx.assignment, ctx.submission
    write_tree(ctx.course / "source" / a.name, a.files)
    (ctx.course / "gradebook.db").write_bytes(a.gradebook)
    ctx.submitted.mkdir(parents=True)
    write_tree(ctx.submitted, ctx.files)
    from nbgrader.api import Gradebook

    with Gradebook(ctx.db_url, a.course_id) as gb:
        gb.update_or_create_student(s.student)
        if s.extension is not None:
            gb.update_or_create_submission(a.name, s.student, extension=s.extension)


def prepare_kernel(ctx: Context) -> None:
    """An IPython startup file that seeds Python, NumPy and torch, sets the kernel's threads, and has the hidden
    tests record their evidence for the judge on this submission's drawn inputs."""
    startup = ctx.course / ".ipython" / "profile_default" / "startup" / "00-grader.py"
    startup.parent.mkdir(parents=True)
    evidence = ctx.course / ".evidence"
    evidence.mkdir()
    settings = f"SEED = {ctx.settings.seed!r}\nTHREADS = {ctx.settings.threads!r}\nEVIDENCE = {str(evidence)!r}\nDRAWN = {ctx.drawn!r}\n"
    startup.write_text(settings + Path(__file__).with_name("kernel_startup.py").read_text())


def guard_folders(ctx: Context) -> None:
    """Once student code has run, nbgrader meets only plain files in the folders it wrote to: ``SweepFolders``
    removes links, FIFOs, devices and files past the limits before nbgrader writes, chmods or copies there."""
    limits = ctx.settings.limits
    ctx.config.append("\n".join([
        f"c.SweepFolders.folders = {[str(ctx.autograded), str(ctx.course / '.evidence')]!r}",
        f"c.SweepFolders.report = c.KeepWhatRan.report = {str(ctx.notes)!r}",
        f"c.SweepFolders.max_file = {limits.keep_file_mb << 20}",
        f"c.SweepFolders.max_total = {limits.keep_mb << 20}",
    ]))  # fmt: skip


def sandbox(ctx: Context) -> None:
    """The kernel in bubblewrap: no network, its own folder, limits (``grader.sandbox``)."""
    if not ctx.settings.sandbox:
        return
    from . import sandbox as box

    limits = ctx.settings.limits
    ctx.cgroup = box.create_cgroup(limits.memory_mb << 20)
    if ctx.cgroup is not None:
        ctx.cleanup.append(ctx.cgroup.remove)
    unmount = box.mount_quota(ctx.autograded.parent, limits.workdir_mb)  # nbgrader makes the folder inside
    if unmount is not None:
        ctx.cleanup.append(unmount)
    data = kernel_env(ctx).get(DATA_ENV)
    try:
        spec, env, config = box.kernelspec(
            ctx.course, ctx.autograded, [Path(data)] if data else [], [ctx.course / ".ipython", ctx.course / ".evidence"], limits, ctx.cgroup
        )  # fmt: skip
    except box.SandboxUnavailable as exc:
        raise SubmissionError(str(exc))
    box.write_kernelspec(ctx.course, spec)
    ctx.env.update(env)
    ctx.config.append(config)


def kernel_env(ctx: Context) -> dict[str, str]:
    """Environment of nbgrader and its kernel: threads, seeds, startup file, extra settings; no secrets."""
    threads = str(ctx.settings.threads)
    inherited = {k: v for k, v in os.environ.items() if not SECRET.search(k) and k not in WORKER_ONLY}
    env = {**inherited, **ctx.settings.env, **dict.fromkeys(THREAD_VARIABLES, threads)}
    env["IPYTHONDIR"] = str(ctx.course / ".ipython")
    env["PYTHONHASHSEED"] = str(ctx.settings.seed)
    # nbgrader's Gradebook runs ``alembic``: this interpreter's bin dir must be on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return {**env, **ctx.env}


def execute(ctx: Context) -> None:
    """Run ``nbgrader autograde`` for the one student, in its own session, within the time limit."""
    argv = [
        "autograde", ctx.assignment.name, "--student", ctx.submission.student, "--force",
        f"--Execute.timeout={int(ctx.settings.cell_timeout)}",
        # The private course and gradebook, whatever the course's config names.
        f"--CourseDirectory.root={ctx.course}", f"--CourseDirectory.db_url={ctx.db_url}",
    ]  # fmt: skip
    config = ctx.assignment.config + COURSE_CONFIG + "\n".join(ctx.config).encode() + b"\n"
    (ctx.course / "nbgrader_config.py").write_bytes(config)
    code, ctx.result.log = run_to_end(
        "nbgrader", argv, kernel_env(ctx), ctx.course, ctx.course / "nbgrader.log", ctx.settings.submission_timeout, ctx.assignment.judged
    )  # fmt: skip
    if code is None:
        raise SubmissionError(f"timed out after {ctx.settings.submission_timeout:g} s")
    if code != 0:
        raise SubmissionError(nbgrader_reason(ctx.result.log, code))
    from .preprocessors import FOLDER, read_notes

    notes = read_notes(ctx.notes)
    ctx.result.notes += list(dict.fromkeys(note for about, note in notes if about != FOLDER))  # nbgrader runs the kernel's notebook once
    if ctx.cgroup is not None and ctx.cgroup.oom_kills():
        ctx.result.notes.append(f"the submission reached its memory limit ({ctx.settings.limits.memory_mb} MB in all) and a process was stopped")
    ctx.result.notes += [f"working folder {note}" for about, note in notes if about == FOLDER]


def read_grades(ctx: Context) -> None:
    """Per-cell auto scores, comments, timestamp and late penalty, from the private gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(ctx.db_url, ctx.assignment.course_id) as gb:
        try:
            submission = gb.find_submission(ctx.assignment.name, ctx.submission.student)
        except MissingEntry:
            raise SubmissionError("nbgrader recorded no submission")
        ctx.result.timestamp = submission.timestamp.isoformat() if submission.timestamp else None
        for nb in submission.notebooks:
            grades = NotebookGrades(late_penalty=nb.late_submission_penalty)
            unsubmitted = f"{nb.name}.ipynb" in ctx.missing
            for grade in nb.grades:
                score = 0.0 if unsubmitted else grade.auto_score
                grades.scores[grade.name] = None if score is None else float(score)
                grades.max_scores[grade.name] = float(grade.max_score)
            for comment in nb.comments:
                grades.comments[comment.name] = comment.auto_comment
            ctx.result.notebooks[nb.name] = grades


def judge(ctx: Context) -> None:
    """The judge step: rescore every checked test cell that passed in the kernel from the verdicts of ``python -m
    grader.judge``, decided outside the kernel (a cell that failed there scores 0 whatever a verdict says, so it
    is not judged)."""
    for name, grades in ctx.result.notebooks.items():
        source = ctx.course / "source" / ctx.assignment.name / f"{name}.ipynb"
        graded = ctx.autograded / f"{name}.ipynb"
        if f"{name}.ipynb" in ctx.missing or not source.is_file() or not graded.is_file():
            continue
        checked = list(checks_of(nbformat.read(str(source), as_version=4)))
        nb = nbformat.read(str(graded), as_version=4)
        cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
        passed = [gid for gid in checked if gid in cells and kernel_passed(cells[gid])]
        for grade_id in set(checked) - set(passed):  # the kernel's failure stands: no verdict could raise it
            grades.scores[grade_id] = 0.0
        if not passed:
            continue
        start = time.perf_counter()
        found = judge_in_process(ctx, source, passed)
        ctx.result.judge_seconds += time.perf_counter() - start
        for grade_id, verdict in found.items():
            cell = cells[grade_id]
            if verdict is None:
                grades.scores[grade_id] = grades.max_scores.get(grade_id, grades.scores.get(grade_id))
                continue
            grades.scores[grade_id] = 0.0
            # the judge's message is the cell's failure, on the feedback page too
            cell.outputs.append(nbformat.v4.new_output("error", ename="AssertionError", evalue=verdict.message, traceback=[f"AssertionError: {verdict.message}"]))
            ctx.result.judged[grade_id] = verdict.message
            if verdict.undecided:
                ctx.result.undecided.append(grade_id)
            elif verdict.tampering:
                ctx.result.notes.append(f"{grade_id}: {FLAG}: {verdict.message}")
                ctx.result.flagged.append(grade_id)
        reasons = sorted({v.why for v in found.values() if v is not None and v.undecided})
        if any(gid in ctx.result.undecided for gid in found):
            cells_left = " ".join(gid for gid in found if gid in ctx.result.undecided)
            ctx.result.notes.append(f"{GRADER_FAILED} {cells_left}: {'; '.join(reasons)} (scored 0, left for manual grading)")
        nbformat.write(nb, str(graded))


def judge_in_process(ctx: Context, source: Path, checked: list[str]) -> dict[str, Verdict | None]:
    """``python -m grader.judge`` on the submission's evidence, in a process no student code has touched.
    Where the judge itself fails, every cell it did not decide is undecided; its output, which may quote
    the tests, is never passed on."""
    workdir = ctx.course / ".judge"
    workdir.mkdir(exist_ok=True)
    verdict_file = workdir / "verdicts.json"
    env = {k: v for k, v in kernel_env(ctx).items() if k not in ("JUPYTER_PATH", "IPYTHONDIR")}
    argv = [
        str(source), str(ctx.course / ".evidence"), "--submission", str(ctx.autograded / source.name),
        "--threads", str(ctx.settings.threads), "--out", str(verdict_file), "--cells", ",".join(checked),
        "--draw", str(ctx.drawn), "--replay-draw", str(ctx.replay_drawn),
        *(["--sandbox"] if ctx.settings.sandbox else []),
    ]  # fmt: skip
    server = None
    if ctx.settings.sandbox and runs_student_code(source.parent):  # a replay or a rebuild: in this worker's warm sandbox
        start = time.perf_counter()
        server = warm.for_worker(Limits(), [Path(env[DATA_ENV])] if env.get(DATA_ENV) else [])
        ctx.result.warm_seconds += time.perf_counter() - start
    if server is not None:
        argv += ["--warm", str(server.folder)]
    limit = ctx.settings.cell_timeout * 4
    code, _ = run_to_end("grader.judge", argv, env, workdir, workdir / "judge.log", limit, judged=True)
    found = json.loads(verdict_file.read_text()) if code == 0 and verdict_file.is_file() else {}
    ctx.result.measures.update(found.pop(MEASURES, None) or {})
    why = f"the judge ran past {limit:g} s" if code is None else f"the judge ended with exit code {code}" if code != 0 else "the judge left no verdict"
    decided = {grade_id: Verdict(*verdict) if verdict else None for grade_id, verdict in found.items()}
    return {grade_id: decided[grade_id] if grade_id in decided else undecided(why) for grade_id in checked}


def collect_autograded(ctx: Context) -> None:
    """The autograded folder (executed notebooks and the files they wrote), as bytes."""
    limits = ctx.settings.limits
    tree = untrusted.read_tree(ctx.autograded, max_file=limits.keep_file_mb << 20, max_total=limits.keep_mb << 20)
    ctx.result.files = tree.files
    ctx.result.notes += [f"autograded {note}" for note in tree.notes]


Step = Callable[[Context], None]
STEPS: tuple[Step, ...] = (repair, write_course, prepare_kernel, guard_folders, sandbox, execute, read_grades, judge, collect_autograded)
"""The per-submission work, in order."""


def grade(submission: Submission, assignment: Assignment, settings: Settings, steps: tuple[Step, ...] = STEPS) -> Result:
    """Grade one submission in a throwaway course directory; never raises for a bad submission."""
    start = time.perf_counter()
    result = Result(submission.student, assignment.name, digest=digest_of(submission, assignment), digest_parts=parts_of(submission, assignment))
    with tempfile.TemporaryDirectory(prefix=f"grader-{assignment.name}-") as tmp:
        ctx = Context(submission, assignment, settings, Path(tmp), result, dict(submission.files))
        result.notes += submission.notes
        try:
            for step in steps:
                try:
                    step(ctx)
                except SubmissionError as exc:
                    result.error = str(exc) or type(exc).__name__
                    break
                except Exception as exc:  # a fault of the grader on this submission: report it, never stop the batch
                    result.error = f"grader step {step.__name__} failed: {type(exc).__name__}: {exc}"[:300]
                    break
        finally:
            for undo in reversed(ctx.cleanup):
                undo()
    if result.error:
        result.notebooks, result.files = {}, {}
    result.seconds = time.perf_counter() - start
    return result


