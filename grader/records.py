"""What grading exchanges, as plain picklable values: an assignment, a submission, the settings, the
result; and the digests that say what decided a result (``grader autograde`` resumes on them).

A digest covers everything that decides a score: the assignment's tests and its checks (``checks.py``),
the course config, the grader's own code (every module of the package but ``NOT_GRADING``), the
installed torch and nbgrader, and the course's secret that draws the checks' inputs (``draw``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Callable

from .evidence import CHECKS, DEFAULT_DRAW
from .sandbox import Limits

NOT_GRADING = frozenset({
    "__init__", "__main__", "cli", "report", "export", "similarity", "demo", "benchmark", "misconceptions", "mangle", "tricks",
    "validate", "authoring", "publish", "data", "clean", "cluster",
})  # fmt: skip
"""Modules of the ``grader`` package that never decide a score: the package's map of its layers, they parse arguments, write reports and exports,
build or time the demo class, check sources and releases, publish, stage data or start a cluster. Every other module of the package
(``checks/`` and any module added later included) is part of every assignment digest (``grader_code``)."""
INPUTS_SECRET = "inputs-secret"
"""The course's secret that draws each submission's check inputs: ``.grader/inputs-secret`` (``grader.paths.course_secret``)."""
VERSIONED = ("torch", "nbgrader")
"""Installed packages whose versions are part of every assignment digest."""
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
    secret: bytes = b""
    """The course's ``INPUTS_SECRET``: it draws each submission's check inputs (``draw``). It reaches the workers
    and the digest (as a hash), never a kernel: a kernel gets only its own submission's draw."""

    @property
    def judged(self) -> bool:
        """Whether a test of the assignment names a check for the judge (``grader.judge``)."""
        return any(b"evidence.check(" in content for name, content in self.files.items() if name.endswith(".ipynb"))

    @property
    def parts(self) -> dict[str, str]:
        """Everything that decides a score, part by part: the tests (source files), the config, the checks the
        tests name, the grader's code, the versions of ``VERSIONED`` (hashes; versions as installed)."""
        code = self.code or grading_code(self.files)
        secret = hashlib.sha256(b"grader inputs secret\0" + self.secret).hexdigest() if self.secret else ""
        return {
            "tests": digest(split_checks(self.files)[0]), "config": digest({"nbgrader_config.py": self.config}), **code, "secret": secret,
        }  # fmt: skip

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
    warm_seconds: float = 0.0
    """Of ``judge_seconds``, the time spent starting the worker's warm sandbox (``grader.warm``): once per worker,
    paid by the first submission whose judge needs it."""
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


def split_checks(files: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """An assignment's source files as (the notebooks and other files, its checks files ``checks.py``)."""
    checks = {name: content for name, content in files.items() if PurePosixPath(name).name == CHECKS}
    return {name: content for name, content in files.items() if name not in checks}, checks


def package_version(name: str) -> str:
    """The installed version of a package ('' when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def grading_code(files: dict[str, bytes]) -> dict[str, str]:
    """The parts of an assignment's digest beside its tests: its checks (``checks.py``, hashed apart so a regrade
    can say which changed), the grader's code (``grader_code``) and the versions of ``VERSIONED``."""
    return {
        "checks": digest(split_checks(files)[1]),
        "grader": grader_code(),
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


def digest_of(submission: Submission, assignment: Assignment) -> str:
    """The digest a result is filed under: the submission's and the assignment's together."""
    return hashlib.sha256(f"{submission.digest}:{assignment.digest}".encode()).hexdigest()


def draw(submission: Submission, assignment: Assignment, purpose: str = "kernel") -> int:
    """The number that draws this submission's check inputs: an HMAC of the assignment, the student and the
    submission with the course's secret. A regrade of the same submission draws the same; no student can know it
    before the kernel runs. Without a secret, the fixed default of plain nbgrader (``grader.evidence.DEFAULT_DRAW``).

    ``purpose="replay"``: the number the judge's replay draws from (``grader.replay``), never handed to the kernel,
    so code in the kernel that reads its own number cannot work out the replay's inputs."""
    if not assignment.secret:
        return DEFAULT_DRAW + (purpose != "kernel")
    message = f"{assignment.name}\0{submission.student}\0{submission.digest}".encode() + (b"" if purpose == "kernel" else b"\0" + purpose.encode())
    return int.from_bytes(hmac.new(assignment.secret, message, hashlib.sha256).digest()[:4], "big") % 2**31


def parts_of(submission: Submission, assignment: Assignment) -> dict[str, str]:
    """What ``digest_of`` covers, part by part: the submission, then the assignment's ``parts``."""
    return {"submission": submission.digest, **assignment.parts}
