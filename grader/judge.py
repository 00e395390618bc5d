"""The judge: every checked test cell is decided outside the student's kernel.

A hidden test names its check in the source notebook (``evidence.check("module:function", ...)``)
and, under ``grader autograde``, only records the student's outputs into the submission's evidence
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
import io
import json
import re
import sys
import time
from pathlib import Path
from typing import NamedTuple

import nbformat

from . import untrusted
from .evidence import file_name

CHECK_CALL = re.compile(r"""evidence\.check\(\s*["']([A-Za-z_][\w.]*:[A-Za-z_]\w*)["']""")
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


def verdicts(notebook: Path, evidence: Path, submission: Path | None = None, threads: int = 1) -> dict[str, Verdict | None]:
    """grade_id -> None if every check of the cell passes on the recorded evidence (and, for a replayed
    check, on a replay's), else the ``Verdict`` of its first failure."""
    import importlib
    import os

    import torch

    from . import replay

    nb = nbformat.read(str(notebook), as_version=4)
    checks = checks_of(nb)
    modules = {name.split(":")[0] for names in checks.values() for name in names}
    wanted = {gid for module in modules for gid in getattr(importlib.import_module(module), "DEFINITIONS", ())}
    lesson = definitions(nb, wanted)
    # The student's code as submitted, as IPython's input history (``In``) holds it in a kernel when the test
    # cell runs: the code cells above it (what the student defines afterwards was not what the test used).
    submitted = nbformat.read(str(submission), as_version=4) if submission else nb
    decided: dict[str, Verdict | None] = {}
    for grade_id, names in checks.items():
        lesson["In"] = input_history(submitted, grade_id)
        recorded = {}
        for name in names:
            data = untrusted.read_file(evidence / file_name(name))  # a link or FIFO the kernel left is never followed
            try:
                recorded[name] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True) if data is not None else None
            except Exception as error:  # objects that only pretend to be values (an __eq__ that always agrees)
                recorded[name] = error
        decided[grade_id] = verdict(names, recorded, lesson)
    replayed = {gid for gid, names in checks.items() if decided[gid] is None and any(map(is_replayed, names))}
    if replayed:
        try:
            runs = replay.run(replay.cells(nb, submitted, replayed), threads, sandbox=os.environ.get("GRADER_SANDBOX") == "1")
        except Exception as error:  # noqa: BLE001 - the grader's failure: these cells are left undecided
            print(f"the replay failed: {type(error).__name__}: {error}", file=sys.stderr)
            runs, failure = None, f"its replay failed ({type(error).__name__})"
        for grade_id in sorted(replayed):
            decided[grade_id] = undecided(failure) if runs is None else replay_verdict(checks[grade_id], runs.get(grade_id), lesson)
    return decided


def input_history(submitted, grade_id: str) -> list[str]:
    """IPython's ``In`` as the test cell ``grade_id`` found it: "", then the code cells above it (all, if it is missing)."""
    code = [c for c in submitted.cells if c.cell_type == "code"]
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in code]
    return ["", *(c.source for c in code[: ids.index(grade_id) if grade_id in ids else len(code)])]


def verdict(names: list[str], recorded: dict, lesson: dict) -> Verdict | None:
    """The first failure of the checks ``names`` on their recorded evidence (None: all pass)."""
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
            run(name, found, lesson)
        except AssertionError as failure:
            return Verdict(str(failure) or "a check failed", isinstance(failure, Disagrees))
        except Exception as error:  # outputs that are not plain data, or not what the check reads
            return Verdict(f"the outputs of your code could not be checked ({type(error).__name__}: {error})"[:500])
    return None


def replay_verdict(names: list[str], run: dict | None, lesson: dict) -> Verdict | None:
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
        return Verdict(f"Run again in a fresh process with your functions alone, the test failed: {run['error']}", True)
    failed = verdict(names, {name: run["evidence"].get(file_name(name)) for name in names}, lesson)
    return Verdict(f"Run again in a fresh process with your functions alone, the test failed: {failed.message}", True) if failed else None


def is_replayed(name: str) -> bool:
    """Whether the check ``module:function`` is marked ``@replayed``."""
    import importlib

    module, function = name.split(":")
    return getattr(getattr(importlib.import_module(module), function), "replayed", False)


def kernel_passed(cell) -> bool:
    """The test cell ran in the kernel and raised nothing (stderr alone does not count)."""
    return cell.get("execution_count") is not None and not any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def decide(ctx) -> None:
    """The judge step: rescore every checked test cell of the submission from the judge's verdicts."""
    for name, grades in ctx.result.notebooks.items():
        source = ctx.course / "source" / ctx.assignment.name / f"{name}.ipynb"
        graded = ctx.autograded / f"{name}.ipynb"
        if f"{name}.ipynb" in ctx.missing or not source.is_file() or not graded.is_file():
            continue
        checked = list(checks_of(nbformat.read(str(source), as_version=4)))
        if not checked:
            continue
        start = time.perf_counter()
        found = judge_in_process(ctx, source, checked)
        ctx.result.judge_seconds += time.perf_counter() - start
        nb = nbformat.read(str(graded), as_version=4)
        cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
        for grade_id, verdict in found.items():
            cell = cells.get(grade_id)
            passed = cell is not None and kernel_passed(cell)
            if passed and verdict is None:
                grades.scores[grade_id] = grades.max_scores.get(grade_id, grades.scores.get(grade_id))
                continue
            grades.scores[grade_id] = 0.0
            if not passed:  # the kernel's failure stands: the student's code did not pass its own cell
                continue
            # the judge's message is the cell's failure, on the feedback page too
            cell.outputs.append(nbformat.v4.new_output("error", ename="AssertionError", evalue=verdict.message, traceback=[f"AssertionError: {verdict.message}"]))
            ctx.result.judged[grade_id] = verdict.message
            if verdict.undecided:
                ctx.result.undecided.append(grade_id)
            elif verdict.tampering:
                ctx.result.notes.append(f"{grade_id}: {FLAG}: {verdict.message}")
                ctx.result.flagged.append(grade_id)
        reasons = sorted({v.why for v in found.values() if v is not None and v.undecided})
        if any(gid in ctx.result.undecided for gid in found):
            cells_left = " ".join(gid for gid in found if gid in ctx.result.undecided)
            ctx.result.notes.append(f"{GRADER_FAILED} {cells_left}: {'; '.join(reasons)} (scored 0, left for manual grading)")
        nbformat.write(nb, str(graded))


def judge_in_process(ctx, source: Path, checked: list[str]) -> dict[str, Verdict | None]:
    """``python -m grader.judge`` on the submission's evidence, in a process no student code has touched.
    Where the judge itself fails, every cell it did not decide is undecided; its output, which may quote
    the tests, is never passed on."""
    from .worker import kernel_env, run_to_end

    workdir = ctx.course / ".judge"
    workdir.mkdir(exist_ok=True)
    verdict_file = workdir / "verdicts.json"
    env = {k: v for k, v in kernel_env(ctx).items() if k not in ("GRADER_EVIDENCE", "JUPYTER_PATH", "IPYTHONDIR")}
    env["GRADER_SANDBOX"] = "1" if ctx.settings.sandbox else "0"  # where a check must run student code
    argv = [
        str(source), str(ctx.course / ".evidence"), "--submission", str(ctx.autograded / source.name),
        "--threads", str(ctx.settings.threads), "--out", str(verdict_file),
    ]  # fmt: skip
    limit = ctx.settings.cell_timeout * 4
    code, _ = run_to_end("grader.judge", argv, env, workdir, workdir / "judge.log", limit, judged=True)
    found = json.loads(verdict_file.read_text()) if code == 0 and verdict_file.is_file() else {}
    ctx.result.measures.update(found.pop(MEASURES, None) or {})
    why = f"the judge ran past {limit:g} s" if code is None else f"the judge ended with exit code {code}" if code != 0 else "the judge left no verdict"
    decided = {grade_id: Verdict(*verdict) if verdict else None for grade_id, verdict in found.items()}
    return {grade_id: decided[grade_id] if grade_id in decided else undecided(why) for grade_id in checked}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.judge", description="decide a notebook's checked test cells from recorded evidence")
    parser.add_argument("notebook", type=Path, help="the source notebook (its test cells name the checks)")
    parser.add_argument("evidence", type=Path, help="the folder the kernel recorded evidence into")
    parser.add_argument("--submission", type=Path, help="the graded notebook: the student's code, as text (default: the source's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the verdicts here as JSON (default: print them)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from .checks import MEASURED

    found = json.dumps({**verdicts(args.notebook, args.evidence, args.submission, args.threads), MEASURES: MEASURED})
    if args.out:
        args.out.write_text(found)
    else:
        print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
