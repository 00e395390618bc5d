"""Run a notebook top to bottom with nbclient and check it both ways.

The source must pass: no cell errors (stderr costs nothing: nbgrader_config.py drops it before scoring).
The release must fail: every graded test errors, answer cells raise only NotImplementedError.
Before either runs, the tests must name only checks, evidence keys and lesson definitions that
exist (``grader.authoring``, read without running anything): a lesson whose tests do not is not run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nbclient import NotebookClient
from nbformat import NotebookNode

from . import authoring, notebooks
from .data import stage
from .paths import DATA_ENV, REPO, SCRATCH, default_data_root, default_mirror, lessons, release_notebook, source_notebook

CELL_TIMEOUT = 600
"""Seconds per cell, as ``c.Execute.timeout`` in nbgrader_config.py."""
KERNEL = "python3"
TIMEOUT_ERROR = {"ename": "CellTimeoutError", "evalue": "", "traceback": ["CellTimeoutError: cell ran past the limit"]}
COPY_IGNORE = shutil.ignore_patterns(*SCRATCH)


@dataclass(frozen=True)
class CellRun:
    """What one code cell did."""

    index: int
    grade_id: str | None
    solution: bool
    test: bool
    points: float
    error: str | None
    """ename of the error the cell raised, if any."""
    shows_value: bool
    """Whether the cell has an execute_result (nbgrader reads that as partial credit)."""

    @property
    def name(self) -> str:
        return self.grade_id or f"cell {self.index}"


@dataclass
class Run:
    """One execution of a notebook."""

    notebook: Path
    seconds: float
    cells: list[CellRun] = field(default_factory=list)
    executed: NotebookNode | None = None
    """The notebook with its outputs and nbclient's per-cell timing metadata."""


@dataclass
class Check:
    """A run and what is wrong with it ([] when it behaved as it should)."""

    run: Run
    problems: list[str]

    @property
    def seconds(self) -> float:
        return self.run.seconds


def cell_run(index: int, cell) -> CellRun:
    """Summarise an executed code cell."""
    outputs = cell.get("outputs", [])
    errors = [o.ename for o in outputs if o.output_type == "error"]
    return CellRun(
        index=index,
        grade_id=notebooks.grade_id(cell),
        solution=notebooks.is_solution(cell),
        test=notebooks.is_test(cell),
        points=notebooks.points(cell),
        error=errors[0] if errors else None,
        shows_value=any(o.output_type == "execute_result" for o in outputs),
    )


def execute(nb_path: Path, data_root: Path | None = None, timeout: int = CELL_TIMEOUT) -> Run:
    """Execute a notebook in a fresh temp copy of its folder; errors do not stop the run."""
    nb_path = Path(nb_path).resolve()
    root = Path(data_root).resolve() if data_root else default_data_root()
    nb = notebooks.read(nb_path)
    with tempfile.TemporaryDirectory(prefix="grader-validate-") as tmp:
        work = Path(tmp) / nb_path.parent.name
        shutil.copytree(nb_path.parent, work, ignore=COPY_IGNORE)
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name=KERNEL,
            allow_errors=True,
            error_on_timeout=TIMEOUT_ERROR,
            resources={"metadata": {"path": str(work)}},
        )
        start = time.perf_counter()
        # The kernel process's own log (not cell output) would only add noise.
        client.execute(env={**os.environ, DATA_ENV: str(root)}, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
    cells = [cell_run(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    return Run(nb_path, seconds, cells, nb)


def cell_seconds(nb: NotebookNode) -> list[tuple[float, int, str]]:
    """(seconds, index, name) of each executed code cell, slowest first, from nbclient's timing metadata."""
    from datetime import datetime

    timed = []
    for index, cell in enumerate(nb.cells):
        execution = cell.get("metadata", {}).get("execution", {})
        begin, end = execution.get("iopub.execute_input"), execution.get("shell.execute_reply")
        if cell.cell_type == "code" and begin and end:
            seconds = (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(begin.replace("Z", "+00:00")))
            timed.append((seconds.total_seconds(), index, notebooks.grade_id(cell) or f"cell {index}"))
    return sorted(timed, reverse=True)


def source_problems(run: Run) -> list[str]:
    """Why a source run is not a passing reference ([] if it is)."""
    problems = [f"{c.name}: raised {c.error}" for c in run.cells if c.error]
    problems += [
        f"{c.name}: test cell shows a value (nbgrader reads it as partial credit)"
        for c in run.cells
        if c.test and c.shows_value
    ]
    if not any(c.test for c in run.cells):
        problems.append("no graded test cells: nothing is checked")
    return problems


def release_problems(run: Run) -> list[str]:
    """Why a release run does not fail as a blank submission should ([] if it does)."""
    problems = [f"{c.name}: graded test passes on the release" for c in run.cells if c.test and c.points and not c.error]
    problems += [
        f"{c.name}: answer cell raised {c.error}, only NotImplementedError is allowed"
        for c in run.cells
        if c.solution and c.error and c.error != "NotImplementedError"
    ]
    return problems


def check_source(nb_path: Path, data_root: Path | None = None) -> Check:
    """Execute a source notebook; problems if anything errors."""
    run = execute(nb_path, data_root)
    return Check(run, source_problems(run))


def check_release(nb_path: Path, data_root: Path | None = None) -> Check:
    """Execute a release notebook; problems if a graded test passes or an answer raises other errors."""
    run = execute(nb_path, data_root)
    return Check(run, release_problems(run))


def check_tests(name: str, course: Path, log: Callable[[str], None] = print) -> bool:
    """Whether the tests of a lesson name only checks, evidence keys and definitions that exist
    (``grader.authoring``, without running anything); logs the problems."""
    found = authoring.problems(name, course)
    log(f"{name} tests: {'ok' if not found else 'PROBLEMS (its notebooks are not run)'}")
    for problem in found:
        log(f"  {problem}")
    return not found


def main(assignments: list[str] | None = None, course: Path = REPO, log: Callable[[str], None] = print) -> int:
    """``grader validate``: the tests name what exists, the source passes and the release fails, per lesson, with timings."""
    status = 0
    names = []
    for name in assignments or lessons(course):
        if name not in lessons(course):
            log(f"{name}: no source/{name}/{name}.ipynb")
            status = 1
        elif check_tests(name, course, log):
            names.append(name)
        else:
            status = 1
    if not names:
        return status
    root = default_data_root(course)
    stage(root, default_mirror(course))
    for name in names:
        for label, check in (("source", check_source), ("release", check_release)):
            path = (source_notebook if label == "source" else release_notebook)(name, course)
            result = check(path, root)
            verdict = "ok" if not result.problems else "PROBLEMS"
            log(f"{name} {label}: {verdict} ({result.seconds:.1f} s)")
            for problem in result.problems:
                log(f"  {problem}")
            status |= bool(result.problems)
    return status
