"""Notebook helpers shared by the other modules: read, write, find cells, clean."""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
from nbformat import NotebookNode

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
"""Canonical kernelspec: the one Colab writes, with the language nbgrader records."""
KEPT_CELL_METADATA = ("nbgrader", "deletable", "editable", "tags")
"""Cell metadata ``clean`` keeps; nbgrader needs the first three, lessons may use tags."""
KEPT_NB_METADATA = ("accelerator", "colab", "kernelspec", "language_info")
"""Notebook metadata ``clean`` keeps: ``colab`` names the notebook in Colab (and ``colab.gpuType`` the GPU),
``accelerator: GPU`` makes Colab open it on a GPU runtime (gpu-training, the project)."""


def read(path: Path) -> NotebookNode:
    """Read a notebook as nbformat v4."""
    return nbformat.read(str(path), as_version=4)


def write(nb: NotebookNode, path: Path) -> None:
    """Write a notebook (nbformat's canonical JSON: 1-space indent, sorted keys)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def nbgrader_meta(cell: NotebookNode) -> dict:
    """The cell's ``nbgrader`` metadata, or an empty dict."""
    return cell.get("metadata", {}).get("nbgrader", {})


def grade_id(cell: NotebookNode) -> str | None:
    """The cell's nbgrader ``grade_id``, if any."""
    return nbgrader_meta(cell).get("grade_id")


def is_solution(cell: NotebookNode) -> bool:
    """Whether nbgrader treats the cell as an answer (solution) cell."""
    return bool(nbgrader_meta(cell).get("solution"))


def is_test(cell: NotebookNode) -> bool:
    """Whether the cell is an autograded test cell (graded code, not a solution)."""
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def points(cell: NotebookNode) -> float:
    """Points of a graded cell (0 for ungraded cells)."""
    meta = nbgrader_meta(cell)
    return float(meta.get("points", 0)) if meta.get("grade") else 0.0


def cells_by_grade_id(nb: NotebookNode) -> dict[str, NotebookNode]:
    """Cells that carry a grade_id, keyed by it (in notebook order)."""
    return {gid: cell for cell in nb.cells if (gid := grade_id(cell))}


def test_points(nb: NotebookNode) -> dict[str, float]:
    """``{grade_id: points}`` of the autograded test cells."""
    return {gid: points(cell) for gid, cell in cells_by_grade_id(nb).items() if is_test(cell)}


def graded_points(nb: NotebookNode) -> dict[str, float]:
    """``{grade_id: points}`` of every graded cell (tests and manually graded answers)."""
    return {gid: points(c) for gid, c in cells_by_grade_id(nb).items() if nbgrader_meta(c).get("grade")}


def clean_cell(cell: NotebookNode) -> NotebookNode:
    """A copy of the cell without outputs, execution count or unknown metadata."""
    cell = copy.deepcopy(cell)
    cell.metadata = NotebookNode({k: v for k, v in cell.get("metadata", {}).items() if k in KEPT_CELL_METADATA})
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    return cell


def clean(nb: NotebookNode) -> NotebookNode:
    """A copy of the notebook with outputs, counts and stray metadata gone, kernelspec canonical."""
    out = copy.deepcopy(nb)
    out.cells = [clean_cell(c) for c in nb.cells]
    meta = {k: v for k, v in nb.get("metadata", {}).items() if k in KEPT_NB_METADATA}
    meta["kernelspec"] = dict(KERNELSPEC)
    meta["language_info"] = {"name": "python"}
    out.metadata = NotebookNode(meta)
    return out


def is_clean(nb: NotebookNode) -> bool:
    """Whether ``clean`` would leave the notebook unchanged."""
    return clean(nb) == nb


def dirt(nb: NotebookNode) -> list[str]:
    """What ``clean`` would remove, one line per cell or notebook field."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if clean_cell(cell) != cell:
            problems.append(f"cell {i} ({grade_id(cell) or cell.cell_type}): outputs, count or metadata")
    if clean(nb).metadata != nb.get("metadata"):
        problems.append("notebook metadata (kernelspec / language_info / extra keys)")
    return problems
