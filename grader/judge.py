"""The judge: every checked test cell is decided outside the student's kernel.

A hidden test names its check in the source notebook (``evidence.check("function", ...)``), a
function of the assignment's ``checks.py`` beside it (``grader.evidence.load_checks``), and, under ``grader autograde``, only records the student's outputs into the submission's evidence
folder. After the kernel is gone, ``decide`` runs ``python -m grader.judge`` — a fresh process in
which no student code has run — that rebuilds the lesson's locked definitions from the source
notebook, reads each evidence file with ``weights_only=True`` and calls the same check the kernel
would have called. A test cell then scores its points only if it ran without an error in the kernel
*and* the judge agrees: what the student's code did to the kernel (patched torch functions,
always-equal objects, redefined helpers, IPython hooks, swapped builtins) cannot decide a grade.
Stderr alone never costs a point. A cell that passed in the kernel and failed the judge scores 0 and
is flagged for the instructor: likely tampering.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path
from typing import NamedTuple

import nbformat

from . import untrusted, warm
from .evidence import DEFAULT_DRAW, drawn, file_name, load_checks, read, use_draw

CHECK_CALL = re.compile(r"""evidence\.check\(\s*["']([A-Za-z_]\w*)["']""")
FLAG = "passed in the kernel, failed the judge (likely tampering)"
"""How the report names a cell whose kernel run and judge disagree."""
GRADER_FAILED = "the judge could not decide"
"""How the notes name cells left undecided by a failure of the grader's own."""
MEASURES = "measures"
"""The verdict file's entry for what the checks measured (``grader.checks.measure``), beside the grade_ids."""
UNDECIDED = "the grader could not decide this cell (a fault of the grader, not of your code): your instructor grades it by hand"
"""What the feedback says of a cell the judge could not decide; the reason goes to the instructor's notes only."""


class Verdict(NamedTuple):
    """Why a checked test cell fails (a passing cell's verdict is None)."""

    message: str
    """For the student: the check's own message (never text the student's code produced)."""
    tampering: bool = False
    """It contradicts a kernel that passed the cell: no evidence, a visible assert undone, a replay that disagrees."""
    undecided: bool = False
    """The judge could not decide it (its replay or its process failed): scored 0 and left for manual grading."""
    why: str = ""
    """For the instructor, where it is undecided: what failed (never the tests' text)."""


def undecided(why: str) -> Verdict:
    return Verdict(UNDECIDED, undecided=True, why=why)


def checks_of(nb) -> dict[str, list[str]]:
    """grade_id -> the checks its test cell calls, for the graded cells of a (source) notebook."""
    found = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        names = CHECK_CALL.findall(cell.source) if cell.cell_type == "code" and meta.get("grade") else []
        if names:
            found[meta["grade_id"]] = list(dict.fromkeys(names))
    return found


def definitions(nb, grade_ids: set[str]) -> dict:
    """The namespace of the notebook's locked cells named in ``grade_ids``, executed in notebook order."""
    namespace: dict = {"__name__": "__lesson__"}
    with contextlib.redirect_stdout(sys.stderr):  # what the cells print is not the verdict
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and meta.get("grade_id") in grade_ids and meta.get("locked") and not meta.get("solution"):
                exec(compile(cell.source, f"<{meta['grade_id']}>", "exec"), namespace)  # the instructor's own cell
    return namespace


def verdicts(
    notebook: Path, evidence: Path, submission: Path | None = None, threads: int = 1, sandbox: bool = False, cells: set[str] | None = None,
    replay_draw: int | None = None,
) -> dict[str, Verdict | None]:
    """grade_id -> None if every check of the cell passes on the recorded evidence (for a replayed check, on the
    replay's; the kernel's is read only where the replay fails), else the ``Verdict`` of its first failure. ``sandbox``: student code the judge runs
    (a replay, a model's rebuild) runs in the sandbox. ``cells``: only these grade_ids (default: every checked cell).
    ``replay_draw``: the number the replay's inputs are drawn from (default: the kernel's, ``drawn()``); one the
    kernel never saw keeps code that reads the kernel's number from working out the replay's inputs."""
    from . import replay

    nb = nbformat.read(str(notebook), as_version=4)
    checks = {gid: names for gid, names in checks_of(nb).items() if cells is None or gid in cells}
    module = load_checks(notebook.parent)
    lesson = definitions(nb, set(getattr(module, "DEFINITIONS", ())))
    # The student's code as submitted, as IPython's input history (``In``) holds it in a kernel when the test
    # cell runs: the code cells above it (what the student defines afterwards was not what the test used).
    submitted = nbformat.read(str(submission), as_version=4) if submission else nb

    def recorded(names: list[str]) -> dict:
        """What the kernel recorded for the checks ``names``."""
        found = {}
        for name in names:
            data = untrusted.read_file(evidence / file_name(name))  # a link or FIFO the kernel left is never followed
            try:
                found[name] = read(data) if data is not None else None
            except Exception as error:  # objects that only pretend to be values (an __eq__ that always agrees)
                found[name] = error
        return found

    decided: dict[str, Verdict | None] = {}
    replayed = {gid for gid, names in checks.items() if any(is_replayed(module, n) for n in names)}
    for grade_id, names in checks.items():
        if grade_id not in replayed:  # a replayed cell is decided on its replay's record; the kernel's is read only if that fails
            lesson["In"] = input_history(submitted, grade_id)
            decided[grade_id] = verdict(module, names, recorded(names), lesson)
    if replayed:
        kernel_draw, replay_draw = drawn(), drawn() if replay_draw is None else replay_draw
        try:
            runs = replay.run(replay.cells(nb, submitted, replayed), threads, sandbox=sandbox, drawn=replay_draw)
        except Exception as error:  # noqa: BLE001 - the grader's failure: these cells are left undecided
            print(f"the replay failed: {type(error).__name__}: {error}", file=sys.stderr)
            runs, failure = None, f"its replay failed ({type(error).__name__})"
        for grade_id in sorted(replayed):
            lesson["In"] = input_history(submitted, grade_id)
            use_draw(replay_draw)  # the replay's evidence is checked on the inputs it was drawn
            try:
                found = undecided(failure) if runs is None else replay_verdict(module, checks[grade_id], runs.get(grade_id), lesson)
            finally:
                use_draw(kernel_draw)
            # Where the replay fails, the kernel's own record tells a wrong answer (its record fails too: the check's
            # own message) from one that passed in the kernel alone (the replay's verdict, flagged).
            own = verdict(module, checks[grade_id], recorded(checks[grade_id]), lesson) if found is not None else None
            if found is None:
                found = unreproduced(
                    module, checks[grade_id], recorded(checks[grade_id]), runs[grade_id],
                    lambda: replay.run(replay.cells(nb, submitted, {grade_id}), threads, sandbox=sandbox, drawn=replay_draw).get(grade_id),
                )  # fmt: skip
            decided[grade_id] = own or found
    return decided


def input_history(submitted, grade_id: str) -> list[str]:
    """IPython's ``In`` as the test cell ``grade_id`` found it: "", then the code cells above it (all, if it is missing)."""
    code = [c for c in submitted.cells if c.cell_type == "code"]
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in code]
    return ["", *(c.source for c in code[: ids.index(grade_id) if grade_id in ids else len(code)])]


def verdict(module, names: list[str], recorded: dict, lesson: dict) -> Verdict | None:
    """The first failure of the checks ``names`` of ``module`` on their recorded evidence (None: all pass)."""
    from .checks import Disagrees
    from .evidence import run

    for name in names:
        found = recorded.get(name)
        if found is None:
            return Verdict("no evidence was recorded: the test cell did not run to its end", True)
        if isinstance(found, Exception):
            return Verdict(f"your code returned something that is not plain data ({type(found).__name__})", True)
        try:
            if not isinstance(found, dict):
                raise Disagrees("the evidence file was replaced")
            run(module, name, found, lesson)
        except AssertionError as failure:
            return Verdict(str(failure) or "a check failed", isinstance(failure, Disagrees))
        except Exception as error:  # outputs that are not plain data, or not what the check reads
            return Verdict(f"the outputs of your code could not be checked ({type(error).__name__}: {error})"[:500])
    return None


REPLAY_FAILED = "Run again in a fresh process with your functions alone, the test failed: "
"""How the verdict on a failed replay begins; the rest is the replay's error or the check's message, which the
feedback spells out on its own (``grader.report.judge_message``)."""


def replay_verdict(module, names: list[str], run: dict | None, lesson: dict) -> Verdict | None:
    """The verdict on a test cell's replay (``grader.replay``): it must finish, replace no library function,
    raise nothing, and pass its checks. A replay that fails where the kernel passed is flagged."""
    if run is None:
        return Verdict("Run again in a fresh process with your functions alone, the test did not finish.", True)
    if run.get("bad_fork"):
        return undecided("its replay ran in a bad fork: it could not have used CUDA")
    if run["replaced"]:
        replaced = ", ".join(run["replaced"][:5])
        return Verdict(f"Run again in a fresh process with your functions alone, the test found your code replacing {replaced}.", True)
    if run["error"]:
        return Verdict(REPLAY_FAILED + run["error"], True)
    failed = verdict(module, names, {name: run["evidence"].get(file_name(name)) for name in names}, lesson)
    return Verdict(REPLAY_FAILED + failed.message, True) if failed else None


def unreproduced(module, names: list[str], kernel: dict, run: dict, again) -> Verdict | None:
    """For checks with outputs every run must give alike (``grader.checks.reproducible``): None if the kernel's record
    of them equals the replay's ``run``, or if a second replay (``again()``) gives what the first gave; else the check's
    message. Where the second replay does not finish, nothing is taken away."""
    second = None
    for name in names:
        keys, message = getattr(getattr(module, name, None), "reproducible", ((), ""))
        first, mine = run["evidence"].get(file_name(name)), kernel.get(name)
        if not keys or not isinstance(first, dict) or not isinstance(mine, dict) or all(alike(mine.get(k), first.get(k)) for k in keys):
            continue
        second = again() if second is None else second
        other = second["evidence"].get(file_name(name)) if second and not second["error"] and not second["replaced"] else None
        if isinstance(other, dict) and not all(alike(other.get(k), first.get(k)) for k in keys):
            return Verdict(message)
    return None


def alike(a, b) -> bool:
    """Two recorded values are the same data (tensors: equal shapes, dtypes and elements)."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(alike(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(alike(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def is_replayed(module, name: str) -> bool:
    """Whether the check ``name`` of the checks ``module`` is marked ``@replayed``."""
    return getattr(getattr(module, name, None), "replayed", False)


def runs_student_code(folder: Path) -> bool:
    """Whether the checks of the assignment in ``folder`` run student code in a process of the judge's (a check
    marked ``@replayed``, or a model's rebuild, ``grader.checks.rebuild``): read from ``checks.py``'s syntax, so
    that a grading worker can tell without importing it (and torch)."""
    import ast

    from .evidence import CHECKS

    try:
        tree = ast.parse((Path(folder) / CHECKS).read_text())
    except (OSError, SyntaxError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(ast.unparse(d).split(".")[-1] == "replayed" for d in node.decorator_list):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("checks.rebuild") or isinstance(node, ast.Import) and any(a.name.endswith("checks.rebuild") for a in node.names):
            return True
    return False


def kernel_passed(cell) -> bool:
    """The test cell ran in the kernel and raised nothing (stderr alone does not count)."""
    return cell.get("execution_count") is not None and not any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.judge", description="decide a notebook's checked test cells from recorded evidence")
    parser.add_argument("notebook", type=Path, help="the source notebook (its test cells name the checks)")
    parser.add_argument("evidence", type=Path, help="the folder the kernel recorded evidence into")
    parser.add_argument("--submission", type=Path, help="the graded notebook: the student's code, as text (default: the source's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the verdicts here as JSON (default: print them)")
    parser.add_argument("--sandbox", action="store_true", help="run the student code the judge runs (replays, model rebuilds) in the sandbox")
    parser.add_argument("--warm", type=Path, help="the warm sandbox (grader.warm) to run sandboxed programs in, where it answers")
    parser.add_argument("--cells", help="decide only these grade_ids, comma-separated (default: every checked cell)")
    parser.add_argument("--draw", type=int, default=DEFAULT_DRAW, help="the number the checks' inputs are drawn from (grader.records.draw)")
    parser.add_argument("--replay-draw", type=int, help="the number the replay's inputs are drawn from (default: --draw)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from .checks import MEASURED, rebuild

    rebuild.SANDBOXED[0] = args.sandbox
    warm.use(args.warm if args.sandbox else None)
    use_draw(args.draw)  # the checks draw their inputs from the grader's number, never from the kernel's
    found = json.dumps({**verdicts(args.notebook, args.evidence, args.submission, args.threads, args.sandbox, set(args.cells.split(",")) if args.cells else None, args.replay_draw), MEASURES: MEASURED})
    if args.out:
        args.out.write_text(found)
    else:
        print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
