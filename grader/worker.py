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
carries the reason. New steps (repairing a notebook, a sandbox, a judge) slot into the list.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import runpy
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable

from . import untrusted
from .cgroup import Cgroup
from .paths import DATA_ENV
from .sandbox import Limits

NOT_GRADING = frozenset({
    "__main__", "cli", "report", "export", "similarity", "demo", "benchmark", "misconceptions", "mangle", "tricks",
    "validate", "authoring", "publish", "data", "clean", "cluster",
})  # fmt: skip
"""Modules of the ``grader`` package that never decide a score: they parse arguments, write reports and exports,
build or time the demo class, check sources and releases, publish, stage data or start a cluster. Every other module of the package
(``checks/`` and any module added later included) is part of every assignment digest (``grader_code``)."""
VERSIONED = ("torch", "nbgrader")
"""Installed packages whose versions are part of every assignment digest."""
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
"""


KEPT = ("timestamp.txt",)
"""What a submission holds besides its notebooks that nbgrader reads: the submission time."""
LEFT_OUT = "left out (the notebook runs beside the release's files only, and makes what it needs)"
"""Why a submitted file that is not a notebook of the release never reaches the kernel (a model file shipped
beside the project notebook must not stand in for its training)."""


class SubmissionError(Exception):
    """This submission cannot be graded; the message says why, in one line."""


@dataclass(frozen=True)
class Assignment:
    """What every worker needs to grade one assignment, as plain bytes."""

    name: str
    files: dict[str, bytes]
    """``source/<name>/`` as relative path -> content."""
    config: bytes
    """The course's ``nbgrader_config.py``."""
    gradebook: bytes
    """A private SQLite gradebook with the assignment recorded and its due date."""
    course_id: str
    release: dict[str, bytes] = field(default_factory=dict)
    """The release notebooks (name -> content): what a submission is repaired against."""
    code: dict[str, str] = field(default_factory=dict)
    """What decides a score besides the files: ``grading_code(files)``, computed once per batch by the coordinator
    (computed on use where empty)."""

    @property
    def judged(self) -> bool:
        """Whether a test of the assignment names a check for the judge (``grader.judge``)."""
        return any(b"evidence.check(" in content for name, content in self.files.items() if name.endswith(".ipynb"))

    @property
    def parts(self) -> dict[str, str]:
        """Everything that decides a score, part by part: the tests (source files), the config, the checks the
        tests name, the grader's code, the versions of ``VERSIONED`` (hashes; versions as installed)."""
        code = self.code or grading_code(self.files)
        return {"tests": digest(self.files), "config": digest({"nbgrader_config.py": self.config}), **code}

    @property
    def digest(self) -> str:
        """Content hash of everything that decides a score (``parts``)."""
        return digest({name: value.encode() for name, value in self.parts.items()})


@dataclass(frozen=True)
class Submission:
    """One student's submitted folder for one assignment."""

    student: str
    files: dict[str, bytes]
    """``submitted/<student>/<assignment>/`` as relative path -> content (timestamp.txt included)."""
    extension: timedelta | None = None
    """The extension the course gradebook grants this student (counted for late penalties)."""
    notes: tuple[str, ...] = ()
    """What was left out of the folder as it was read (links, devices, files past the limits)."""

    @property
    def digest(self) -> str:
        return digest(self.files)


@dataclass(frozen=True)
class Settings:
    """How to run the kernel: its share of the cores, limits, seed and data."""

    threads: int = 1
    """Threads of the kernel (OpenMP, MKL, torch intra-op)."""
    cell_timeout: float = 180
    """Per-cell limit (``c.Execute.timeout``), already scaled to ``threads``."""
    submission_timeout: float = 1800
    """Limit for the whole nbgrader run of one submission."""
    seed: int = 0
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for nbgrader and the kernel (the data root, for instance)."""
    sandbox: bool = True
    """Run the kernel in the bubblewrap sandbox (``grader.sandbox``)."""
    limits: Limits = field(default_factory=Limits)


@dataclass
class NotebookGrades:
    """What nbgrader recorded for one notebook of a submission."""

    scores: dict[str, float | None] = field(default_factory=dict)
    """grade_id -> auto score (None: nbgrader could not score it; needs manual grading)."""
    max_scores: dict[str, float] = field(default_factory=dict)
    comments: dict[str, str | None] = field(default_factory=dict)
    """grade_id -> auto comment of answer cells."""
    late_penalty: float | None = None


@dataclass
class Result:
    """One student's grade for one assignment, as the worker returns it."""

    student: str
    assignment: str
    digest: str = ""
    """Digest of the submission and the assignment it was graded against (for resuming)."""
    digest_parts: dict[str, str] = field(default_factory=dict)
    """What the digest covers, part by part (``parts_of``): says why a filed result no longer holds."""
    notebooks: dict[str, NotebookGrades] = field(default_factory=dict)
    timestamp: str | None = None
    """Submission time nbgrader read from timestamp.txt (ISO 8601, UTC)."""
    files: dict[str, bytes] = field(default_factory=dict)
    """``autograded/<student>/<assignment>/`` as relative path -> content."""
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    """What was repaired or happened on the way, in words for the instructor (renamed notebook, dead kernel)."""
    flagged: list[str] = field(default_factory=list)
    """Test cells that passed in the kernel and failed the judge (``grader.judge``): likely tampering."""
    judged: dict[str, str] = field(default_factory=dict)
    """Test cells that passed in the kernel and failed the judge: the judge's message, all the feedback shows of them."""
    undecided: list[str] = field(default_factory=list)
    """Test cells the judge could not decide, a failure of the grader's own: scored 0, left for manual grading."""
    measures: dict[str, float] = field(default_factory=dict)
    """What the judge measured (``grader.checks.measure``), e.g. the project's test accuracy: the report's leaderboard."""
    seconds: float = 0.0
    judge_seconds: float = 0.0
    attempts: int = 1
    log: str = ""

    @property
    def scores(self) -> dict[str, float | None]:
        """grade_id -> score over all notebooks, in notebook order."""
        return {gid: s for nb in self.notebooks.values() for gid, s in nb.scores.items()}

    @property
    def max_scores(self) -> dict[str, float]:
        return {gid: s for nb in self.notebooks.values() for gid, s in nb.max_scores.items()}

    @property
    def total(self) -> float | None:
        return None if self.error else sum(s or 0.0 for s in self.scores.values())

    @property
    def max_total(self) -> float:
        return sum(self.max_scores.values())


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
    def db_url(self) -> str:
        return f"sqlite:///{self.course / 'gradebook.db'}"

    @property
    def submitted(self) -> Path:
        return self.course / "submitted" / self.submission.student / self.assignment.name

    @property
    def autograded(self) -> Path:
        return self.course / "autograded" / self.submission.student / self.assignment.name


def digest(files: dict[str, bytes]) -> str:
    """sha256 over sorted (path, content) pairs."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def grader_code(leave_out: frozenset[Path] = frozenset(), package: Path = Path(__file__).resolve().parent) -> str:
    """Content hash of the grader's modules that may decide a score: every ``.py`` file of the package,
    subpackages included, except the modules named in ``NOT_GRADING`` (and the files in ``leave_out``, hashed
    elsewhere). A module added to the package counts until it is listed there."""
    files = {}
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        if "__pycache__" not in path.parts and name.removesuffix(".py") not in NOT_GRADING and path not in leave_out:
            files[name] = path.read_bytes()
    return digest(files)


def check_sources(files: dict[str, bytes]) -> dict[str, Path | None]:
    """module -> source file of each check module the assignment's tests name (``evidence.check("module:function")``),
    wherever it lives (None: not found)."""
    import importlib.util

    from .judge import CHECK_CALL

    tests = []
    for name, content in files.items():
        try:
            cells = json.loads(content).get("cells", []) if name.endswith(".ipynb") else []
        except (ValueError, AttributeError):
            cells = []
        tests += ["".join(c.get("source", "")) for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]
    sources = {}
    for module in sorted({check.split(":")[0] for text in tests for check in CHECK_CALL.findall(text)}):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        sources[module] = origin if origin is not None and origin.is_file() else None
    return sources


def package_version(name: str) -> str:
    """The installed version of a package ('' when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def grading_code(files: dict[str, bytes]) -> dict[str, str]:
    """The parts of an assignment's digest beside its files: the check modules its tests name, the rest of the
    grader's code (``grader_code``) and the versions of ``VERSIONED``."""
    checks = check_sources(files)
    named = frozenset(path for path in checks.values() if path is not None)
    return {
        "checks": digest({module: path.read_bytes() if path else b"" for module, path in checks.items()}),
        "grader": grader_code(named),
        **{name: package_version(name) for name in VERSIONED},
    }


def read_tree(folder: Path, skip: Callable[[Path], bool] = lambda p: False) -> dict[str, bytes]:
    """Every file under ``folder`` as relative POSIX path -> bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not skip(p.relative_to(folder))
    }


def write_tree(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` under ``folder``, refusing paths that leave it."""
    root = folder.resolve()
    for name, content in files.items():
        path = (root / name).resolve()
        if root not in path.parents:
            raise SubmissionError(f"file {name!r} would be written outside its folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


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
    """An IPython startup file that seeds Python, NumPy and torch and sets the kernel's threads."""
    startup = ctx.course / ".ipython" / "profile_default" / "startup" / "00-grader.py"
    startup.parent.mkdir(parents=True)
    settings = f"SEED = {ctx.settings.seed!r}\nTHREADS = {ctx.settings.threads!r}\n"
    startup.write_text(settings + Path(__file__).with_name("kernel_startup.py").read_text())
    from .evidence import ENV

    (ctx.course / ".evidence").mkdir()
    ctx.env[ENV] = str(ctx.course / ".evidence")


def guard_folders(ctx: Context) -> None:
    """Once student code has run, nbgrader meets only plain files in the folders it wrote to: ``SweepFolders``
    removes links, FIFOs, devices and files past the limits before nbgrader writes, chmods or copies there."""
    limits = ctx.settings.limits
    ctx.config.append("\n".join([
        f"c.SweepFolders.folders = {[str(ctx.autograded), str(ctx.course / '.evidence')]!r}",
        f"c.SweepFolders.report = {str(ctx.course / '.swept.json')!r}",
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


def die_with_parent() -> None:
    """Be killed when the parent process dies (Linux), so nothing outlives a dead worker."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


PRELOAD = ["nbgrader.apps", "grader.worker", "grader.preprocessors", "grader.judge"]
"""Imported once per worker by the fork server, not once per submission (nbgrader: about 2.4 s of CPU)."""
JUDGE_PRELOAD = ["torch", "torchvision", "matplotlib.pyplot"]
"""Imported by the fork server too where the assignment is judged: what the judge and the lessons'
locked cells import (as much again)."""


def fork_server(judged: bool = False):
    """A multiprocessing context whose processes start with ``PRELOAD`` (and, for a judged assignment,
    ``JUDGE_PRELOAD``) already imported; the first call in a process decides.

    The fork server is a single-threaded process that imports ``PRELOAD`` once and forks a fresh
    child for every submission, so each ``nbgrader autograde`` and each judge still runs in a
    process of its own, in which no student code has run, without paying for Python's imports
    again. Where there is no fork server (Windows), spawn.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD + (JUDGE_PRELOAD if judged else []))
    return context


def run_module(module: str, argv: list[str], env: dict[str, str], cwd: str, log: str) -> None:
    """In a fresh child: its own session, the given environment, output to ``log``; then ``python -m module argv``."""
    os.setsid()
    if sys.platform == "linux":
        die_with_parent()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1), os.dup2(fd, 2), os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0), os.close(null)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [module, *argv]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def start_module(
    module: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path, judged: bool = False
) -> tuple[int, Callable[[float | None], int | None]]:
    """Start ``python -m module argv`` in a session of its own; return ``wait(timeout) -> exit code, None if still running``.

    Forked from the fork server where this process may have children; as a fresh interpreter
    otherwise (a daemonic process, such as a Dask worker with ``distributed.worker.daemon``).
    """
    if not multiprocessing.current_process().daemon:
        proc = fork_server(judged).Process(target=run_module, args=(module, argv, env, str(cwd), str(log)), daemon=True)
        proc.start()

        def wait(timeout: float | None) -> int | None:
            proc.join(timeout)
            return proc.exitcode

        return proc.pid, wait
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *argv], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )  # fmt: skip

    def wait_popen(timeout: float | None) -> int | None:
        try:
            return popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    return popen.pid, wait_popen


def run_to_end(
    module: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path, timeout: float, judged: bool = False
) -> tuple[int | None, str]:
    """``start_module`` and wait: (exit code, None if it ran past ``timeout``; the end of its output).
    The whole session is killed after."""
    pid, wait = start_module(module, argv, env, cwd, log, judged)
    try:
        code = wait(timeout)
    finally:
        # The whole session goes: the process, a kernel it started, and anything that left running.
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        wait(None)
    return code, log.read_text(errors="replace")[-20000:] if log.is_file() else ""


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
    from .preprocessors import KERNEL_DIED, OUTPUT_DROPPED

    timeout = f"a cell ran past the time limit ({ctx.settings.cell_timeout:g} s per cell) and was interrupted"
    for mark, note in ((KERNEL_DIED, None), (OUTPUT_DROPPED, None), ("Timeout waiting for execute reply", timeout)):
        found = [line for line in ctx.result.log.splitlines() if mark in line]
        ctx.result.notes += [note or found[0].split("grader: ", 1)[-1]] if found else []
    if ctx.cgroup is not None and ctx.cgroup.oom_kills():
        ctx.result.notes.append(f"the submission reached its memory limit ({ctx.settings.limits.memory_mb} MB in all) and a process was stopped")
    swept = untrusted.read_file(ctx.course / ".swept.json")
    ctx.result.notes += [f"working folder {note}" for note in (json.loads(swept) if swept else [])]


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
    """Decide every checked test cell from the recorded evidence, outside the kernel (``grader.judge``)."""
    from .judge import decide

    decide(ctx)


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


def digest_of(submission: Submission, assignment: Assignment) -> str:
    """The digest a result is filed under: the submission's and the assignment's together."""
    return hashlib.sha256(f"{submission.digest}:{assignment.digest}".encode()).hexdigest()


def parts_of(submission: Submission, assignment: Assignment) -> dict[str, str]:
    """What ``digest_of`` covers, part by part: the submission, then the assignment's ``parts``."""
    return {"submission": submission.digest, **assignment.parts}
