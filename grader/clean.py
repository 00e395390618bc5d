"""Clean source notebooks in place: no outputs, no execution counts, canonical kernelspec.

nbgrader-aware: the ``nbgrader``, ``deletable``, ``editable`` and ``tags`` cell metadata stay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import notebooks
from .paths import REPO, lessons, source_notebook


def clean_file(path: Path) -> bool:
    """Clean one notebook in place; return whether it changed."""
    nb = notebooks.read(path)
    if notebooks.is_clean(nb):
        return False
    notebooks.write(notebooks.clean(nb), path)
    return True


def clean_sources(course_dir: Path = REPO) -> list[Path]:
    """Clean every lesson's source notebook; return the files that changed."""
    paths = [source_notebook(name, course_dir) for name in lessons(course_dir)]
    return [p for p in paths if clean_file(p)]


def main(course: Path = REPO, log: Callable[[str], None] = print) -> int:
    """``grader clean``: clean the course's source notebooks, say which changed."""
    changed = clean_sources(course)
    for path in changed:
        log(f"cleaned {path.relative_to(course)}")
    if not changed:
        log("source notebooks already clean")
    return 0
