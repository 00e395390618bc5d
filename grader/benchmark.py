"""Benchmark the project's reference solution: test accuracy and training time over several seeds.

Runs the source notebook's own pipeline cells (not a copy of them) once per seed, with only the
seed of the final training changed, and reports each run and the mean and minimum. Speed and
accuracy targets are measured here and reported, never asserted by the test suite.
"""

from __future__ import annotations

import copy
import json
import statistics
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from nbformat.v4 import new_code_cell

from . import notebooks
from .data import stage
from .paths import default_data_root, default_mirror, source_notebook
from .validate import execute

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


def measure(seed: int, data_root: Path) -> Measurement:
    """One reference run: train with ``seed``, evaluate the restored best model on the test set."""
    nb = reference_run(notebooks.read(source_notebook(ASSIGNMENT)), seed)
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


def main(seeds: int = 3, log: Callable[[str], None] = print) -> int:
    """``grader benchmark``: the reference model's test accuracy and training time over ``seeds`` seeds."""
    root = default_data_root()
    stage(root, default_mirror(), require=True)
    results = []
    for seed in range(seeds):
        m = measure(seed, root)
        results.append(m)
        log(f"seed {m.seed}: test accuracy {m.test_accuracy:.2%}, {m.epochs} epochs in {m.training_seconds:.1f} s")
    accuracies = [m.test_accuracy for m in results]
    seconds = [m.training_seconds for m in results]
    log(
        f"{ASSIGNMENT} reference over {seeds} seeds: test accuracy mean {statistics.mean(accuracies):.2%}, "
        f"min {min(accuracies):.2%}; training seconds mean {statistics.mean(seconds):.1f}, max {max(seconds):.1f}"
    )
    return 0
