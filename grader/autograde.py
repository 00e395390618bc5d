"""Grade a class: the coordinator.

It records the assignment in the course gradebook, packs the assignment and each submission as
plain bytes, hands them to ``grader.worker.grade`` on an executor (a local process pool, or any
``concurrent.futures.Executor``), and merges each result as it arrives: into the gradebook
(``grader.gradebook.merge``), into ``autograded/<student>/<assignment>/``, and into a ledger
``.grader/<assignment>/<student>.json`` written last. A rerun skips every student whose ledger
digest matches the submission and everything that decides its scores (the tests, the config, the
checks, the grader's code, torch's and nbgrader's versions: ``grader.records.parts_of``); ``force``
regrades all. Each regrade of a student graded before lists the scores it changed in
``reports/<assignment>/regrades.csv``.

A worker process that dies takes only its in-flight submissions with it: they are retried one at
a time (so a submission that kills its worker is told apart from its neighbours), and one whose
worker dies twice while it is graded alone ends as an error row. The batch always goes on.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from . import authoring, gradebook, notebooks, untrusted
from .data import stage
from .paths import DATA_ENV, course_dir as find_course, course_secret, default_data_root, default_mirror, is_scratch, source_notebook
from .release import ReleaseError
from .sandbox import Limits, SandboxUnavailable, check as check_sandbox
from .records import (
    INPUTS_SECRET, Assignment, NotebookGrades, Result, Settings, Submission, SubmissionError, digest_of, grading_code, parts_of, read_tree,
)  # fmt: skip
from .worker import grade

CELL_TIMEOUT = 180
"""Per-cell limit when the course config sets none (nbgrader's own default is 30 s)."""
MAX_KILLS = 2
"""A submission whose worker dies this many times while it is graded alone ends as an error row."""
LEDGER = ".grader"


class AutogradeError(RuntimeError):
    """The class cannot be graded at all (as opposed to one broken submission)."""


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def settings_for(
    course_dir: Path, workers: int, data_root: Path | None, seed: int = 0, threads: int | None = None, sandbox: bool = True
) -> Settings:
    """Each kernel gets its share of the cores; the time limits grow as its share shrinks; the
    sandbox's limits come from the course config (``c.GraderSandbox``)."""
    threads = threads or max(1, cores() // workers)
    scale = max(1.0, cores() / threads)
    config = gradebook.course_config(course_dir)
    base = config.Execute.get("timeout", CELL_TIMEOUT)
    env = {DATA_ENV: str(data_root)} if data_root else {}
    try:
        limits = Limits.from_config(config)
    except (TypeError, ValueError) as exc:
        raise AutogradeError(f"nbgrader_config.py: {exc}") from None
    return Settings(threads, base * scale, limits.notebook_timeout * scale, seed, env, sandbox, limits)


def load_assignment(course_dir: Path, assignment: str, record: bool = True) -> Assignment:
    """Record the assignment in the course gradebook; its source files, config and a private gradebook, as bytes,
    and what else decides its scores (``grading_code``, once per batch). ``record=False`` records nothing and
    packs no gradebook or release: enough for its digest."""
    folder = course_dir / "source" / assignment
    if not (folder / f"{assignment}.ipynb").is_file():
        raise AutogradeError(f"no source/{assignment}/{assignment}.ipynb in {course_dir}")
    config = course_dir / "nbgrader_config.py"
    private, release = gradebook.record_assignment(course_dir, assignment) if record else (b"", {})
    files = read_tree(folder, is_scratch)
    return Assignment(
        name=assignment,
        files=files,
        config=config.read_bytes() if config.is_file() else b"",
        gradebook=private,
        course_id=gradebook.course_id(course_dir),
        release=release,
        code=grading_code(files),
        secret=course_secret(course_dir, INPUTS_SECRET, make=record),
    )


def load_submission(course_dir: Path, assignment: str, student: str, extensions: dict, limits: Limits = Limits()) -> Submission:
    """``submitted/<student>/<assignment>/`` as bytes (checkpoints and caches left out): its plain files only, within
    the limits on what is kept of a folder; links, FIFOs and devices are dropped unread, with a note."""
    folder = course_dir / "submitted" / student / assignment
    if any(p.is_symlink() for p in (folder.parent, folder)) or not folder.is_dir():
        raise SubmissionError(f"no folder submitted/{student}/{assignment}/")
    tree = untrusted.read_tree(
        folder, lambda rel: ".ipynb_checkpoints" in rel.parts or "__pycache__" in rel.parts, limits.keep_file_mb << 20, limits.keep_mb << 20
    )  # fmt: skip
    return Submission(student, tree.files, extensions.get(student), tuple(f"submitted {note}" for note in tree.notes))


def student_folders(course_dir: Path, students: Iterable[str] | None = None) -> list[str]:
    """Student ids: folders of ``submitted/`` (or the given ones), sorted."""
    if students:
        return list(students)
    submitted = course_dir / "submitted"
    return sorted(p.name for p in submitted.iterdir() if p.is_dir()) if submitted.is_dir() else []


# --- the ledger: what was graded against what --------------------------------------------------


def ledger_path(course_dir: Path, assignment: str, student: str) -> Path:
    return course_dir / LEDGER / assignment / f"{student}.json"


def to_json(result: Result) -> dict:
    """A result without its files and log, as JSON."""
    data = asdict(result)
    data.pop("files"), data.pop("log")
    return data


def from_json(data: dict) -> Result:
    data = dict(data)
    data["notebooks"] = {k: NotebookGrades(**v) for k, v in data["notebooks"].items()}
    return Result(**data)


def read_ledger(course_dir: Path, assignment: str, student: str) -> Result | None:
    """The result filed for a student, or None."""
    path = ledger_path(course_dir, assignment, student)
    try:
        return from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def file_result(course_dir: Path, result: Result) -> None:
    """Merge a result: gradebook first, then the autograded folder, then the ledger (atomically)."""
    gradebook.merge(course_dir, result)
    folder = course_dir / "autograded" / result.student / result.assignment
    if result.files:
        staging = folder.with_name(folder.name + ".incoming")
        shutil.rmtree(staging, ignore_errors=True)
        for name, content in result.files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(content)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    path = ledger_path(course_dir, result.assignment, result.student)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(to_json(result), indent=1))
    tmp.replace(path)


# --- executing: a local pool that survives a dead worker ---------------------------------------


class LocalPool:
    """A process pool (``spawn``: nothing of the coordinator leaks in) that can be rebuilt."""

    def __init__(self, workers: int):
        self.workers = workers
        self.executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, fn, *args) -> Future:
        return self.executor.submit(fn, *args)

    def restart(self) -> None:
        """Replace a broken pool (its worker died) by a fresh one."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._new()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class Task:
    submission: Submission
    assignment: Assignment
    attempts: int = 0
    suspect: bool = False
    """A worker died while it ran: retry it with nothing else in flight."""
    kills: int = 0
    """Workers that died while it ran alone: those deaths are its own."""
    why: str = ""
    """Why it is graded (again): ``out_of_date``."""
    before: Result | None = None
    """The result filed for it before this run, if any: its scores are compared with the new ones."""


def run(
    tasks: list[Task],
    settings: Settings,
    executor: Executor | LocalPool,
    slots: int,
    on_result: Callable[[Result], None],
    on_start: Callable[[int], None] = lambda in_flight: None,
) -> None:
    """Grade every task on ``executor`` with at most ``slots`` in flight; call ``on_result`` for each."""
    queue: deque[Task] = deque(tasks)
    running: dict[Future, Task] = {}
    while queue or running:
        while queue and len(running) < slots:
            if queue[0].suspect and running:
                break  # a suspect runs alone, so a worker it kills takes nobody else
            task = queue.popleft()
            task.attempts += 1
            running[executor.submit(grade, task.submission, task.assignment, settings)] = task
            if task.suspect:
                break
        on_start(len(running))
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        broken = False
        for future in done:
            task = running.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # the worker died (killed, out of memory, lost node)
                broken |= isinstance(exc, BrokenProcessPool)
                task.kills += task.suspect
                if task.kills >= MAX_KILLS:
                    why = f"{type(exc).__name__}: {exc}".strip(": ")[:200]
                    on_result(
                        Result(task.submission.student, task.assignment.name, digest_of(task.submission, task.assignment),
                               digest_parts=parts_of(task.submission, task.assignment),
                               error=f"its grading killed the worker {task.kills} times ({why})",
                               attempts=task.attempts)
                    )  # fmt: skip
                else:
                    task.suspect = True
                    queue.appendleft(task)
                continue
            result.attempts = task.attempts
            on_result(result)
        if broken and isinstance(executor, LocalPool):
            for future, task in running.items():  # they died with the pool: retry them, alone
                task.suspect = True
                queue.appendleft(task)
            running.clear()
            executor.restart()


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """A tqdm bar on a terminal; one plain line per finished submission otherwise (CI logs)."""

    def __init__(self, total: int, label: str, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.done, self.label, self.start = total, 0, label, time.perf_counter()
        self.flight = 0
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="sub", file=self.stream, dynamic_ncols=True)

    def in_flight(self, n: int) -> None:
        self.flight = n
        if self.bar is not None:
            self.bar.set_postfix_str(f"in flight {n}")

    def finished(self, result: Result, note: str = "") -> None:
        self.done += 1
        score = f"error: {result.error}" if result.error else f"{result.total:g}/{result.max_total:g}"
        line = f"{result.student}: {score} ({result.seconds:.1f} s){note}"
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
            self.bar.update(1)
        else:
            elapsed = time.perf_counter() - self.start
            eta = elapsed / self.done * (self.total - self.done)
            where = f"{self.label} {self.done}/{self.total}, {max(0, self.flight - 1)} in flight, {elapsed:.0f} s, eta {eta:.0f} s"
            print(f"[{where}] {line}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- the coordinator -----------------------------------------------------------------------------


def ordered(result: Result, order: list[str]) -> Result:
    """The result with each notebook's cells in the source notebook's order."""
    for nb in result.notebooks.values():
        rank = {gid: i for i, gid in enumerate(order)}
        nb.scores = dict(sorted(nb.scores.items(), key=lambda kv: rank.get(kv[0], len(rank))))
        nb.max_scores = dict(sorted(nb.max_scores.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    return result


def autograde(course_dir: Path, assignment: str, *args, **kwargs) -> list[Result]:
    """``autograde_many`` for one assignment: its results, in student order."""
    return autograde_many(course_dir, [assignment], *args, **kwargs)[assignment]


def autograde_many(
    course_dir: Path,
    assignments: list[str],
    students: Iterable[str] | None = None,
    data_root: Path | None = None,
    workers: int | None = None,
    force: bool = False,
    executor: Executor | None = None,
    progress: bool = True,
    scheduler: str | None = None,
    worker_mirror: str | None = None,
    sandbox: bool = True,
) -> dict[str, list[Result]]:
    """Autograde the students of ``<course_dir>/submitted/`` (or the given ones) for each assignment, in one batch.

    Each assignment is first recorded in the course gradebook from ``source/`` (what
    ``nbgrader generate_assignment`` does), so grading uses the current tests. Work goes to
    ``executor``, else a Dask cluster (``scheduler``: an address, or ``local``), else a local pool.
    Each kernel runs in the bubblewrap sandbox unless ``sandbox`` is False.
    """
    course_dir = Path(course_dir).resolve()
    workers = workers or cores()
    if scheduler and executor is None:
        from .cluster import dask_executor

        local = scheduler == "local"  # on this machine: the workers use the data staged here
        mirror = None if local else default_mirror(course_dir)
        with dask_executor(scheduler, workers, mirror, worker_mirror) as (dask, slots):
            return grade_batch(
                course_dir, assignments, students, data_root if local else None,
                slots, force, dask, progress, threads=max(1, cores() // slots) if local else 1, sandbox=sandbox,
            )  # fmt: skip
    if sandbox:
        try:
            check_sandbox()
        except SandboxUnavailable as exc:
            raise AutogradeError(str(exc)) from None
    return grade_batch(course_dir, assignments, students, data_root, workers, force, executor, progress, sandbox=sandbox)


PARTS = {
    "submission": "submission changed", "tests": "tests changed", "config": "nbgrader_config.py changed",
    "checks": "checks changed", "grader": "grader code changed", "secret": "the course's inputs secret changed",
}  # fmt: skip
"""How a changed part of a digest (``grader.records.parts_of``) is said; a version is said as ``torch 2.5.0 -> 2.6.0``."""


def out_of_date(filed: Result | None, submission: Submission, assignment: Assignment) -> str:
    """Why the result filed for a submission no longer holds ('' when it does): a new submission, or the parts
    of its digest that changed since."""
    if filed is None:
        return "new submission"
    if filed.digest == digest_of(submission, assignment):
        return ""
    if not filed.digest_parts:
        return "graded by an earlier grader (no digest parts filed)"
    was, now = filed.digest_parts, parts_of(submission, assignment)
    changed = [
        PARTS.get(part, f"{part} {was.get(part) or 'none'} -> {now.get(part) or 'none'}")
        for part in dict.fromkeys([*now, *was])
        if was.get(part) != now.get(part)
    ]
    return ", ".join(changed) or "digest changed"


def has_gradebook(course_dir: Path) -> bool:
    """Whether the course's gradebook exists (opening a SQLite one that does not would create it)."""
    url = gradebook.db_url(course_dir)
    return not url.startswith("sqlite:///") or Path(url.split("sqlite:///", 1)[-1]).is_file()


def plan(
    course_dir: Path, assignment: str, students: Iterable[str] | None, force: bool, limits: Limits = Limits(), dry_run: bool = False
) -> tuple[dict[str, Result], list[Task]]:
    """Record and pack one assignment; the results already filed (or unsubmittable) and the tasks left, each
    saying why it is graded. ``dry_run``: record nothing, create no gradebook."""
    try:
        packed = load_assignment(course_dir, assignment, record=not dry_run)
    except ReleaseError as exc:
        raise AutogradeError(f"cannot record {assignment} in {gradebook.db_url(course_dir)}: {exc}") from exc
    recorded = not dry_run or has_gradebook(course_dir)
    extensions = gradebook.extensions(course_dir, assignment) if recorded else {}
    results: dict[str, Result] = {}
    tasks: list[Task] = []
    for student in student_folders(course_dir, students):
        try:
            submission = load_submission(course_dir, assignment, student, extensions, limits)
        except SubmissionError as exc:  # nothing submitted: not recorded; reported when asked for
            if students:
                results[student] = Result(student, assignment, error=str(exc))
            continue
        filed = read_ledger(course_dir, assignment, student)
        why = "--force" if force else out_of_date(filed, submission, packed)
        if not why and not (recorded and gradebook.has_submission(course_dir, assignment, student)):
            why = "not in the gradebook"
        if why:
            tasks.append(Task(submission, packed, why=why, before=filed))
        else:
            results[student] = filed
    return results, tasks


def grade_batch(
    course_dir: Path,
    assignments: list[str],
    students: Iterable[str] | None,
    data_root: Path | None,
    workers: int,
    force: bool,
    executor: Executor | None,
    progress: bool,
    threads: int | None = None,
    sandbox: bool = True,
) -> dict[str, list[Result]]:
    """The coordinator's loop over one executor (see ``autograde``)."""
    for assignment in assignments:  # a test naming what does not exist would score 0 for every student
        if found := authoring.problems(assignment, course_dir):
            raise AutogradeError(f"{assignment}: its tests name what does not exist; nothing was graded:\n  " + "\n  ".join(found))
    settings = settings_for(course_dir, workers, data_root, threads=threads, sandbox=sandbox)
    results: dict[str, dict[str, Result]] = {}
    order: dict[str, list[str]] = {}
    tasks: list[Task] = []
    for assignment in assignments:
        results[assignment], todo = plan(course_dir, assignment, students, force, settings.limits)
        order[assignment] = list(notebooks.graded_points(notebooks.read(source_notebook(assignment, course_dir))))
        tasks += todo
        if progress and results[assignment] and not force:
            n = len(results[assignment]) + len(todo)
            print(f"{assignment}: {n - len(todo)} of {n} already graded (unchanged); grading {len(todo)}", file=sys.stderr)
        if progress and todo:
            print(f"{assignment}: grading {len(todo)}: {reasons(todo)}", file=sys.stderr)
    bar = Progress(len(tasks), "+".join(assignments)) if progress else None
    planned = {(task.assignment.name, task.submission.student): task for task in tasks}
    regraded: dict[str, dict[str, list[dict]]] = {}  # assignment -> student graded before -> its changed scores

    def on_result(result: Result) -> None:
        results[result.assignment][result.student] = ordered(result, order[result.assignment])
        file_result(course_dir, result)
        task = planned[(result.assignment, result.student)]
        if task.before is not None:
            regraded.setdefault(result.assignment, {})[result.student] = changed_scores(task.before, result, task.why)
            write_regrades(course_dir, result.assignment, regraded[result.assignment])
        if bar:
            bar.finished(result, f" (attempt {result.attempts})" if result.attempts > 1 else "")

    pool = executor or LocalPool(workers)
    try:
        run(tasks, settings, pool, workers, on_result, bar.in_flight if bar else lambda n: None)
    finally:
        if bar:
            bar.close()
        if executor is None:
            pool.shutdown()
    for assignment, changed in regraded.items():
        rows = sum(map(len, changed.values()))
        if progress:
            print(
                f"{assignment}: regraded {len(changed)} graded before: {rows} score(s) changed for "
                f"{sum(map(bool, changed.values()))} student(s); see {regrades_path(course_dir, assignment)}",
                file=sys.stderr,
            )
    ids = student_folders(course_dir, students)
    return {a: [results[a][s] for s in ids if s in results[a]] for a in assignments}  # student order


def reasons(tasks: list[Task]) -> str:
    """Why the tasks are graded, each reason with how many it holds for."""
    counted = Counter(task.why for task in tasks)
    return "; ".join(f"{why} ({n})" for why, n in counted.most_common())


REGRADES = ("student", "grade_id", "old_score", "new_score", "why")
"""The columns of ``reports/<assignment>/regrades.csv``."""


def regrades_path(course_dir: Path, assignment: str) -> Path:
    return course_dir / "reports" / assignment / "regrades.csv"


def changed_scores(before: Result, after: Result, why: str) -> list[dict]:
    """The cells whose score differs between a filed result and its regrade, as rows of ``regrades.csv``
    (a score that is not a number, or a cell not graded, is empty)."""
    score = lambda r, gid: "" if r.scores.get(gid) is None else fmt(r.scores[gid])  # noqa: E731
    why = f"{why}; grading failed: {after.error}" if after.error else why
    cells = dict.fromkeys([*after.max_scores, *before.max_scores])
    return [
        {"student": after.student, "grade_id": gid, "old_score": score(before, gid), "new_score": score(after, gid), "why": why}
        for gid in cells
        if (before.scores.get(gid), gid in before.scores) != (after.scores.get(gid), gid in after.scores)
    ]


def write_regrades(course_dir: Path, assignment: str, changed: dict[str, list[dict]]) -> None:
    """``reports/<assignment>/regrades.csv``: every score this run's regrades changed, by student (rewritten as they arrive)."""
    path = regrades_path(course_dir, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as out:
        writer = csv.DictWriter(out, REGRADES)
        writer.writeheader()
        writer.writerows(row for student in sorted(changed) for row in changed[student])
    tmp.replace(path)


def fmt(x: float | None) -> str:
    """A score as text: integers without decimals, None as '-'."""
    return "-" if x is None else f"{x:g}"


def format_table(results: list[Result]) -> str:
    """Plain-text grade table: student, total/max, one numbered column per graded cell, error."""
    cells = list(dict.fromkeys(k for r in results for k in r.max_scores))
    maxima = {k: v for r in results for k, v in r.max_scores.items()}
    header = ["student", "total", *[f"[{i}]" for i in range(1, len(cells) + 1)], "error"]
    rows = [
        [r.student, f"{fmt(r.total)}/{fmt(r.max_total)}", *[fmt(r.scores.get(c)) for c in cells], r.error or ""]
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[-1] for row in [header, *rows]]
    legend = [f"[{i}] {c} ({fmt(maxima[c])} pt)" for i, c in enumerate(cells, 1)]
    return "\n".join([line.rstrip() for line in lines] + legend)


def main(
    assignments: list[str],
    students: list[str] | None = None,
    course: Path | None = None,
    workers: int | None = None,
    force: bool = False,
    scheduler: str | None = None,
    worker_mirror: str | None = None,
    sandbox: bool = True,
    log: Callable[[str], None] = print,
    dry_run: bool = False,
) -> int:
    """``grader autograde``: grade the course's submitted/ folder, print the tables, write the reports
    (``dry_run``: only say who would be graded, and why)."""
    from . import report

    course_dir = find_course(course)
    if dry_run:
        return preview(course_dir, assignments, students, force, log)
    root = default_data_root(course_dir)
    stage(root, default_mirror(course_dir))
    try:
        graded = autograde_many(
            course_dir, assignments, students, root, workers, force, scheduler=scheduler, worker_mirror=worker_mirror, sandbox=sandbox
        )  # fmt: skip
    except AutogradeError as exc:
        log(str(exc))
        return 1
    if not any(graded.values()):
        log(f"no student folders in {course_dir / 'submitted'}")
        return 1
    for assignment, results in graded.items():
        log(f"== {assignment}")
        log(format_table(results))
        log(report.write(course_dir, assignment).summary())
    return int(any(r.error for results in graded.values() for r in results))


def preview(course_dir: Path, assignments: list[str], students: list[str] | None, force: bool, log: Callable[[str], None] = print) -> int:
    """``grader autograde --dry-run``: who would be graded and why, per assignment; grades nothing, writes nothing."""
    try:
        limits = settings_for(course_dir, 1, None).limits
        planned = {assignment: plan(course_dir, assignment, students, force, limits, dry_run=True) for assignment in assignments}
    except AutogradeError as exc:
        log(str(exc))
        return 1
    if not any(results or tasks for results, tasks in planned.values()):
        log(f"no student folders in {course_dir / 'submitted'}")
        return 1
    for assignment, (results, tasks) in planned.items():
        unsubmitted = {s: r.error for s, r in results.items() if not r.digest}
        log(f"== {assignment} (dry run: nothing is graded or written)")
        log(f"would grade {len(tasks)} of {len(results) - len(unsubmitted) + len(tasks)}" + (":" if tasks else ""))
        width = max((len(t.submission.student) for t in tasks), default=0)
        for task in sorted(tasks, key=lambda t: t.submission.student):
            log(f"  {task.submission.student.ljust(width)}  {task.why}")
        for student, error in sorted(unsubmitted.items()):
            log(f"  {student}: nothing to grade ({error})")
    return 0
