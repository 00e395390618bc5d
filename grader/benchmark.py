"""Benchmark the project's reference solution: test accuracy and training time over several seeds.

Runs the source notebook's own pipeline cells (not a copy of them) once per seed, with only the
seed of the final training changed, and reports each run and the mean and minimum. Speed and
accuracy targets are measured here and reported, never asserted by the test suite.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from nbformat.v4 import new_code_cell

from . import notebooks
from .data import stage
from .paths import DATA_ENV, REPO, SCRATCH, default_data_root, default_mirror, nbgrader_cmd, source_notebook, tool_env
from .validate import execute
from .worker import THREAD_VARIABLES

ASSIGNMENT = "fashion-mnist-project"
PIPELINE = ("setup", "data", "validation_split", "training_functions", "model_definition", "pipeline", "final_training")
"""grade_ids of the cells that make up the reference run, in notebook order."""
TIMED = "final_training"
SEED_LINE = "torch.manual_seed(0)"
MEASURE = """import json as _json
_, _test_accuracy = evaluate(model, test_loader, nn.CrossEntropyLoss(), device)
print(_json.dumps({"test_accuracy": _test_accuracy, "epochs": len(history["val_accuracy"])}))"""


class BenchmarkError(RuntimeError):
    """The reference run could not be built or did not finish."""


@dataclass(frozen=True)
class Measurement:
    seed: int
    test_accuracy: float
    training_seconds: float
    epochs: int


def reference_run(nb, seed: int):
    """The pipeline cells of the source notebook, the final training seeded with ``seed``, plus a measuring cell."""
    cells = notebooks.cells_by_grade_id(nb)
    missing = [gid for gid in PIPELINE if gid not in cells]
    if missing:
        raise BenchmarkError(f"{ASSIGNMENT}: no cells with grade_id {missing}")
    kept = [copy.deepcopy(cells[gid]) for gid in PIPELINE]
    timed = kept[PIPELINE.index(TIMED)]
    if timed.source.count(SEED_LINE) != 1:
        raise BenchmarkError(f"{TIMED}: expected exactly one {SEED_LINE!r} to vary the seed")
    timed.source = timed.source.replace(SEED_LINE, f"torch.manual_seed({seed})")
    out = copy.deepcopy(nb)
    out.cells = kept + [new_code_cell(MEASURE)]
    return out


def cell_seconds(cell) -> float:
    """Wall time of an executed cell, from nbclient's timing metadata."""
    timing = cell.metadata["execution"]
    start, end = timing["iopub.execute_input"], timing["shell.execute_reply"]
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def measure(seed: int, data_root: Path, course: Path = REPO) -> Measurement:
    """One reference run: train with ``seed``, evaluate the restored best model on the test set."""
    nb = reference_run(notebooks.read(source_notebook(ASSIGNMENT, course)), seed)
    with tempfile.TemporaryDirectory(prefix="grader-benchmark-") as tmp:
        path = Path(tmp) / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        notebooks.write(nb, path)
        run = execute(path, data_root)
    errors = [c.name for c in run.cells if c.error]
    if errors:
        raise BenchmarkError(f"seed {seed}: cells {errors} raised")
    executed = run.executed.cells
    result = json.loads(executed[-1].outputs[-1]["text"].strip().splitlines()[-1])
    seconds = cell_seconds(executed[PIPELINE.index(TIMED)])
    return Measurement(seed, result["test_accuracy"], seconds, result["epochs"])


def main(seeds: int = 3, course: Path = REPO, log: Callable[[str], None] = print) -> int:
    """``grader benchmark``: the reference model's test accuracy and training time over ``seeds`` seeds."""
    root = default_data_root(course)
    stage(root, default_mirror(course), require=True)
    results = []
    for seed in range(seeds):
        m = measure(seed, root, course)
        results.append(m)
        log(f"seed {m.seed}: test accuracy {m.test_accuracy:.2%}, {m.epochs} epochs in {m.training_seconds:.1f} s")
    accuracies = [m.test_accuracy for m in results]
    seconds = [m.training_seconds for m in results]
    log(
        f"{ASSIGNMENT} reference over {seeds} seeds: test accuracy mean {statistics.mean(accuracies):.2%}, "
        f"min {min(accuracies):.2%}; training seconds mean {statistics.mean(seconds):.1f}, max {max(seconds):.1f}"
    )
    return 0


# --- grading: sequential nbgrader vs the pool vs bare execution -----------------------------------


@dataclass(frozen=True)
class Mode:
    name: str
    seconds: float
    cpu_seconds: float
    scores: dict | None = None
    """student -> grade_id -> score, where the mode grades."""

    def utilisation(self, cores: int) -> float:
        return self.cpu_seconds / (self.seconds * cores) if self.seconds else 0.0


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (Linux ``/proc/stat``; run benchmarks on a quiet
    machine). Elsewhere, those of this process's waited-for descendants."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime


def timed(name: str, fn: Callable[[], dict | None]) -> Mode:
    cpu, start = machine_cpu(), time.perf_counter()
    scores = fn()
    return Mode(name, time.perf_counter() - start, machine_cpu() - cpu, scores)


def demo_course(course: Path, into: Path, assignment: str) -> list[str]:
    """A throwaway course holding the lesson's source, the config and its demo class."""
    from .demo import build
    from .release import generate

    shutil.copytree(course / "source" / assignment, into / "source" / assignment, ignore=shutil.ignore_patterns(*SCRATCH))
    shutil.copy(course / "nbgrader_config.py", into / "nbgrader_config.py")
    generate(assignment, into)
    return build(into, assignment)


def bare_one(path: str, data_root: str, threads: int) -> float:
    """Execute one submitted notebook with nbclient as nbgrader would (no grading); return seconds."""
    import os

    from nbclient import NotebookClient

    env = {**os.environ, DATA_ENV: data_root, "NBGRADER_EXECUTION": "autograde"}
    env.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    start = time.perf_counter()
    try:
        nb = notebooks.read(Path(path))
    except Exception:
        return time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="grader-bare-") as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(Path(path).parent, work)
        client = NotebookClient(nb, timeout=None, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(work)}})
        client.execute(env=env, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def grading_modes(course: Path, assignments: list[str], workers: int, data_root: Path, tmp: Path) -> list[Mode]:
    """Grade the demo classes of ``assignments`` three ways, each in a fresh course, and time each.

    Sequential nbgrader runs one ``nbgrader autograde`` per assignment, as an instructor would; the
    pool grades them all in one ``grader autograde A B …`` batch; bare execution runs every
    submitted notebook in one pool of ``workers`` processes.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from . import gradebook
    from .autograde import cores

    env = tool_env(**{DATA_ENV: str(data_root)})
    seq, pool, bare = tmp / "sequential", tmp / "pool", tmp / "bare"
    students = {a: [demo_course(course, c, a) for c in (seq, pool, bare)][0] for a in assignments}

    def scores(where: Path) -> dict:
        return {(a, s): gradebook.scores(where, a, s) for a, ids in students.items() for s in ids}

    def sequential() -> dict:
        for a in assignments:
            subprocess.run(nbgrader_cmd("generate_assignment", a, "--force"), cwd=seq, env=env, capture_output=True)
            subprocess.run(nbgrader_cmd("autograde", a, "--force"), cwd=seq, env=env, capture_output=True)
        return scores(seq)

    def pooled() -> dict:
        cmd = [sys.executable, "-m", "grader", "autograde", *assignments, "--workers", str(workers), "--force"]
        subprocess.run(cmd, cwd=pool, env=env, capture_output=True)
        return scores(pool)

    def bare_execution() -> None:
        threads = max(1, cores() // workers)
        paths = [str(bare / "submitted" / s / a / f"{a}.ipynb") for a, ids in students.items() for s in ids]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
            list(ex.map(bare_one, paths, [str(data_root)] * len(paths), [threads] * len(paths)))

    return [
        timed("sequential nbgrader autograde", sequential),
        timed(f"grader autograde --workers {workers}", pooled),
        timed(f"bare nbclient, {workers} processes", bare_execution),
    ]


def grading_main(assignments: list[str], course: Path, workers: int | None = None, log: Callable[[str], None] = print) -> int:
    """``grader benchmark --grading``: the demo classes graded three ways, as one table."""
    from .autograde import cores
    from .paths import lessons

    workers = workers or cores()
    root = default_data_root(course)
    stage(root, default_mirror(course), require=True)
    assignments = assignments or lessons(course)
    with tempfile.TemporaryDirectory(prefix="grader-bench-") as tmp:
        seq, pool, bare = modes = grading_modes(course, assignments, workers, root, Path(tmp))
        judged = judge_costs(Path(tmp) / "pool", assignments)
    from .demo import BLANK_TRICKED, BROKEN, REPAIRED
    from .misconceptions import MISCONCEPTIONS

    # Plain nbgrader cannot grade what the repair step fixes (a renamed, Colab-saved or rearranged
    # notebook, one that is not JSON), and lets a trick decide what the judge decides: compare the
    # rest, and name every student whose scores differ.
    repaired = {(a, s) for a, students in REPAIRED.items() for s in students} | {(a, BROKEN) for a in assignments}
    tricked = {(a, m.student) for a, ms in MISCONCEPTIONS.items() for m in ms if m.trick}
    tricked |= {(a, s) for a, students in BLANK_TRICKED.items() for s in students}
    judge_only = {(a, m.student) for a, ms in MISCONCEPTIONS.items() for m in ms if m.judge_only}
    differ = sorted(k for k in (seq.scores or {}) if (seq.scores or {}).get(k) != (pool.scores or {}).get(k))
    same = not [k for k in differ if k not in repaired | tricked | judge_only]
    log(f"== demo classes of {', '.join(assignments)}: {len(seq.scores or {})} submissions, {cores()} cores")
    log(f"  {'mode':<34} {'wall':>8}     {'CPU':>6}  {'vs sequential':>13}")
    for m in modes:
        log(f"  {m.name:<34} {m.seconds:8.1f} s   {m.utilisation(cores()):6.0%}  {seq.seconds / m.seconds:12.2f}x")
    log(f"  grading overhead of the pool over bare execution: {(pool.seconds - bare.seconds) / bare.seconds:+.1%}")
    log(f"  scores identical, sequential nbgrader vs pool (submissions nbgrader can grade as they are): {same}")
    log(f"  students whose scores differ: {', '.join(f'{a}/{s}' for a, s in differ) or 'none'}")
    total = lambda scores, key: sum(v or 0 for v in (scores or {}).get(key, {}).values())  # noqa: E731
    for a, s in sorted(k for k in tricked if k in (seq.scores or {})):
        log(f"  tricked {a}/{s}: plain nbgrader {total(seq.scores, (a, s)):g}, grader {total(pool.scores, (a, s)):g}")
    for a, s in sorted(k for k in judge_only if k in (seq.scores or {})):
        log(f"  only the judge sees {a}/{s}: plain nbgrader {total(seq.scores, (a, s)):g}, grader {total(pool.scores, (a, s)):g}")
    log("== the judge (inside the pool's workers)")
    for a, (judge, start, grading, n) in judged.items():
        log(
            f"  {a:<24} {judge:6.2f} s of {grading:6.1f} s a submission ({judge / grading:.1%}), {n} submissions; of it "
            f"{start:.2f} s starting the workers' warm sandboxes (once a worker): {judge - start:.2f} s ({(judge - start) / grading:.1%}) without"
        )  # fmt: skip
    plain, boxed, n = sandbox_cost(workers)
    log(f"== the sandbox: {n} one-cell submissions, {workers} workers, without and with bubblewrap")
    for m in (plain, boxed):
        log(f"  {m.name:<34} {m.seconds:8.1f} s   {m.cpu_seconds / n:6.2f} s CPU per submission")
    log(f"  sandbox cost per submission: {(boxed.seconds - plain.seconds) * workers / n:+.2f} s of a worker, "
        f"{(boxed.cpu_seconds - plain.cpu_seconds) / n:+.2f} s CPU")  # fmt: skip
    return 0 if same else 1


def judge_costs(course: Path, assignments: list[str]) -> dict[str, tuple[float, float, float, int]]:
    """lesson -> (mean seconds of the judge step, of them starting the workers' warm sandboxes, mean seconds of
    grading, submissions), from the results the pool filed for the submissions it graded without an error."""
    from .autograde import read_ledger, student_folders

    found = {}
    for a in assignments:
        results = [r for s in student_folders(course) if (r := read_ledger(course, a, s)) is not None and not r.error]
        if results:
            found[a] = tuple(statistics.mean(getattr(r, k) for r in results) for k in ("judge_seconds", "warm_seconds", "seconds")) + (len(results),)
    return found


def sandbox_cost(workers: int, submissions: int = 24) -> tuple[Mode, Mode, int]:
    """The trivial class graded by the pool without and with the sandbox."""
    from .autograde import autograde

    modes = []
    for sandbox in (False, True):
        with tempfile.TemporaryDirectory(prefix="grader-bench-") as tmp:
            students = trivial_course(Path(tmp), submissions)
            run = lambda: {r.student: r.scores for r in autograde(Path(tmp), TRIVIAL, students, None, workers, True, progress=False, sandbox=sandbox)}  # noqa: E731
            modes.append(timed("with the sandbox" if sandbox else "--no-sandbox", run))
    return modes[0], modes[1], submissions


# --- the cluster: LocalCluster vs the pool, and the coordinator's own cost -----------------------

TRIVIAL = "trivial"


def trivial_course(into: Path, submissions: int) -> list[str]:
    """A course with a one-cell assignment and ``submissions`` identical correct submissions."""
    from nbformat.v4 import new_code_cell, new_notebook

    meta = {"nbgrader": {"grade_id": "test_true", "grade": True, "solution": False, "locked": True, "points": 1, "schema_version": 3}}
    nb = new_notebook(cells=[new_code_cell("assert True", metadata=meta)], metadata={"kernelspec": notebooks.KERNELSPEC})
    notebooks.write(nb, into / "source" / TRIVIAL / f"{TRIVIAL}.ipynb")
    (into / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "trivial"\n')
    students = [f"student-{i:03d}" for i in range(submissions)]
    for student in students:
        notebooks.write(nb, into / "submitted" / student / TRIVIAL / f"{TRIVIAL}.ipynb")
    return students


def self_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cluster_main(assignment: str, course: Path, workers: int = 2, trivial: int = 48, log: Callable[[str], None] = print) -> int:
    """``grader benchmark --cluster``: a LocalCluster against the pool; the coordinator's cost per submission."""
    from . import gradebook
    from .autograde import autograde

    root = default_data_root(course)
    stage(root, default_mirror(course), require=True)
    walls, scores, inside = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="grader-bench-") as tmp:
        for mode, scheduler in (("pool", None), ("LocalCluster", "local")):
            where = Path(tmp) / mode
            students = demo_course(course, where, assignment)
            start = time.perf_counter()
            results = autograde(where, assignment, students, root, workers, force=True, progress=False, scheduler=scheduler)
            walls[mode] = time.perf_counter() - start
            inside[mode] = sum(r.seconds for r in results)
            scores[mode] = {s: gradebook.scores(where, assignment, s) for s in students}
    log(f"== {assignment} demo class ({len(scores['pool'])} submissions), {workers} workers")
    for mode, seconds in walls.items():
        log(f"  {mode:<14} {seconds:7.1f} s  (in the workers: {inside[mode]:.1f} s of grading, {inside[mode] / len(scores[mode]):.1f} s a submission)")
    log(f"  LocalCluster / pool: {walls['LocalCluster'] / walls['pool']:.2f}; scores identical: {scores['pool'] == scores['LocalCluster']}")
    with tempfile.TemporaryDirectory(prefix="grader-bench-") as tmp:
        students = trivial_course(Path(tmp), trivial)
        cpu, start = self_cpu(), time.perf_counter()
        results = autograde(Path(tmp), TRIVIAL, students, None, 8, force=True, progress=False, scheduler="local")
        wall, cpu = time.perf_counter() - start, self_cpu() - cpu
    per = cpu / len(results)
    log(f"== coordinator cost: {len(results)} one-cell submissions on a LocalCluster of 8 single-threaded workers")
    log(f"  wall {wall:.1f} s; coordinator CPU {cpu:.1f} s = {per * 1000:.0f} ms per submission")
    log(f"  one coordinator can drive about {3600 / per:,.0f} submissions per hour")
    log(f"  errors: {sum(bool(r.error) for r in results)}")
    return 0 if scores["pool"] == scores["LocalCluster"] else 1
