"""Which students' answers are suspiciously alike: winnowed fingerprints of normalised tokens.

For each assignment the report ranks the pairs of submissions whose answer code shares an unusual
amount of material, and shows each flagged pair side by side with the matching regions marked.

- **What is compared.** Only the answer cells of a submitted notebook: nbgrader solution cells and
  cells the release does not have (a student's own cells). Locked and test cells never count.
- **Normalised tokens.** Each cell is read with Python's ``tokenize``: every name becomes ``V``
  (keywords, builtins and attribute names of libraries stay: renaming those would change what the
  code does), every number ``N``, every string ``S``; comments, blank lines and spacing vanish.
  IPython magics are dropped. Renamed variables, changed comments and reformatted code give the
  same tokens.
- **Fingerprints.** The hashes of every run of ``K`` tokens inside one cell, winnowed (the smallest
  hash of every ``WINDOW`` consecutive ones; Schleimer, Wilkerson and Aiken, SIGMOD 2003): a match of
  ``K + WINDOW - 1`` tokens or more is always seen. Each cell is fingerprinted on its own, so the
  order of cells does not matter.
- **What does not count.** Every run of tokens found in the release notebook (its signatures, stubs
  and given code), and the fingerprints more than ``COMMON`` of the class share (the code every
  correct solution has to contain).
- **Score.** For two students, the fingerprints they share over the fingerprints of the smaller of
  the two answers. A pair is flagged from ``THRESHOLD`` with at least ``MIN_SHARED`` fingerprints in
  common. Shared fingerprints are counted with an inverted index (one sparse-as-dense product over
  the fingerprints that two or more students hold), not pair by pair.

A high score is a reason to read two notebooks, never a verdict: the side-by-side pages say what
matched, and the instructor decides.
"""

from __future__ import annotations

import builtins
import functools
import html
import io
import json
import keyword
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .normalize import normalized, notebooks_in, plain_name

K = 12
"""Tokens per fingerprinted run (the noise threshold: shorter matches are ignored)."""
WINDOW = 6
"""Winnowing window: every match of K + WINDOW - 1 tokens or more shares a fingerprint."""
COMMON = 0.5
"""Fingerprints held by more than this share of the class are discounted (code everyone writes)."""
THRESHOLD = 0.5
"""A pair is flagged from this score ..."""
MIN_SHARED = 8
"""... and this many shared fingerprints (a few lines of code, not one idiom)."""
LISTED = 0.25
"""Pairs from this score are listed in ``similarity.csv``."""
MAX_PAGES = 100
"""Side-by-side pages written per assignment (the highest-ranked flagged pairs)."""
KEPT_NAMES = frozenset(keyword.kwlist) | frozenset(dir(builtins))
"""Names kept as they are: a renamed keyword or builtin would be other code."""
MAGIC = re.compile(r"^[ \t]*[%!].*$", re.MULTILINE)
SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION[ \t]*$", re.MULTILINE | re.DOTALL)
FALLBACK = re.compile(
    r"[A-Za-z_]\w*|\d[\w.]*|\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|#[^\n]*|\S"
)
"""Tokens of a cell ``tokenize`` cannot read (a syntax error, an unclosed bracket)."""


@dataclass(frozen=True)
class Cell:
    label: str
    """The cell's grade_id, or ``cell N`` for a cell of the student's own."""
    source: str


@dataclass
class Solution:
    """One student's answer cells and their fingerprints."""

    student: str
    cells: list[Cell]
    fingerprints: set[int] = field(default_factory=set)
    """Winnowed fingerprints, the release's runs already removed."""


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    score: float
    """Shared fingerprints over those of the smaller answer (0..1)."""
    shared: int
    sizes: tuple[int, int]
    """Counted fingerprints of ``a`` and of ``b``."""

    @property
    def flagged(self) -> bool:
        return self.score >= THRESHOLD and self.shared >= MIN_SHARED


@dataclass
class Similarity:
    """The pairs of one assignment's class, ranked, and what they were computed from."""

    assignment: str
    solutions: dict[str, Solution]
    pairs: list[Pair]
    """Pairs scoring at least ``LISTED``, highest first."""
    release: set[int]
    """Hashes of every run of the release notebook's code."""
    common: set[int]
    """Fingerprints discounted as shared by most of the class."""
    skipped: dict[str, str] = field(default_factory=dict)
    """student -> why their submission was not compared."""

    @property
    def flagged(self) -> list[Pair]:
        return [p for p in self.pairs if p.flagged]

    def regions(self, pair: Pair) -> tuple[dict[int, list[tuple[int, int, int]]], dict[int, list[tuple[int, int, int]]]]:
        """The matching regions of a pair: for each student, cell index -> [(start, end, match number)],
        character offsets into the cell's source; a region of ``a`` and one of ``b`` with the same
        number share fingerprints."""
        ignored = self.release | self.common
        runs = [grams(self.solutions[s].cells) for s in (pair.a, pair.b)]
        shared = {h for h, *_ in runs[0]} & {h for h, *_ in runs[1]}
        shared -= ignored
        merged = [merge_spans([(c, s, e, h) for h, c, s, e in run if h in shared]) for run in runs]
        # Regions of a and b that share a hash are one match: number the connected groups in a's order.
        parent = list(range(len(merged[0]) + len(merged[1])))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        owner: dict[int, int] = {}
        offset = 0
        for side in merged:
            for i, (_, _, _, hashes) in enumerate(side):
                for h in hashes:
                    if h in owner:
                        parent[find(offset + i)] = find(owner[h])
                    else:
                        owner[h] = offset + i
            offset = len(merged[0])
        numbers: dict[int, int] = {}
        out: tuple[dict, dict] = ({}, {})
        offset = 0
        for side, regions in enumerate(merged):
            for i, (cell, start, end, _) in enumerate(regions):
                number = numbers.setdefault(find(offset + i), len(numbers) + 1)
                out[side].setdefault(cell, []).append((start, end, number))
            offset = len(merged[0])
        return out


# --- tokens and fingerprints ---------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def tokens(source: str) -> tuple[tuple[str, int, int], ...]:
    """The cell's normalised tokens: (token, start, end), offsets into ``source`` (cached: copies repeat cells)."""
    return tuple(read_tokens(source))


def read_tokens(source: str) -> list[tuple[str, int, int]]:
    text = MAGIC.sub(lambda m: " " * len(m.group(0)), source)
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    out: list[tuple[str, int, int]] = []
    raw: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            kind, string = tok.type, tok.string
            if kind in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER):
                continue
            start = starts[min(tok.start[0], len(starts)) - 1] + tok.start[1]
            end = starts[min(tok.end[0], len(starts)) - 1] + tok.end[1]
            if kind == tokenize.NAME:
                norm = string if string in KEPT_NAMES or library_attribute(raw) else "V"
            elif kind == tokenize.NUMBER:
                norm = "N"
            elif kind == tokenize.STRING:
                norm = "S"
            elif kind == tokenize.NEWLINE:
                norm = ";"
            elif kind == tokenize.INDENT:
                norm, start = ">", end
            elif kind == tokenize.DEDENT:
                norm, end = "<", start
            else:
                norm = string
            out.append((norm, start, end))
            raw.append(string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        out = fallback_tokens(text)
    return out


def fallback_tokens(text: str) -> list[tuple[str, int, int]]:
    """Normalised tokens by a regular expression, for a cell that is not valid Python."""
    out, raw = [], []
    for m in FALLBACK.finditer(text):
        string = m.group(0)
        if string.startswith("#"):
            continue
        if string[0].isalpha() or string[0] == "_":
            norm = string if string in KEPT_NAMES or library_attribute(raw) else "V"
        elif string[0].isdigit():
            norm = "N"
        elif string[0] in "'\"":
            norm = "S"
        else:
            norm = string
        out.append((norm, m.start(), m.end()))
        raw.append(string)
    return out


def library_attribute(before: list[str]) -> bool:
    """Whether the name that follows ``before`` (the raw tokens so far) is an attribute of something
    other than ``self``/``cls``: a library's API, which a renaming leaves alone."""
    return len(before) >= 2 and before[-1] == "." and before[-2] not in ("self", "cls")


def grams(cells: list[Cell]) -> list[tuple[int, int, int, int]]:
    """Every run of K tokens within a cell: (hash, cell index, start, end)."""
    out = []
    for index, cell in enumerate(cells):
        toks = tokens(cell.source)
        names = [t[0] for t in toks]
        for i in range(len(toks) - K + 1):
            out.append((hash(tuple(names[i : i + K])), index, toks[i][1], toks[i + K - 1][2]))
    return out


def winnow(hashes: list[int]) -> set[int]:
    """The winnowed fingerprints of one cell's run hashes: the rightmost smallest of every window."""
    if not hashes:
        return set()
    values = np.asarray(hashes, dtype=np.int64)
    if len(values) <= WINDOW:
        return {int(values.min())}
    windows = np.lib.stride_tricks.sliding_window_view(values, WINDOW)
    picked = np.arange(len(windows)) + WINDOW - 1 - np.argmin(windows[:, ::-1], axis=1)
    return set(values[np.unique(picked)].tolist())


def fingerprints(cells: list[Cell]) -> set[int]:
    """Winnowed fingerprints of the cells, each cell winnowed on its own."""
    found: dict[int, list[int]] = {}
    for h, cell, _, _ in grams(cells):
        found.setdefault(cell, []).append(h)
    return set().union(*(winnow(hs) for hs in found.values())) if found else set()


def merge_spans(spans: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, set[int]]]:
    """Overlapping (cell, start, end, hash) spans merged: (cell, start, end, hashes), in order."""
    merged: list[tuple[int, int, int, set[int]]] = []
    for cell, start, end, h in sorted(spans):
        if merged and merged[-1][0] == cell and start <= merged[-1][2]:
            last = merged[-1]
            merged[-1] = (cell, last[1], max(last[2], end), last[3] | {h})
        else:
            merged.append((cell, start, end, {h}))
    return merged


# --- the class -----------------------------------------------------------------------------------


def compare(assignment: str, answers: dict[str, list[Cell]], release: list[str], skipped: dict[str, str] | None = None) -> Similarity:
    """Fingerprint every student's answer cells and rank the pairs (``release``: the release notebook's code cells)."""
    ignored = {h for h, *_ in grams([Cell("release", s) for s in release])}
    students = sorted(answers)
    solutions = {s: Solution(s, answers[s], fingerprints(answers[s]) - ignored) for s in students}
    held: dict[int, list[int]] = {}
    for i, s in enumerate(students):
        for h in solutions[s].fingerprints:
            held.setdefault(h, []).append(i)
    cutoff = max(2.0, COMMON * len(students))
    common = {h for h, owners in held.items() if len(owners) > cutoff}
    sizes = np.array([len(solutions[s].fingerprints - common) for s in students], dtype=np.float64)
    columns = [owners for h, owners in held.items() if len(owners) >= 2 and h not in common]
    shared = np.zeros((len(students), len(students)), dtype=np.float64)
    for chunk in range(0, len(columns), 4096):  # students x fingerprints, a block at a time
        block = np.zeros((len(students), len(columns[chunk : chunk + 4096])), dtype=np.float32)
        for j, owners in enumerate(columns[chunk : chunk + 4096]):
            block[owners, j] = 1.0
        shared += block @ block.T
    smaller = np.minimum.outer(sizes, sizes)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(smaller > 0, shared / np.maximum(smaller, 1), 0.0)
    pairs = []
    for i, j in zip(*np.nonzero(np.triu(scores >= LISTED, k=1))):
        pairs.append(Pair(students[i], students[j], float(scores[i, j]), int(shared[i, j]), (int(sizes[i]), int(sizes[j]))))
    pairs.sort(key=lambda p: (-p.score, -p.shared, p.a, p.b))
    return Similarity(assignment, solutions, pairs, ignored, common, dict(skipped or {}))


def cell_source(cell: dict) -> str:
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else str(text)


def answer_cells(nb: dict, release: list[str]) -> list[Cell]:
    """The answer cells of a notebook (as JSON): solution cells, and code cells the release does not have."""
    given = {normalized(s) for s in release}
    found = []
    for index, cell in enumerate(nb.get("cells") or []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        source = cell_source(cell)
        if not source.strip():
            continue
        if meta.get("solution"):
            found.append(Cell(str(meta.get("grade_id") or f"cell {index + 1}"), source))
        elif not meta.get("grade_id") and normalized(source) not in given:
            found.append(Cell(f"cell {index + 1}", source))
    return found


def release_code(course_dir: Path, assignment: str, name: str) -> list[str]:
    """The code cells of the release notebook ``name``; where ``release/`` lacks it, the source's with
    every solution block replaced by nbgrader's stub."""
    path = course_dir / "release" / assignment / name
    if not path.is_file():
        path = course_dir / "source" / assignment / name
        stub = lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}raise NotImplementedError()"  # noqa: E731
    else:
        stub = None
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    cells = [cell_source(c) for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    return [SOLUTION.sub(stub, c) for c in cells] if stub else cells


def submitted_notebook(folder: Path, name: str, expected: list[str]) -> Path | str:
    """The student's notebook ``name`` in ``folder`` (a renamed copy counts, as ``grader.normalize`` repairs it),
    or why there is none to compare."""
    if (folder / name).is_file():
        return folder / name
    found = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*.ipynb") if p.is_file()}
    others = [n for n in notebooks_in(dict.fromkeys(found, b"")) if n not in expected]
    alike = [n for n in others if plain_name(n) == plain_name(name)]
    if len(alike) > 1:
        return f"several notebooks could be {name}"
    if alike or (len(expected) == 1 and len(others) == 1):
        return found[(alike or others)[0]]
    return f"no notebook {name}"


def read_class(course_dir: Path, assignment: str) -> tuple[dict[str, list[Cell]], list[str], dict[str, str]]:
    """Every student's answer cells from ``submitted/``, the release's code cells, and who was skipped (why)."""
    names = sorted(p.name for p in (course_dir / "source" / assignment).glob("*.ipynb"))
    release = [c for name in names for c in release_code(course_dir, assignment, name)]
    answers: dict[str, list[Cell]] = {}
    skipped: dict[str, str] = {}
    submitted = course_dir / "submitted"
    for folder in sorted(submitted.glob(f"*/{assignment}")) if submitted.is_dir() else []:
        student, cells, why = folder.parent.name, [], []
        for name in names:
            path = submitted_notebook(folder, name, names)
            if isinstance(path, str):
                why.append(path)
                continue
            try:
                nb = json.loads(path.read_bytes().decode("utf-8-sig"))
            except (OSError, ValueError):
                why.append(f"{name} is not a notebook")
                continue
            cells += answer_cells(nb if isinstance(nb, dict) else {}, release)
        if cells:
            answers[student] = cells
        else:
            skipped[student] = "; ".join(why) or "no answer cells"
    return answers, release, skipped


def analyse(course_dir: Path, assignment: str) -> Similarity:
    """The similarity of the class's submissions of ``assignment``."""
    answers, release, skipped = read_class(Path(course_dir), assignment)
    return compare(assignment, answers, release, skipped)


# --- pages ---------------------------------------------------------------------------------------

COLOURS = ("#ffe08a", "#b9e6ff", "#ffc4d6", "#c8f0c0", "#e3d1ff", "#ffd8b0")
PAGE_STYLE = (
    "<style>body{font-family:sans-serif;margin:1.5em}.sides{display:grid;grid-template-columns:1fr 1fr;gap:1.2em}"
    "pre{background:#fafafa;border:1px solid #ddd;padding:.5em;font-size:12px;white-space:pre-wrap;overflow-wrap:anywhere}"
    "h3{font-size:14px;margin:.8em 0 .2em}mark{border-radius:2px;padding:0}"
    + "".join(f".m{i}{{background:{c}}}" for i, c in enumerate(COLOURS))
    + "</style>"
)


def marked(source: str, regions: list[tuple[int, int, int]]) -> str:
    """The source as HTML with each region in a ``<mark>`` coloured and titled by its match number."""
    out, at = [], 0
    for start, end, number in sorted(regions):
        start = max(start, at)
        if start >= end:
            continue
        out.append(html.escape(source[at:start]))
        out.append(f"<mark class='m{(number - 1) % len(COLOURS)}' title='match {number}'>{html.escape(source[start:end])}</mark>")
        at = end
    out.append(html.escape(source[at:]))
    return "".join(out)


def side_by_side(similarity: Similarity, pair: Pair, rank: int) -> str:
    """The HTML page of one pair: each student's answer cells, the matching regions marked."""
    e = html.escape
    regions = similarity.regions(pair)
    columns = []
    for side, student in enumerate((pair.a, pair.b)):
        cells = similarity.solutions[student].cells
        parts = [f"<h2>{e(student)}</h2>"]
        for index, cell in enumerate(cells):
            parts.append(f"<h3>{e(cell.label)}</h3><pre>{marked(cell.source, regions[side].get(index, []))}</pre>")
        columns.append("<div>" + "".join(parts) + "</div>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(similarity.assignment)}: {e(pair.a)} and {e(pair.b)}</title>"
        f"{PAGE_STYLE}</head><body><p><a href='../index.html'>&larr; class report</a></p>"
        f"<h1>{e(similarity.assignment)}: pair {rank}, {e(pair.a)} and {e(pair.b)}</h1>"
        f"<p>Similarity <b>{pair.score:.0%}</b>: {pair.shared} fingerprints in common, of {pair.sizes[0]} and {pair.sizes[1]}. "
        "Marked: code the two answers share, after renaming, comments and layout are set aside, and without the release's "
        "own code or what most of the class wrote; the same colour and number (hover) on both sides is one match. "
        "A reason to read both notebooks, not a verdict.</p>"
        f"<div class='sides'>{''.join(columns)}</div></body></html>"
    )


def write_pages(similarity: Similarity, folder: Path) -> dict[Pair, str]:
    """The side-by-side pages of the highest-ranked flagged pairs under ``folder``; pair -> page path
    relative to ``folder.parent``. Pages of an earlier run are removed first."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("pair-*.html"):
        old.unlink()
    pages = {}
    for rank, pair in enumerate(similarity.flagged[:MAX_PAGES], 1):
        name = f"pair-{rank}.html"
        (folder / name).write_text(side_by_side(similarity, pair, rank), encoding="utf-8")
        pages[pair] = f"{folder.name}/{name}"
    return pages
