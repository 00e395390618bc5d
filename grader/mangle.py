"""Submissions as editors and students really leave them, built in code from a notebook.

Each function takes a student notebook (nbformat 4) and returns what a student's tools would
make of it: saved by Google Colab, nbgrader metadata stripped, test cells deleted, duplicated or
moved, an answer split over two cells or two answers merged into one. The demo class and the
tests use them to prove that ``grader.normalize`` grades such a submission as what it is.
"""

from __future__ import annotations

import copy
import json

from nbformat import NotebookNode
from nbformat.v4.nbbase import random_cell_id

from .notebooks import is_test

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def answered(source: NotebookNode, release: NotebookNode) -> NotebookNode:
    """The release notebook with each answer cell holding the source's solution, markers removed:
    what a student who wrote the reference solution submits."""
    solutions = {grade_id(c): c.source for c in source.cells if is_answer(c)}
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        if is_answer(cell) and grade_id(cell) in solutions:
            lines = solutions[grade_id(cell)].splitlines()
            cell.source = "\n".join(line for line in lines if line.strip() not in SOLUTION_MARKERS)
    return nb


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def is_answer(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def colab_saved(nb: NotebookNode) -> bytes:
    """The notebook as Colab saves it: nbformat 4.0, cell ids moved into metadata, Colab's own
    metadata keys, outputs kept, nbgrader's deletable/editable flags dropped, sources as lists."""
    data = json.loads(json.dumps(nb))
    data["nbformat_minor"] = 0
    data["metadata"] = {
        "colab": {"provenance": [], "name": "notebook.ipynb"},
        "kernelspec": {"name": "python3", "display_name": "Python 3"},
        "language_info": {"name": "python"},
        "accelerator": "GPU",
    }
    for n, cell in enumerate(data["cells"]):
        meta = cell["metadata"]
        meta["id"] = cell.pop("id", f"cell{n}")
        meta.pop("deletable", None), meta.pop("editable", None)
        cell["source"] = cell["source"].splitlines(keepends=True)
        if cell["cell_type"] == "code":
            meta["colab"] = {"base_uri": "https://localhost:8080/"}
            meta["outputId"] = f"{n:08x}-0000-4000-8000-000000000000"
            meta["executionInfo"] = {"status": "ok", "timestamp": 1767225600000 + n, "user_tz": 0, "elapsed": 12}
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["ran in Colab\n"]}]
            cell["execution_count"] = n + 1
    return json.dumps(data, indent=2).encode()


def stripped(nb: NotebookNode) -> NotebookNode:
    """Every cell's nbgrader metadata removed, as some editors do when they save."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    return nb


def tests_rearranged(nb: NotebookNode) -> NotebookNode:
    """The first test cell deleted, the second duplicated at the end, the last moved to the top,
    and every remaining test cell's asserts replaced by ``pass``."""
    nb = copy.deepcopy(nb)
    tests = [c for c in nb.cells if is_test(c)]
    if len(tests) < 3:
        raise ValueError("tests_rearranged needs at least three test cells")
    first, second, last = tests[0], tests[1], tests[-1]
    nb.cells = [c for c in nb.cells if c is not first and c is not last]
    nb.cells.insert(0, last)
    duplicate = copy.deepcopy(second)
    duplicate.id = random_cell_id()
    nb.cells.append(duplicate)
    for cell in tests[2:-1]:
        cell.source = "pass  # my version of the checks"
    return nb


def answers_split_and_merged(nb: NotebookNode) -> NotebookNode:
    """The first answer cell split in two after its first line; the last two answer cells merged
    into the earlier one (the later one deleted)."""
    nb = copy.deepcopy(nb)
    answers = [c for c in nb.cells if is_answer(c) and c.cell_type == "code"]
    if len(answers) < 3:
        raise ValueError("answers_split_and_merged needs at least three answer cells")
    first = answers[0]
    head, _, tail = first.source.partition("\n\n")
    if tail:
        first.source = head
        split = copy.deepcopy(first)
        split.metadata.pop("nbgrader", None)
        split.id = random_cell_id()
        split.source = tail
        nb.cells.insert(nb.cells.index(first) + 1, split)
    earlier, later = answers[-2], answers[-1]
    earlier.source = earlier.source + "\n\n" + later.source
    nb.cells.remove(later)
    return nb
