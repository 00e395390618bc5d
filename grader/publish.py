"""Publish the student notebooks to the public student repository, and nothing else.

This repository holds the answers (``source/``: solutions, hidden tests, each assignment's
``checks.py``) and the demo class (``grader/misconceptions.py``), so it stays private; students get a separate public
repository that holds ``release/<lesson>/`` and a README, in the same layout, so the Colab badges
(``c.CourseRelease.github``) open the notebooks there. Each publish builds its commit in a
throwaway work copy of the student repository from the files of ``release/`` alone, never from
the course's history, scans what it would publish (and the history it would extend) for solution,
hidden-test, check and demo-class text, and pushes only when nothing is found.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import notebooks, release
from .evidence import CHECKS
from .paths import REPO, SCRATCH, lessons, source_notebook

PACKAGE = Path(__file__).resolve().parent
DEMO_CLASS = PACKAGE / "misconceptions.py"
"""The demo class's submissions: text no published file may hold, beside each assignment's checks."""
PRIVATE_PATHS = ("source/", "grader/", "tests/", "submitted/", "autograded/", "feedback/", "reports/", ".grader/", "gradebook.db")
"""Paths of the course repository that must never appear in the student repository's history."""
MIN_PRIVATE_LINE = 8
"""Shorter lines of the checks and the demo class (``),``, ``"cpu"``) are not text of their own."""
REPOSITORY_VARIABLES = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX", "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM",
)  # fmt: skip
"""Variables that would point git at another repository (a hook's, the course's): never passed on."""
FALLBACK_IDENTITY = ("grader release", "grader-release@localhost")
GIT_TIMEOUT = 600
GITHUB_URL = re.compile(r"github\.com[:/](?P<name>[^/\s]+/[^/\s]+?)(?:\.git)?/?$", re.IGNORECASE)
SCP_LIKE = re.compile(r"^[^/:]+:")


class PublishError(RuntimeError):
    """Publishing was refused (a leak, a wrong target) or git failed."""


@dataclass(frozen=True)
class Published:
    target: str
    branch: str
    commit: str | None
    """The commit pushed, or None when the student repository already held this release."""
    lessons: tuple[str, ...]


def git_env() -> dict[str, str]:
    """The environment git runs in: this one, without variables that choose a repository, never prompting."""
    env = {k: v for k, v in os.environ.items() if k not in REPOSITORY_VARIABLES}
    env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0")
    return env


def git(*args: str, cwd: Path, check: bool = True, binary: bool = False, stdin: str | None = None):
    """Run ``git ARGS`` in ``cwd``; its stdout (bytes with ``binary``), PublishError on failure."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=git_env(), input=stdin.encode() if stdin is not None else None,
        capture_output=True, timeout=GIT_TIMEOUT,
    )  # fmt: skip
    if check and proc.returncode != 0:
        error = proc.stderr.decode(errors="replace").strip()
        raise PublishError(f"git {' '.join(args)} failed: {error}")
    return proc.stdout if binary else proc.stdout.decode(errors="replace")


def is_remote(target: str) -> bool:
    """Whether ``target`` is a URL (``https://…``, ``ssh://…``, ``git@host:owner/repo``) rather than a local path."""
    return "://" in target or (SCP_LIKE.match(target) is not None and not Path(target).exists())


def resolve_target(target: str, base: Path) -> str:
    """A URL as given; a local path made absolute from ``base``."""
    if is_remote(target):
        return target
    path = Path(target).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def configured_target(course: Path) -> str | None:
    """``c.CourseRelease.publish_to`` of the course, a local path taken from the course directory."""
    target = release.course_release(course).get("publish_to")
    return resolve_target(str(target), course) if target else None


def github_name(url: str) -> str | None:
    """``owner/repository`` of a GitHub URL, else None."""
    m = GITHUB_URL.search(url)
    return m["name"] if m else None


def course_origin(course: Path) -> str:
    """The URL of the course repository's ``origin`` ("" outside git or without one)."""
    return git("remote", "get-url", "origin", cwd=course, check=False).strip()


def check_target(target: str, course: Path) -> None:
    """Refuse a target the badges do not point at, and badges that point at the course's own repository."""
    github, _ = release.publication(course)
    named = github_name(target)
    if named and named.lower() != github.lower():
        raise PublishError(
            f"{target} is {named} on GitHub, but the Colab badges point at {github}: "
            "set c.CourseRelease.github in nbgrader_config.py to the student repository, run grader release, and publish again"
        )
    origin = course_origin(course)
    if (github_name(origin) or "").lower() == github.lower():
        raise PublishError(
            f"c.CourseRelease.github is {github}, this course's own repository (origin {origin}), which holds the answers: "
            "name the public student repository there instead"
        )


def course_commit(course: Path) -> str:
    """The course commit the release comes from, for the commit message."""
    head = git("rev-parse", "--verify", "-q", "HEAD", cwd=course, check=False).strip()
    if not head:
        return "a course directory outside git"
    dirty = git("status", "--porcelain", "--", "source", "release", cwd=course, check=False).strip()
    return f"course commit {head}" + (" (with uncommitted changes)" if dirty else "")


def identity(course: Path) -> tuple[str, str]:
    """The committer: the course repository's git identity, else a fixed one (no global config needed)."""
    values = []
    for key, fallback in zip(("user.name", "user.email"), FALLBACK_IDENTITY):
        values.append(git("config", key, cwd=course, check=False).strip() or fallback)
    return values[0], values[1]


def published_lessons(course: Path) -> list[str]:
    """The lessons that have a ``release/<lesson>/`` folder (a lesson not yet released is not published)."""
    return [name for name in lessons(course) if (course / "release" / name).is_dir()]


def lesson_title(nb_path: Path, fallback: str) -> str:
    """The first ``# `` heading of a release notebook."""
    for cell in notebooks.read(nb_path).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def student_readme(course: Path) -> str:
    """The student repository's README: the lessons, their notebooks and Colab links."""
    course_id = release.course_release(course, "CourseDirectory").get("course_id", "")
    lines = [
        f"# {course_id or 'Course'}: student notebooks",
        "",
        "One notebook per lesson. Open it in Colab, or download it and run it in Jupyter, top to bottom;",
        "replace each `raise NotImplementedError()` with your code. The cells after each exercise check your work.",
        "",
        "| Lesson | Notebook | Graded tests | Points | Colab |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in published_lessons(course):
        path = f"release/{name}/{name}.ipynb"
        nb = course / path
        tests = notebooks.test_points(notebooks.read(nb)) if nb.is_file() else {}
        lines.append(
            f"| {lesson_title(nb, name) if nb.is_file() else name} | [{path}]({path}) | {len(tests)} | "
            f"{sum(tests.values()):g} | [Open in Colab]({release.colab_url(name, course)}) |"
        )
    return "\n".join(lines) + "\n"


def student_files(course: Path) -> dict[str, bytes]:
    """What students may see, by path in the student repository: ``release/<lesson>/…`` and ``README.md``."""
    files = {"README.md": student_readme(course).encode()}
    for name in published_lessons(course):
        folder = course / "release" / name
        with tempfile.TemporaryDirectory(prefix="grader-publish-copy-") as tmp:
            copy = Path(tmp) / name
            shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(*SCRATCH))
            for path in sorted(p for p in copy.rglob("*") if p.is_file()):
                files[f"release/{name}/{path.relative_to(copy).as_posix()}"] = path.read_bytes()
    return files


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of a Python file, and of the lines of its string constants."""
    text = path.read_text()
    for number, raw in enumerate(text.splitlines(), 1):
        yield number, raw.strip()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for offset, raw in enumerate(node.value.splitlines()):
                yield node.lineno + offset, raw.strip()


def secrets(course: Path = REPO, answers: bool = True) -> dict[str, str]:
    """Every line no published file may hold -> where it comes from.

    The solution and hidden-test lines of each source notebook (unless ``answers`` is false), and
    the lines (code and string constants) of the checks and the demo class, less every line a
    source notebook shows students.
    """
    visible: set[str] = set()
    found: dict[str, str] = {}
    for name in lessons(course):
        solutions, hidden, shown = release.secret_lines(notebooks.read(source_notebook(name, course)))
        visible |= shown
        if not answers:
            continue
        for cell, lines in sorted(solutions.items()):
            found.update({line: f"solution of {name}, cell {cell}" for line in lines if line not in found})
        found.update({line: f"hidden test of {name}" for line in hidden if line not in found})
    for path in [*(course / "source" / name / CHECKS for name in lessons(course)), DEMO_CLASS]:
        if path.is_file():
            where = path.relative_to(course if path.is_relative_to(course) else PACKAGE.parent).as_posix()
            for number, line in text_lines(path):
                if len(line) >= MIN_PRIVATE_LINE and not line.startswith("#") and line not in found:
                    found[line] = f"{where}:{number}"
    return {line: where for line, where in found.items() if line not in visible}


def content_lines(name: str, data: bytes) -> Iterator[tuple[str, str]]:
    """(where, stripped line) of a file: a notebook's cell sources and text outputs (not its JSON), else its text lines."""
    text = data.decode("utf-8", errors="replace")
    cells = None
    if name.endswith(".ipynb"):
        try:
            cells = json.loads(text).get("cells")
        except (ValueError, AttributeError):
            cells = None
    if isinstance(cells, list):
        for index, cell in enumerate(cells):
            if not isinstance(cell, dict):
                continue
            texts = [cell.get("source", "")] + [
                part for out in cell.get("outputs", []) if isinstance(out, dict)
                for part in (out.get("text", ""), out.get("data", {}).get("text/plain", ""))
            ]  # fmt: skip
            for what, value in zip(["source"] + ["output"] * (len(texts) - 1), texts):
                joined = "".join(value) if isinstance(value, list) else str(value)
                for number, line in enumerate(joined.splitlines(), 1):
                    yield f"cell {index} {what}, line {number}", line.strip()
        return
    for number, line in enumerate(text.splitlines(), 1):
        yield f"line {number}", line.strip()


def scan(name: str, data: bytes, secret: dict[str, str]) -> list[str]:
    """Leaks in one file: nbgrader's markers, and lines of ``secret`` (each named with its file and line)."""
    text = data.decode("utf-8", errors="replace")
    found = [f"{name}: marker {m!r}" for m in release.MARKERS if m in text]
    found += [f"{name}, {where}: {line!r} ({secret[line]})" for where, line in content_lines(name, data) if line in secret]
    return found


def history_leaks(work: Path, ref: str, secret: dict[str, str]) -> list[str]:
    """What the history of ``ref`` in the work copy holds that it must not: private paths, markers, ``secret`` lines.

    A copy of the course (a fork, the course repository itself) shows in its paths and markers.
    ``secret`` holds the checks' and the demo class's text only: each publish checked its files
    for the answers of its day, and a line once shown and since made an answer stays published.
    """
    found = []
    for commit in git("rev-list", ref, cwd=work).split():
        names = git("ls-tree", "-r", "-z", "--name-only", commit, cwd=work).split("\0")
        found += [f"commit {commit[:12]}: {n}" for n in names if n and n.startswith(PRIVATE_PATHS)]
        if found:
            return found
    paths = {}
    for line in git("rev-list", "--objects", ref, cwd=work).splitlines():
        sha, _, path = line.partition(" ")
        paths.setdefault(sha, path)
    kinds = git("cat-file", "--batch-check=%(objectname) %(objecttype)", cwd=work, stdin="\n".join(paths) + "\n")
    for sha in (line.split()[0] for line in kinds.splitlines() if line.endswith(" blob")):
        data = git("cat-file", "blob", sha, cwd=work, binary=True)
        found += [f"blob {sha[:12]} ({paths[sha]}): {leak}" for leak in scan(paths[sha], data, secret)]
    return found


def refusal(what: str, found: list[str]) -> PublishError:
    """The error that stops a publish, listing what was found."""
    shown = "\n  ".join(found[:20]) + ("\n  ..." if len(found) > 20 else "")
    return PublishError(f"refusing to publish: {what}:\n  {shown}")


def publish(course: Path, target: str | None = None) -> Published:
    """Commit the student files of ``course`` to ``target`` (default ``c.CourseRelease.publish_to``) and push.

    Raises PublishError, having pushed nothing, when a file to publish or the history of the
    student repository's branch holds solution, hidden-test, check or demo-class text.
    """
    target = target or configured_target(course)
    if not target:
        raise PublishError("no student repository: pass --publish TARGET or set c.CourseRelease.publish_to in nbgrader_config.py")
    check_target(target, course)
    _, branch = release.publication(course)
    names = published_lessons(course)
    if not names:
        raise PublishError("nothing to publish: no release/<lesson>/ folder (run grader release)")
    secret = secrets(course)
    files = student_files(course)
    found = [leak for name, data in files.items() for leak in scan(name, data, secret)]
    if found:
        raise refusal("these files hold solution, hidden-test, check or demo-class text", found)
    with tempfile.TemporaryDirectory(prefix="grader-publish-") as tmp:
        work = Path(tmp) / "student"
        git("init", "-q", str(work), cwd=Path(tmp))
        name, email = identity(course)
        git("config", "user.name", name, cwd=work)
        git("config", "user.email", email, cwd=work)
        exists = git("ls-remote", "--heads", target, f"refs/heads/{branch}", cwd=work).strip()
        if exists:
            git("fetch", "-q", "--no-tags", target, f"+refs/heads/{branch}:refs/remotes/student/{branch}", cwd=work)
            already = history_leaks(work, f"refs/remotes/student/{branch}", secrets(course, answers=False))
            if already:
                raise refusal(
                    f"the history of {branch} in {target} already holds what students must not see "
                    "(a student repository starts empty, never as a copy of the course)",
                    already,
                )
            git("checkout", "-q", "-B", branch, f"refs/remotes/student/{branch}", cwd=work)
        else:
            git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=work)
        for entry in work.iterdir():
            if entry.name != ".git":
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        for rel, data in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_bytes(data)
        git("add", "-A", cwd=work)
        if exists and not git("status", "--porcelain", cwd=work).strip():
            return Published(target, branch, None, tuple(names))
        message = f"Student notebooks from {course_commit(course)}\n\nLessons: {', '.join(names)}\n"
        git("commit", "-q", "--no-verify", "-m", message, cwd=work)
        commit = git("rev-parse", "HEAD", cwd=work).strip()
        git("push", "-q", "--no-verify", target, f"HEAD:refs/heads/{branch}", cwd=work)
    return Published(target, branch, commit, tuple(names))


def main(course: Path = REPO, target: str | None = None, log: Callable[[str], None] = print) -> int:
    """``grader release --publish [TARGET]``: publish release/ to the student repository."""
    try:
        done = publish(course, resolve_target(target, Path.cwd()) if target else None)
    except PublishError as exc:
        log(str(exc))
        return 1
    if done.commit is None:
        log(f"{done.target} ({done.branch}) already holds this release: nothing pushed")
    else:
        log(f"published {', '.join(done.lessons)} to {done.target} ({done.branch}): commit {done.commit[:12]}")
    return 0
