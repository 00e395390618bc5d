"""Repair a submission as students really submit it, before nbgrader sees it.

Students open the release notebook in Colab, Jupyter or VS Code, save copies, rename files and
delete, duplicate, split or merge cells. nbgrader grades a notebook only under its release name,
and finds answers and tests only by their ``nbgrader`` cell metadata. This module puts a
submission back into the shape nbgrader expects, keeping the student's code as written, and says
in plain words what it repaired:

- a renamed notebook ("Copy of X.ipynb", "X (1).ipynb", "X-Copy1.ipynb", another case) gets its
  release name back; several candidates are an error that names them;
- a notebook that is missing, not JSON, or empty is graded as a notebook without cells: 0, and a note says why;
- Colab's format (nbformat 4.0, cell ids in metadata, its own metadata keys) becomes nbformat 4.5;
- where the nbgrader metadata is missing, altered, or the cells are deleted, duplicated, moved,
  split or merged, the notebook is rebuilt on the release's cells: every locked and test cell as
  the release has it, in the release's order, and each answer cell holding the student's code
  that stands where that answer belongs (matched by content and order).

``repair(files, release)`` is pure: bytes in, bytes and notes out.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import nbformat
import nbformat.v4
from nbformat.v4.nbbase import random_cell_id

COLAB_CELL_KEYS = ("colab", "id", "outputId", "executionInfo", "colab_type")
COPY_NAME = re.compile(
    r"^(?:copy of\s+)*(?P<stem>.*?)(?:[\s_-]*(?:\(\d+\)|copy\d*|\d+))*$",
    re.IGNORECASE,
)
"""'Copy of X', 'X (1)', 'X-Copy1', 'X copy', 'X_copy2', 'X 2' -> 'X'."""
FLAGS = ("solution", "grade", "locked", "task")
SIMILAR = 0.6
"""A student cell this similar to a locked or test cell (and less to any answer) is an edited copy of it."""


NOTHING = nbformat.writes(nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})).encode()
"""What stands in for a missing or unreadable notebook: no cells, so nothing of the student's runs."""


class NotebookNameError(ValueError):
    """The submission holds several notebooks that could be the one the assignment asks for."""


@dataclass
class Repaired:
    files: dict[str, bytes]
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Notebooks graded as ``NOTHING`` (missing or unreadable): every test of theirs scores 0."""


def plain_name(filename: str) -> str:
    """A notebook name without copy markers, case, spaces, dashes or underscores."""
    stem = PurePosixPath(filename).name
    stem = stem[: -len(".ipynb")] if stem.lower().endswith(".ipynb") else stem
    stem = COPY_NAME.match(stem.strip()).group("stem")
    return re.sub(r"[\s_-]+", "", stem).lower()


def notebooks_in(files: dict[str, bytes]) -> list[str]:
    """Submitted notebooks, checkpoints left out."""
    return sorted(n for n in files if n.lower().endswith(".ipynb") and ".ipynb_checkpoints" not in n.split("/"))


def rename(files: dict[str, bytes], expected: list[str]) -> Repaired:
    """Give each expected notebook its release name when the student saved it under another."""
    files, notes = dict(files), []
    for name in expected:
        if name in files:
            continue
        others = [n for n in notebooks_in(files) if n not in expected]
        alike = [n for n in others if plain_name(n) == plain_name(name)]
        if len(alike) > 1:
            raise NotebookNameError(f"several notebooks could be {name}: {', '.join(alike)}; submit only one")
        if not alike and len(expected) == 1 and len(others) > 1:
            raise NotebookNameError(f"no {name}, and several other notebooks: {', '.join(others)}; submit only one")
        candidates = alike or (others if len(expected) == 1 else [])
        if candidates:
            files[name] = files.pop(candidates[0])
            notes.append(f"notebook {candidates[0]!r} graded as {name}")
        else:
            notes.append(f"no notebook {name} in the submission: scored 0")
    return Repaired(files, notes)


def read(raw: bytes, name: str):
    """The notebook as nbformat 4, or ValueError saying why it is not one."""
    if not raw.strip():
        raise ValueError(f"{name} is empty")
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{name} is not a notebook (not valid JSON: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells", data.get("worksheets")), list):
        raise ValueError(f"{name} is not a notebook (no cells)")
    try:
        return nbformat.reads(json.dumps(data), as_version=4)
    except Exception as exc:  # nbformat's many reader errors
        raise ValueError(f"{name} is not a notebook nbformat can read ({type(exc).__name__}: {exc})") from None


def source(cell) -> str:
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else str(text)


def normalized(text: str) -> str:
    """Source compared across editors: line endings and trailing space ignored."""
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").strip().splitlines())


def grade_id(cell) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) else None


def is_answer(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def strip_colab(nb) -> list[str]:
    """nbformat 4.5 with a cell id on every cell; Colab's own metadata removed."""
    notes = []
    if nb.nbformat_minor < 5 or any("colab" in c.metadata or "id" in c.metadata for c in nb.cells):
        notes.append(f"saved as nbformat {nb.nbformat}.{nb.nbformat_minor}{' by Colab' if 'colab' in nb.metadata else ''}: converted")
    nb.nbformat_minor = max(nb.nbformat_minor, 5)
    nb.metadata.pop("colab", None)
    seen = set()
    for cell in nb.cells:
        wanted = cell.get("id") or cell.metadata.get("id")
        for key in COLAB_CELL_KEYS:
            cell.metadata.pop(key, None)
        if not isinstance(wanted, str) or not re.fullmatch(r"[a-zA-Z0-9-_]{1,64}", wanted) or wanted in seen:
            wanted = random_cell_id()
        cell.id = wanted
        seen.add(wanted)
        if cell.cell_type == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
    return notes


def intact(nb, release) -> bool:
    """Every graded or locked release cell is in the notebook once, in order, with its flags and type."""
    wanted = [(grade_id(c), c.cell_type, [c.metadata["nbgrader"].get(f) for f in FLAGS]) for c in release.cells if grade_id(c)]
    have = [
        (grade_id(c), c.cell_type, [c.metadata["nbgrader"].get(f) for f in FLAGS])
        for c in nb.cells
        if grade_id(c)
    ]
    return have == wanted


def similarity(student: str, released: str) -> float:
    """How much a student cell is a release cell: their likeness, or how much of the release text it keeps."""
    a, b = normalized(student), normalized(released)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    kept = sum(block.size for block in matcher.get_matching_blocks()) / len(b) if b else 0.0
    return max(matcher.ratio(), kept)


def assign(parts: list, answers: list) -> list[int]:
    """For each student cell, the index of the answer cell it belongs to: in order, most alike overall."""
    n, k = len(parts), len(answers)
    score = [[similarity(source(p), source(a)) for a in answers] for p in parts]
    # best[i][j]: best total for parts[:i+1] with part i in answer j (assignments never go back).
    best = [[0.0] * k for _ in range(n)]
    back = [[0] * k for _ in range(n)]
    for j in range(k):
        best[0][j] = score[0][j]
    for i in range(1, n):
        for j in range(k):
            prev = max(range(j + 1), key=lambda p: best[i - 1][p])
            best[i][j], back[i][j] = best[i - 1][prev] + score[i][j], prev
    j = max(range(k), key=lambda q: best[n - 1][q])
    out = [0] * n
    for i in range(n - 1, -1, -1):
        out[i] = j
        j = back[i][j]
    return out


def rebuild(nb, release) -> list[str]:
    """Lay the student's cells onto the release's cells (see the module's docstring); return notes.

    Cells that are the release's by grade_id or exact text anchor the two sequences (their longest
    common subsequence). Between two anchors, each remaining student cell is a moved or edited copy
    of a locked or test cell (dropped: the release's runs at its place), a student's version of a
    free cell, or code for the answer cells there (assigned in order, by likeness to each stub);
    code where the release has no answer cell is kept where it stood.
    """
    r_cells, s_cells = release.cells, nb.cells
    by_id = {grade_id(c): i for i, c in enumerate(r_cells) if grade_id(c)}
    fixed_by_source = {normalized(source(c)): i for i, c in enumerate(r_cells) if not is_answer(c) and normalized(source(c))}

    def release_index(cell) -> int | None:
        """The release cell a student cell is, by its grade_id or, for a locked or free cell, its text."""
        gid = grade_id(cell)
        if gid in by_id and r_cells[by_id[gid]].cell_type == cell.cell_type:
            return by_id[gid]
        return fixed_by_source.get(normalized(source(cell)))

    s_index = [release_index(c) for c in s_cells]
    matcher = difflib.SequenceMatcher(None, list(range(len(r_cells))), [-1 - j if i is None else i for j, i in enumerate(s_index)], autojunk=False)
    pairs = [(a + d, b + d) for a, b, size in matcher.get_matching_blocks() for d in range(size)]

    chosen: dict[int, list] = {}  # release index -> the student's cells that stand for it
    extras: dict[int, list] = {}  # release index -> the student's own cells that go before it
    copies = set()
    for r, s in pairs:
        chosen[r] = [s_cells[s]]
    bounds = [(-1, -1), *pairs, (len(r_cells), len(s_cells))]
    for (r0, s0), (r1, s1) in zip(bounds, bounds[1:]):
        gap = [r for r in range(r0 + 1, r1)]
        own = []
        for s in range(s0 + 1, s1):
            cell = s_cells[s]
            if s_index[s] is not None and not is_answer(r_cells[s_index[s]]):
                copies.add(s_index[s])  # a moved or duplicated copy of a release cell
                continue
            fixed = [r for r in gap if not is_answer(r_cells[r]) and r_cells[r].cell_type == cell.cell_type and r not in chosen]
            answers = [r for r in gap if is_answer(r_cells[r]) and r_cells[r].cell_type == cell.cell_type]
            alike, r = max(((similarity(source(cell), source(r_cells[r])), r) for r in fixed), default=(0.0, None))
            if r is not None and alike >= SIMILAR and alike > max((similarity(source(cell), source(r_cells[a])) for a in answers), default=0.0):
                if grade_id(r_cells[r]):
                    copies.add(r)  # an edited copy of a locked or test cell: the release's runs
                else:
                    chosen[r] = [cell]  # the student's version of a free cell
                continue
            own.append(cell)
        for kind in ("code", "markdown", "raw"):
            parts = [c for c in own if c.cell_type == kind]
            answers = [r for r in gap if is_answer(r_cells[r]) and r_cells[r].cell_type == kind]
            if parts and answers:
                for part, j in zip(parts, assign(parts, [r_cells[r] for r in answers])):
                    chosen.setdefault(answers[j], []).append(part)
            elif parts:
                extras.setdefault(gap[0] if gap else r1, []).extend(parts)
    cells, restored, split, empty = [], [], [], []
    for r, cell in enumerate(r_cells):
        cells += [copy.deepcopy(c) for c in extras.get(r, [])]
        mine = chosen.get(r)
        if is_answer(cell):
            out = copy.deepcopy(cell)
            out.source = "\n\n".join(source(c) for c in mine) if mine else "# (no code of its own was submitted for this answer cell)"
            split += [grade_id(cell)] if mine and len(mine) > 1 else []
            empty += [] if mine else [grade_id(cell)]
        elif grade_id(cell):
            out = copy.deepcopy(cell)  # locked and test cells as the release has them
            restored += [] if mine or r in copies else [grade_id(cell)]
        elif mine:
            out = copy.deepcopy(cell)
            out.source = source(mine[0])
        else:
            continue  # a free cell the student deleted stays deleted
        cells.append(out)
    cells += [copy.deepcopy(c) for c in extras.get(len(r_cells), [])]
    seen = set()
    for cell in cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if cell.get("id") in seen:
            cell.id = random_cell_id()
        seen.add(cell.id)
    nb.cells = cells
    notes = ["nbgrader cell metadata missing or altered, or cells moved: cells matched to the release by content and order"]
    if restored:
        notes.append(f"locked or test cells missing from the notebook restored: {', '.join(restored)}")
    moved = sorted(grade_id(r_cells[r]) for r in copies if grade_id(r_cells[r]))
    if moved:
        notes.append(f"moved, duplicated or edited copies of locked cells run as released: {', '.join(moved)}")
    if split:
        notes.append(f"answers spread over several cells, graded together: {', '.join(split)}")
    if empty:
        notes.append(f"answer cells with no code of their own (merged into another, or deleted): {', '.join(empty)}")
    return notes


def repair_notebook(raw: bytes, name: str, release_raw: bytes | None) -> tuple[bytes | None, list[str]]:
    """The repaired notebook (None: not a notebook; scored 0) and what was repaired."""
    try:
        nb = read(raw, name)
    except ValueError as exc:
        return None, [f"{exc}: scored 0"]
    notes = strip_colab(nb)
    if release_raw is not None:
        release = nbformat.reads(release_raw.decode(), as_version=4)
        if not intact(nb, release):
            notes += rebuild(nb, release)
    if not notes:
        return raw, []
    return nbformat.writes(nb).encode(), notes


def repair(files: dict[str, bytes], release: dict[str, bytes]) -> Repaired:
    """Repair every notebook the assignment expects (``release``: its release notebooks by name)."""
    renamed = rename(files, sorted(release))
    files, notes = renamed.files, list(renamed.notes)
    for name in sorted(release):
        if name not in files:
            continue
        fixed, found = repair_notebook(files[name], name, release.get(name))
        if fixed is not None:
            files[name] = fixed
        else:
            files.pop(name)
        notes += [f"{name}: {n}" for n in found]
    missing = [name for name in sorted(release) if name not in files]
    files.update(dict.fromkeys(missing, NOTHING))
    return Repaired(files, notes, missing)
