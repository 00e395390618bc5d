"""Where things live: the repository is the nbgrader course directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "source"
RELEASE = REPO / "release"
CONFIG = REPO / "nbgrader_config.py"

SCRATCH = (".ipynb_checkpoints", "__pycache__", "data", "checkpoints", "*.pt", "*.pth")
"""What a notebook run leaves in a lesson folder; never copied (nbgrader_config.py ignores it too)."""


def is_scratch(rel: Path) -> bool:
    """Whether a path relative to a lesson folder is something a notebook run left there (``SCRATCH``)."""
    return any(rel.match(p) or p in rel.parts for p in SCRATCH)

DATA_ENV = "PYTORCH_COURSE_DATA"
"""Environment variable the notebooks read: ``os.environ.get("PYTORCH_COURSE_DATA", "data")``."""
MIRROR_ENV = "PYTORCH_COURSE_MIRROR"
"""Environment variable naming the offline folder of IDX ``.gz`` files."""


class CourseError(RuntimeError):
    """The folder a verb was asked to act on is not an nbgrader course directory."""


def course_dir(given: Path | str | None = None) -> Path:
    """The course directory a verb acts on: ``given`` (``--course``), else the working directory.

    Like nbgrader, the grader acts on the course it is run in, never on the folder the
    package is installed from. A course directory holds ``nbgrader_config.py`` or ``source/``.
    """
    course = Path(given or os.getcwd()).resolve()
    if not ((course / "nbgrader_config.py").is_file() or (course / "source").is_dir()):
        raise CourseError(
            f"{course} is not an nbgrader course directory (no nbgrader_config.py or source/): "
            "run the grader inside the course, or pass --course DIR"
        )
    return course


def default_data_root(course: Path = REPO) -> Path:
    """The data root: $PYTORCH_COURSE_DATA, else ``<course>/data``."""
    return Path(os.environ.get(DATA_ENV) or Path(course) / "data").resolve()


def default_mirror(course: Path = REPO) -> Path:
    """The offline dataset mirror: $PYTORCH_COURSE_MIRROR, else ``<course>/../shared/datasets``."""
    return Path(os.environ.get(MIRROR_ENV) or Path(course).parent / "shared" / "datasets").resolve()


def course_secret(course_dir: Path, name: str, make: bool = True) -> bytes:
    """The course's secret ``.grader/<name>``, made on first use (32 random bytes, as hex) and readable by its owner
    only: ``.grader/`` is never committed, and no kernel sees the course folder. ``make=False``: b"" if there is none."""
    import secrets

    path = course_dir / ".grader" / name
    if not path.is_file():
        if not make:
            return b""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def lessons(course_dir: Path = REPO) -> list[str]:
    """Assignment names: folders ``source/<name>/`` that hold ``<name>.ipynb``."""
    source = course_dir / "source"
    if not source.is_dir():
        return []
    return sorted(p.name for p in source.iterdir() if (p / f"{p.name}.ipynb").is_file())


def source_notebook(assignment: str, course_dir: Path = REPO) -> Path:
    """``source/<assignment>/<assignment>.ipynb`` in a course directory."""
    return course_dir / "source" / assignment / f"{assignment}.ipynb"


def release_notebook(assignment: str, course_dir: Path = REPO) -> Path:
    """``release/<assignment>/<assignment>.ipynb`` in a course directory."""
    return course_dir / "release" / assignment / f"{assignment}.ipynb"


def tool_env(**extra: str) -> dict[str, str]:
    """``os.environ`` plus ``extra``, with this interpreter's bin dir first on PATH.

    nbgrader's Gradebook shells out to ``alembic`` when it creates a database, so the
    virtualenv's bin dir must be on PATH even when ``grader`` is run without activating it.
    """
    env = {**os.environ, **extra}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def nbgrader_cmd(*args: str) -> list[str]:
    """Command line running nbgrader with this interpreter."""
    return [sys.executable, "-m", "nbgrader", *args]
