"""The similarity report finds every disguised copy and flags no independent solution.

Per lesson the class is the reference solution and the independent solutions of
``tests/similar/<lesson>/`` (each written from the release notebook's text alone), plus disguised
copies of each made here: renamed, reordered, re-commented, one function rewritten, and all four at
once. Every copy must be flagged with the solution it was made from; no pair of different
solutions (or of copies of different solutions) may be.
"""

from __future__ import annotations

import ast
import builtins
import copy
import io
import json
import keyword
import re
import shutil
import tokenize
from pathlib import Path

import pytest

from grader import notebooks, similarity
from grader.paths import release_notebook, source_notebook

SIMILAR = Path(__file__).parent / "similar"
MARK = re.compile(r"^# %% (\S+)\n", re.MULTILINE)
DISGUISES = ("renamed", "reordered", "recommented", "rewritten", "all")
WORDS = ["alpha", "bravo", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike"]


def solutions(lesson: str) -> dict[str, dict[str, str]]:
    """student -> grade_id -> answer: the reference (the source's solutions) and every file of ``tests/similar/<lesson>/``."""
    found = {"reference": reference(lesson)}
    for path in sorted((SIMILAR / lesson).glob("*.py")):
        parts = MARK.split(path.read_text())
        found[path.stem] = {gid: text.strip("\n") + "\n" for gid, text in zip(parts[1::2], parts[2::2])}
    return found


def reference(lesson: str) -> dict[str, str]:
    """The source notebook's answer cells as a student submits them: the solution markers gone."""
    nb = notebooks.read(source_notebook(lesson))
    return {
        notebooks.grade_id(c): "\n".join(line for line in c.source.splitlines() if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
        for c in nb.cells
        if notebooks.is_solution(c)
    }


def release_names(lesson: str) -> set[str]:
    """Every identifier of the release notebook: names a copy must keep for the tests to find them."""
    nb = notebooks.read(release_notebook(lesson))
    return {m for c in nb.cells if c.cell_type == "code" for m in re.findall(r"[A-Za-z_]\w*", c.source)}


# --- disguises ---------------------------------------------------------------------------------------


def renamed(answers: dict[str, str], keep: set[str]) -> dict[str, str]:
    """Every name the student chose (variables, parameters, helpers, ``self.`` attributes) renamed consistently."""
    chosen: dict[str, str] = {}
    out = {}
    for gid, source in answers.items():
        toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
        lines = source.splitlines(keepends=True)
        edits = []
        for i, tok in enumerate(toks):
            if tok.type != tokenize.NAME or tok.string in keep or keyword.iskeyword(tok.string) or tok.string in dir(builtins):
                continue
            after_dot = i > 0 and toks[i - 1].string == "."
            if after_dot and not (i > 1 and toks[i - 2].string == "self"):
                continue
            new = chosen.setdefault(tok.string, f"{WORDS[len(chosen) % len(WORDS)]}_{len(chosen)}")
            edits.append((tok.start, tok.end, new))
        for (row, col), (_, end), new in sorted(edits, reverse=True):
            line = lines[row - 1]
            lines[row - 1] = line[:col] + new + line[end:]
        out[gid] = "".join(lines)
    return out


def top_level_blocks(source: str) -> list[str]:
    """The cell cut before each top-level def or class (with its decorators)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    cuts = [0] + [min([n.lineno, *(d.lineno for d in n.decorator_list)]) - 1 for n in tree.body[1:] if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    cuts = sorted(set(cuts))
    return ["".join(lines[a:b]).strip("\n") + "\n" for a, b in zip(cuts, cuts[1:] + [len(lines)])]


def reordered(answers: dict[str, str]) -> dict[str, str]:
    """The answer cells in reverse order (see ``notebook``), and the functions of each cell in reverse order
    where the cell only defines functions and classes."""
    out = {}
    for gid, source in reversed(list(answers.items())):
        blocks = top_level_blocks(source)
        defines_only = all(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in ast.parse(source).body)
        out[gid] = "\n\n".join(reversed(blocks)) if defines_only else source
    return out


def recommented(answers: dict[str, str]) -> dict[str, str]:
    """Comments and docstrings gone, new comments added, indentation, spacing and blank lines changed."""
    out = {}
    for gid, source in answers.items():
        kept = []
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                kept.append((tok.start, tok.end))
        lines = source.splitlines()
        for (row, col), _ in sorted(kept, reverse=True):
            lines[row - 1] = lines[row - 1][:col].rstrip()
        text = "\n".join(lines)
        text = re.sub(r'^(\s*)"""[^"]*"""\n', "", text, flags=re.MULTILINE)
        result = []
        for n, line in enumerate(text.splitlines()):
            indent = len(line) - len(line.lstrip(" "))
            body = line.strip()
            if not body:
                continue
            body = re.sub(r", (?=\w)", " ,  ", body) if not body.startswith(("#", "print", "f\"")) and '"' not in body and "'" not in body else body
            new_indent = "  " * (indent // 4) + " " * (indent % 4)
            if n % 4 == 0:
                result.append(f"{new_indent}# my own notes, line {n}")
            result.append(new_indent + body)
            if n % 5 == 4 and not body.endswith((",", "(", "[", "{", "\\")):
                result.append("")
        out[gid] = "\n".join(result) + "\n"
    return out


def functions_of(answers: dict[str, str]) -> dict[str, tuple[str, str]]:
    """function name -> (grade_id, source) of the top-level functions of the answers."""
    found = {}
    for gid, source in answers.items():
        tree = ast.parse(source)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                found[node.name] = (gid, ast.get_source_segment(source, node))
    return found


def rewritten(answers: dict[str, str], other: dict[str, str]) -> dict[str, str]:
    """The longest function the other solution also writes, replaced by the other solution's version."""
    mine, theirs = functions_of(answers), functions_of(other)
    name = max((n for n in mine if n in theirs), key=lambda n: len(mine[n][1]))
    gid, text = mine[name]
    out = dict(answers)
    out[gid] = answers[gid].replace(text, theirs[name][1])
    assert out[gid] != answers[gid], name
    return out


def disguised(kind: str, answers: dict[str, str], other: dict[str, str], keep: set[str]) -> dict[str, str]:
    if kind == "renamed":
        return renamed(answers, keep)
    if kind == "reordered":
        return reordered(answers)
    if kind == "recommented":
        return recommented(answers)
    if kind == "rewritten":
        return rewritten(answers, other)
    return reordered(recommented(renamed(rewritten(answers, other), keep)))


# --- the class ------------------------------------------------------------------------------------


def notebook(lesson: str, answers: dict[str, str]) -> dict:
    """The release notebook with the answers in their cells; answer cells given out of the release's
    order are moved to the end of the notebook in that order (a student's rearranging)."""
    nb = json.loads(release_notebook(lesson).read_text())
    by_gid = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id"): c for c in nb["cells"]}
    order = [g for g in by_gid if g in answers]
    for gid, text in answers.items():
        by_gid[gid]["source"] = text
    if list(answers) != order:
        moved = [by_gid[g] for g in answers]
        nb["cells"] = [c for c in nb["cells"] if c not in moved] + moved
    return nb


def make_class(lesson: str, course: Path, with_copies: bool = True) -> dict[str, set[str]]:
    """Submit the lesson's solutions (and their disguised copies) into ``course``; student -> the solutions
    its code came from: its own, and for a copy with a rewritten function, the one that function comes from."""
    for given in (source_notebook(lesson), release_notebook(lesson)):
        target = course / given.parent.parent.name / lesson
        target.mkdir(parents=True)
        shutil.copy(given, target)
    bases = solutions(lesson)
    keep = release_names(lesson)
    family = {}
    names = list(bases)
    for i, (student, answers) in enumerate(bases.items()):
        family[student] = {student}
        submit(course, lesson, student, notebook(lesson, answers))
        if not with_copies:
            continue
        donor = names[(i + 1) % len(names)]
        other = bases[donor]
        for kind in DISGUISES:
            copy_id = f"{student}--{kind}"
            family[copy_id] = {student, donor} if kind in ("rewritten", "all") else {student}
            submit(course, lesson, copy_id, notebook(lesson, disguised(kind, copy.deepcopy(answers), other, keep)))
    return family


def submit(course: Path, lesson: str, student: str, nb: dict) -> None:
    path = course / "submitted" / student / lesson / f"{lesson}.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(nb))


def test_every_disguised_copy_is_found_and_no_independent_pair_is_flagged(lesson: str, tmp_path: Path) -> None:
    family = make_class(lesson, tmp_path)
    assert len(set.union(*family.values())) >= 4, "the reference and at least three independent solutions"
    found = similarity.analyse(tmp_path, lesson)
    assert set(found.solutions) == set(family), found.skipped
    flagged = {frozenset((p.a, p.b)) for p in found.flagged}
    copies = {frozenset((s, s.split("--")[0])) for s in family if "--" in s}
    missed = copies - flagged
    # Independent: two submissions none of whose code comes from the same solution.
    false_alarms = {pair for pair in flagged if not set.intersection(*(family[s] for s in pair))}
    scores = {frozenset((p.a, p.b)): p.score for p in found.pairs}
    assert not missed, f"copies not found: {sorted(map(sorted, missed))}"
    assert not false_alarms, f"independent pairs flagged: {[(sorted(p), round(scores[p], 2)) for p in false_alarms]}"


def test_independent_solutions_alone_are_not_flagged(lesson: str, tmp_path: Path) -> None:
    make_class(lesson, tmp_path, with_copies=False)
    found = similarity.analyse(tmp_path, lesson)
    assert len(found.solutions) >= 4
    assert found.flagged == [], [(p.a, p.b, round(p.score, 2)) for p in found.flagged]


def test_names_comments_layout_and_cell_order_do_not_change_the_fingerprints() -> None:
    answers = solutions("saving-and-loading")["amara"]
    keep = release_names("saving-and-loading")
    cells = lambda a: [similarity.Cell(g, s) for g, s in a.items()]  # noqa: E731
    original = similarity.fingerprints(cells(answers))
    assert similarity.fingerprints(cells(renamed(answers, keep))) == original
    assert similarity.fingerprints(cells(recommented(answers))) == original
    assert similarity.fingerprints(cells(dict(reversed(list(answers.items()))))) == original


def test_the_release_and_stubs_count_for_nothing(tmp_path: Path) -> None:
    lesson = "saving-and-loading"
    make_class(lesson, tmp_path, with_copies=False)
    blank = json.loads(release_notebook(lesson).read_text())
    for student in ("blank-1", "blank-2"):
        submit(tmp_path, lesson, student, blank)
    found = similarity.analyse(tmp_path, lesson)
    assert "blank-1" not in found.solutions or not found.solutions["blank-1"].fingerprints
    assert not any({"blank-1", "blank-2"} & {p.a, p.b} for p in found.pairs)


def test_fingerprints_most_of_the_class_shares_are_discounted() -> None:
    shared = "def helper(a, b):\n    total = 0\n    for x in range(a):\n        total += x * b\n    return total\n"
    own = [f"def f{i}(q):\n    return [q ** {i} for _ in range({i})] + list(map(str, range(q, {i} * q)))\n" for i in range(6)]
    answers = {f"s{i}": [similarity.Cell("c", shared + own[i])] for i in range(6)}
    found = similarity.compare("x", answers, release=[])
    assert found.common and found.flagged == []
    two = similarity.compare("x", {"s0": answers["s0"], "s1": [similarity.Cell("c", shared + own[0])]}, release=[])
    assert [(p.a, p.b) for p in two.flagged] == [("s0", "s1")]


def test_a_side_by_side_page_marks_the_same_match_on_both_sides(tmp_path: Path) -> None:
    lesson = "gpu-training"
    family = make_class(lesson, tmp_path)
    found = similarity.analyse(tmp_path, lesson)
    pages = similarity.write_pages(found, tmp_path / "similarity")
    pair = next(p for p in found.flagged if {p.a, p.b} == {"dara", "dara--all"})
    page = (tmp_path / pages[pair]).read_text()
    assert "dara" in page and "dara--all" in page and "<mark class='m0' title='match 1'>" in page
    left, right = found.regions(pair)
    assert {n for spans in left.values() for *_, n in spans} == {n for spans in right.values() for *_, n in spans}
    assert "dara" in family["dara--all"]
