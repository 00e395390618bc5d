"""Generate release/ from source/ with nbgrader, and check the committed release/.

Generation always runs in a throwaway course directory (a copy of ``source/<assignment>/`` and
``nbgrader_config.py``), so it never touches the real gradebook unless asked to (``record``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from nbformat import NotebookNode

from . import notebooks
from .evidence import CHECKS
from .paths import CONFIG, REPO, SCRATCH, lessons, nbgrader_cmd, release_notebook, source_notebook, tool_env

FIX_COMMAND = "bash .ci/in-venv grader release"
DEFAULT_GITHUB, DEFAULT_BRANCH = "pytorch-course/practical-patterns", "main"
"""The public student repository when nbgrader_config.py names none (``c.CourseRelease.github`` / ``.branch``)."""
COLAB_URL = "https://colab.research.google.com/github/{github}/blob/{branch}/release/{lesson}/{lesson}.ipynb"
COLAB_BADGE = '<a href="{url}" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>'
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"']+?/release/(?P<lesson>[\w-]+)/(?P=lesson)\.ipynb")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
COPY_IGNORE = shutil.ignore_patterns(*SCRATCH, CHECKS)
"""Never copied into the throwaway course nbgrader generates release/ in: scratch files and the assignment's checks."""
NBGRADER_TIMEOUT = 300


class ReleaseError(RuntimeError):
    """nbgrader could not generate the release."""


def run_nbgrader(args: list[str], cwd: Path, timeout: float = NBGRADER_TIMEOUT) -> str:
    """Run ``nbgrader ARGS`` in ``cwd``; return its log, raise ReleaseError on failure."""
    proc = subprocess.run(
        nbgrader_cmd(*args), cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout
    )
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        errors = [line for line in log.splitlines() if "ERROR" in line or "Error" in line]
        raise ReleaseError(f"nbgrader {' '.join(args)} failed:\n" + "\n".join(errors[-8:] or log.splitlines()[-8:]))
    return log


def course_release(course_dir: Path = REPO, section: str = "CourseRelease") -> dict:
    """The settings ``c.<section>.…`` of the course's nbgrader_config.py ({} without one)."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = course_dir / "nbgrader_config.py"
    loaded = PyFileConfigLoader(config.name, path=str(course_dir)).load_config() if config.is_file() else Config()
    return dict(loaded.get(section, {}))


def publication(course_dir: Path = REPO) -> tuple[str, str]:
    """(``owner/repository``, branch) of the public student repository: ``c.CourseRelease`` in nbgrader_config.py.

    The Colab badges and links open ``release/<lesson>/<lesson>.ipynb`` there; ``grader release
    --publish`` (``grader.publish``) pushes release/ to it. It is never the course repository.
    """
    settings = course_release(course_dir)
    return settings.get("github", DEFAULT_GITHUB), settings.get("branch", DEFAULT_BRANCH)


def colab_url(assignment: str, course_dir: Path = REPO) -> str:
    """The address that opens ``release/<assignment>/<assignment>.ipynb`` in Colab, from the publication setting."""
    github, branch = publication(course_dir)
    return COLAB_URL.format(github=github, branch=branch, lesson=assignment)


def colab_badge(assignment: str, course_dir: Path = REPO) -> str:
    """The "Open in Colab" badge (HTML, as Colab's own badges are written) for a release notebook."""
    return COLAB_BADGE.format(url=colab_url(assignment, course_dir))


def add_badge(nb: NotebookNode, badge: str) -> NotebookNode:
    """The notebook with ``badge`` as the first line of its first cell (a markdown cell is added if needed)."""
    import nbformat

    if not nb.cells or nb.cells[0].cell_type != "markdown":
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(""))
    first = nb.cells[0]
    first.source = badge + "\n\n" + first.source if first.source else badge
    return nb


def generate_to(assignment: str, course_dir: Path, out_dir: Path, gradebook: Path | str | None = None) -> Path:
    """Generate ``release/<assignment>/`` of ``course_dir`` into ``out_dir`` (replaced).

    With ``gradebook`` (a SQLite file, or a database URL), nbgrader records the assignment's
    cells there, which ``nbgrader autograde`` needs; otherwise the throwaway gradebook is discarded.
    """
    config = course_dir / "nbgrader_config.py"
    with tempfile.TemporaryDirectory(prefix="grader-release-") as tmp:
        course = Path(tmp)
        shutil.copytree(course_dir / "source" / assignment, course / "source" / assignment, ignore=COPY_IGNORE)
        shutil.copy(config if config.is_file() else CONFIG, course / "nbgrader_config.py")
        args = ["generate_assignment", assignment, "--force"]
        if gradebook is not None:
            url = gradebook if "://" in str(gradebook) else f"sqlite:///{Path(gradebook).resolve()}"
            args.append(f"--CourseDirectory.db_url={url}")
        run_nbgrader(args, cwd=course)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(course / "release" / assignment, out_dir)
    released = out_dir / f"{assignment}.ipynb"
    notebooks.write(add_badge(notebooks.read(released), colab_badge(assignment, course_dir)), released)
    return out_dir


def generate(assignment: str, course_dir: Path = REPO) -> Path:
    """Regenerate ``<course_dir>/release/<assignment>/`` from its source."""
    return generate_to(assignment, course_dir, course_dir / "release" / assignment)


def record(assignment: str, course_dir: Path, db_url: str) -> None:
    """Record the assignment's cells in the course gradebook ``db_url`` (as generate_assignment does)."""
    with tempfile.TemporaryDirectory(prefix="grader-record-") as tmp:
        generate_to(assignment, course_dir, Path(tmp) / assignment, gradebook=db_url)


def without_ids(nb: NotebookNode) -> NotebookNode:
    """A copy without cell ids (they follow the source's, and are not content)."""
    out = NotebookNode(dict(nb))
    out.cells = [NotebookNode({k: v for k, v in c.items() if k != "id"}) for c in nb.cells]
    return out


def notebook_diff(expected: NotebookNode, actual: NotebookNode) -> list[str]:
    """Differences between two notebooks, cell by cell, ignoring cell ids."""
    expected, actual = without_ids(expected), without_ids(actual)
    diffs = []
    for key in sorted(set(expected) | set(actual)):
        if key != "cells" and expected.get(key) != actual.get(key):
            diffs.append(f"notebook {key} differs")
    if len(expected.cells) != len(actual.cells):
        diffs.append(f"{len(actual.cells)} cells, a fresh generation has {len(expected.cells)}")
    for i, (want, got) in enumerate(zip(expected.cells, actual.cells)):
        if want != got:
            name = notebooks.grade_id(want) or notebooks.grade_id(got) or want.cell_type
            diffs.append(f"cell {i} ({name}) differs")
    return diffs


def tree_diff(expected: Path, actual: Path) -> list[str]:
    """Differences between a freshly generated release folder and the committed one."""
    want = {p.relative_to(expected) for p in expected.rglob("*") if p.is_file()}
    have = {p.relative_to(actual) for p in actual.rglob("*") if p.is_file()} if actual.is_dir() else set()
    diffs = [f"{actual.name}/{p}: missing" for p in sorted(want - have)]
    diffs += [f"{actual.name}/{p}: not in a fresh generation" for p in sorted(have - want)]
    for rel in sorted(want & have):
        if rel.suffix == ".ipynb":
            nb_diffs = notebook_diff(notebooks.read(expected / rel), notebooks.read(actual / rel))
            diffs += [f"{actual.name}/{rel}: {d}" for d in nb_diffs]
        elif (expected / rel).read_bytes() != (actual / rel).read_bytes():
            diffs.append(f"{actual.name}/{rel}: content differs")
    return diffs


def drift(assignment: str, course_dir: Path = REPO) -> list[str]:
    """How the committed ``release/<assignment>/`` differs from a fresh generation ([] if not)."""
    with tempfile.TemporaryDirectory(prefix="grader-drift-") as tmp:
        fresh = generate_to(assignment, course_dir, Path(tmp) / assignment)
        return tree_diff(fresh, course_dir / "release" / assignment)


def drift_message(what: str, diffs: list[str]) -> str:
    """The failure text for a stale release: what differs and the command that fixes it."""
    shown = "\n  ".join(diffs[:20]) + ("\n  ..." if len(diffs) > 20 else "")
    return f"{what} is stale (differs from a fresh generation from source/):\n  {shown}\nFix: {FIX_COMMAND}"


def readme(course_dir: Path = REPO) -> str:
    """Text of ``release/README.md``: what the folder is, and its lessons with their graded tests."""
    lines = [
        "# release/ (generated: do not edit)",
        "",
        "Student notebooks generated by nbgrader from `source/` with `bash .ci/in-venv grader release`.",
        "Edit `source/` and regenerate; `tests/test_release.py` fails when anything here is stale,",
        "including this file. Each subfolder is one nbgrader assignment.",
        "",
        "| lesson | graded tests | points | Colab |",
        "| --- | --- | --- | --- |",
    ]
    for name in lessons(course_dir):
        tests = notebooks.test_points(notebooks.read(source_notebook(name, course_dir)))
        lines.append(
            f"| [{name}]({name}/{name}.ipynb) | {len(tests)} | {sum(tests.values()):g} | [Open in Colab]({colab_url(name, course_dir)}) |"
        )
    return "\n".join(lines) + "\n"


def write_readme(course_dir: Path = REPO) -> Path:
    """Write ``release/README.md``."""
    path = course_dir / "release" / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(readme(course_dir))
    return path


def readme_drift(course_dir: Path = REPO) -> list[str]:
    """["release/README.md: ..."] when the committed README is not what ``readme`` gives."""
    path = course_dir / "release" / "README.md"
    if not path.is_file():
        return ["release/README.md: missing"]
    return [] if path.read_text() == readme(course_dir) else ["release/README.md: content differs"]


def with_colab_links(text: str, course_dir: Path = REPO) -> str:
    """``text`` with every Colab link to a release notebook rebuilt from the publication setting."""
    return COLAB_LINK.sub(lambda m: colab_url(m["lesson"], course_dir), text)


def update_course_readme(course_dir: Path = REPO) -> bool:
    """Rewrite the Colab links of the course's README.md from the setting; return whether it changed."""
    path = course_dir / "README.md"
    if not path.is_file():
        return False
    text = path.read_text()
    updated = with_colab_links(text, course_dir)
    if updated != text:
        path.write_text(updated)
    return updated != text


def course_readme_drift(course_dir: Path = REPO) -> list[str]:
    """Colab links in README.md that do not follow the publication setting ([] if none)."""
    path = course_dir / "README.md"
    if not path.is_file():
        return []
    return [
        f"README.md: {m[0]} (the setting gives {colab_url(m['lesson'], course_dir)})"
        for m in COLAB_LINK.finditer(path.read_text())
        if m[0] != colab_url(m["lesson"], course_dir)
    ]


def region_lines(source: str, begin: str, end: str) -> tuple[set[str], set[str]]:
    """(lines inside ``begin``/``end`` marker pairs, lines outside), stripped, code only."""
    inside, outside, depth = set(), set(), False
    for raw in source.splitlines():
        line = raw.strip()
        if begin in line:
            depth = True
        elif end in line:
            depth = False
        elif line and not line.startswith("#"):
            (inside if depth else outside).add(line)
    return inside, outside


def secret_lines(nb: NotebookNode) -> tuple[dict[str, set[str]], set[str], set[str]]:
    """Solution lines per solution cell, hidden-test lines, and every visible line of a source."""
    solutions: dict[str, set[str]] = {}
    hidden: set[str] = set()
    visible: set[str] = set()
    for cell in nb.cells:
        if notebooks.is_solution(cell):
            inside, outside = region_lines(cell.source, "BEGIN SOLUTION", "END SOLUTION")
            if "BEGIN SOLUTION" not in cell.source:
                inside, outside = outside, set()
            solutions[notebooks.grade_id(cell) or ""] = inside
        else:
            inside, outside = region_lines(cell.source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
            hidden |= inside
        visible |= outside
    return solutions, hidden, visible


def leaks(assignment: str, course_dir: Path = REPO) -> list[str]:
    """Solution or hidden-test text found in ``release/<assignment>/`` ([] if none)."""
    found = []
    folder = course_dir / "release" / assignment
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", errors="replace")
        found += [f"{path.relative_to(folder)}: marker {m!r}" for m in MARKERS if m in text]
    release_nb = release_notebook(assignment, course_dir)
    if not release_nb.is_file():
        return found + [f"{release_nb.name}: missing"]
    solutions, hidden, visible = secret_lines(notebooks.read(source_notebook(assignment, course_dir)))
    released = notebooks.read(release_nb)
    by_id = notebooks.cells_by_grade_id(released)
    for gid, lines in solutions.items():
        cell_lines = {line.strip() for line in by_id[gid].source.splitlines()} if gid in by_id else set()
        found += [f"solution cell {gid}: {line!r}" for line in sorted((lines - visible) & cell_lines)]
    all_lines = {line.strip() for cell in released.cells for line in cell.source.splitlines()}
    found += [f"hidden test line: {line!r}" for line in sorted((hidden - visible) & all_lines)]
    return found


def main(assignments: list[str] | None = None, course: Path = REPO, log: Callable[[str], None] = print) -> int:
    """``grader release``: regenerate the course's release/ for the given (default: all) lessons (0: done,
    without problems). Publishing it (``--publish``) is ``grader.publish``'s."""
    status = 0
    names = assignments or lessons(course)
    if not names:
        log("no lessons found under source/")
        return 1
    for name in names:
        if name not in lessons(course):
            log(f"{name}: no source/{name}/{name}.ipynb")
            status = 1
            continue
        try:
            out = generate(name, course)
        except ReleaseError as exc:
            log(str(exc))
            status = 1
            continue
        problems = leaks(name, course)
        log(f"{name}: wrote {out.relative_to(course)}/" + (f"; LEAKS: {problems}" if problems else ""))
        status |= bool(problems)
    log(f"wrote {write_readme(course).relative_to(course)}")
    if update_course_readme(course):
        log("README.md: Colab links rewritten from c.CourseRelease in nbgrader_config.py")
    return status
