"""A test cell run again, in a fresh process, on the student's definitions alone.

Some checks also rest on how the student's code behaved while the test ran: which devices reached
a loss, how ``torch.load`` was called, whether ``evaluate`` tracked gradients. The test's hidden part
observes that with a spy of its own (a loss that records devices, a recorder around ``torch.load``),
and what a spy records in the student's kernel, code that ran before the test can rewrite. So the judge
replays such a test cell (a check marked ``@replayed``, ``grader.checks``) in a process of its own,
in the sandbox when grading runs in one:

- the notebook is rebuilt in its order, up to the last replayed test: the lesson's locked cells
  as the source notebook has them; of the lesson's demonstrations (a cell whose text is the
  source's own) only their *definitions* (imports, functions, classes, assignments of constants,
  and ``if``/``try`` blocks of these), never a training run or a timing; of every cell the student
  wrote (answer cells, cells added or changed) also each assignment to plain names, whatever it
  calls (``DEVICE = pick_device()``, ``train = make_loop()``, ``step = AmpStep()``), each within
  ``BUDGET`` seconds (a longer one is cut short and skipped), and each statement that changes names in place
  (``is_val[picked] = True``, ``np.random.shuffle(order)``, a loop that fills a list: ``changes``), and each call
  that seeds a generator (``seeds``); the child starts its generators from fresh entropy, as a new process does; a statement,
  the lesson's or the student's, whose names no replayed test and no kept statement reads is left out
  (``needed_only``: the project's final training does not run again for a test of ``per_class_accuracy``).
  Assignments to attributes (``torch.load = ...``), IPython's calls and a demonstration's statements never run, so
  no patch that a statement of an answer cell installs is in force (one installed through a call is caught: see
  below); IPython syntax (``%%time``, ``!pip``, ``x = !ls``) is read as IPython reads it;
- before each replayed test the lesson's own names are bound again (a student's cell cannot
  redefine a check's helper), gradient tracking is on and the default dtype is float32;
- the tests run in notebook order, as in the kernel, in a child of a process that never touched
  CUDA (``grader.replay_runner``), so they can use CUDA on a GPU grader; each records its evidence
  with ``grader.evidence`` into a folder of its own and reports whether it raised and whether a
  function of torch, NumPy, the builtins or ``grader.evidence``, or an attribute of a class the
  lesson defines, was replaced while it ran (the judge counts that as tampering).

The test must pass there too, and its check must pass on the replay's evidence.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from . import evidence, untrusted, warm

DEFINED = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
"""Top-level statements of a student's cell that the replay keeps as they are."""
CONSTRUCTORS = {"dict", "list", "tuple", "set", "frozenset", "range", "int", "float", "str", "bool"}
LIBRARIES = {"torch", "nn", "F", "np", "numpy", "math", "pathlib", "Path", "datasets", "transforms"}
"""An assignment is kept when the only calls in its value are these builtins or a library's (``nn.CrossEntropyLoss()``),
or one of ``READS``."""
READS = {"os.environ.get", "os.getenv", "os.cpu_count", "os.path.join", "functools.partial", "partial"}
"""Calls that read a setting or wrap a function without running any of the student's code: ``int(os.environ.get("EPOCHS", 3))``,
``functools.partial(fit, epochs=2)``."""


class ReplayFailed(RuntimeError):
    """The replay could not run the lesson's own cells: a problem of the grading, not of the submission."""


BUDGET = 2.0
"""Seconds an assignment of a cell the student wrote may take in the replay (``grader.replay_runner.budget``)."""


@functools.lru_cache(maxsize=512)
def top_level(source: str) -> list:
    """A cell's top-level statements, read as IPython reads them (``!cmd`` and ``%magic`` become calls of
    ``get_ipython()``, which the replay does not have); a leading cell magic (``%%time``) is dropped; [] if it is not Python.
    The same for a cell as a kernel's input history (``In``) holds it, where ``%%time`` has become a call of
    ``get_ipython().run_cell_magic('time', '', <the cell's code>)``. Cached: the judge reads each cell more than
    once (the replay's cells, each model rebuild); no caller changes what it returns."""
    from IPython.core.inputtransformer2 import TransformerManager

    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        lines = lines[1:]
    try:
        body = ast.parse(TransformerManager().transform_cell("\n".join(lines) + "\n")).body
    except (SyntaxError, ValueError):
        return []
    magic = body[0].value if len(body) == 1 and isinstance(body[0], ast.Expr) else None
    if (
        isinstance(magic, ast.Call) and isinstance(magic.func, ast.Attribute) and magic.func.attr == "run_cell_magic"
        and len(magic.args) == 3 and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in magic.args)
    ):  # fmt: skip
        return top_level(magic.args[2].value)
    return body


def guarded(node, budget: bool = False) -> str:
    """A statement that may fail alone without stopping what follows (within ``BUDGET`` seconds, if ``budget``)."""
    code = ast.unparse(node)
    if budget:
        code = f"with __grader_budget__({BUDGET}):\n" + textwrap.indent(code, "    ")
    return "try:\n" + textwrap.indent(code, "    ") + "\nexcept Exception:\n    pass"


def calls_only_libraries(expression) -> bool:
    """The only calls in ``expression`` are to a builtin constructor or a library (``nn.CrossEntropyLoss()``)."""
    for call in (n for n in ast.walk(expression) if isinstance(n, ast.Call)):
        func, path = call.func, []
        while isinstance(func, ast.Attribute):
            path.append(func.attr)
            func = func.value
        if not isinstance(func, ast.Name) or any(part.startswith("_") for part in path):
            return False
        if ".".join([func.id, *reversed(path)]) in READS:
            continue
        if not (func.id in LIBRARIES or (func.id in CONSTRUCTORS and not path)):
            return False
    return True


def to_names(node) -> bool:
    """An assignment whose targets are plain names (``a = ...``, ``a, b = ...``, ``a: int = ...``, ``a += ...``)."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return all(isinstance(n, (ast.Name, ast.Tuple, ast.List, ast.Starred, ast.Store)) for t in targets for n in ast.walk(t))


def root_name(node) -> str | None:
    """The name an item's target starts from (``idx`` of ``idx[3]``, ``parts`` of ``parts[0][1]``), or None."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def changes(node) -> set[str] | None:
    """The names a statement of the student's changes in place, where it does nothing else the replay must not run:
    an assignment into an item (``is_val[picked] = True``, ``counts[k] += 1``), a call made for its effect
    (``np.random.shuffle(order)``, ``parts.append(x)``, ``torch.manual_seed(0)``: its plain-name arguments and
    the names in what is called), a loop or ``with`` block of such statements and assignments (``for i in ...:
    chunks.append(...)``). None for anything else, and for an assignment to an attribute (``torch.load = spy`` is a
    patch, never run) or IPython's calls (``get_ipython()``)."""
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if node.value is None or any(isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) for t in targets for n in ast.walk(t)):
            return None
        if to_names(node):
            return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        roots = {root_name(t) for t in targets if isinstance(t, ast.Subscript)}
        return None if None in roots or len(roots) != len(targets) else roots
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        call = node.value
        called = set() if isinstance(call.func, ast.Name) else {n.id for n in ast.walk(call.func) if isinstance(n, ast.Name)}
        if "get_ipython" in called | {getattr(call.func, "id", None)}:
            return None
        if getattr(call.func, "id", None) == "print":
            return set()
        arguments = [*call.args, *(k.value for k in call.keywords)]
        return called | {a.id for a in arguments if isinstance(a, ast.Name)}
    if isinstance(node, (ast.For, ast.While, ast.With, ast.If)):
        names = {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)} if isinstance(node, ast.For) else set()
        for inner in node.body + node.orelse if not isinstance(node, ast.With) else node.body:
            found = changes(inner) if not isinstance(inner, (ast.Break, ast.Continue, ast.Pass)) else set()
            if found is None:
                return None
            names |= found
        return names
    return None


def seeds(node) -> bool:
    """A statement that calls something named for seeding (``torch.manual_seed(0)``, ``np.random.seed(0)``,
    ``set_seed(42)``, ``g = torch.Generator().manual_seed(0)``): every later draw depends on it, so of a cell the
    student wrote the replay always runs it."""
    value = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
    func = value.func if isinstance(value, ast.Call) else None
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return "seed" in name.lower()


def kept(node, written: bool = False) -> bool:
    """Whether the replay keeps a top-level statement: a definition, an assignment of a constant to plain
    names, or an ``if``/``try`` made of nothing else (``try: from tqdm import tqdm`` ...). Of a cell the student
    wrote (``written``), any assignment to plain names too (``calls`` says which of them call the student's code),
    and what changes names in place (``changes``: ``needed_only`` keeps it only where a test reads what it changes)."""
    if isinstance(node, DEFINED):
        return True
    if written and (changes(node) or seeds(node)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        if node.value is None or not to_names(node):
            return False
        if written:
            return True
        if isinstance(node.value, ast.Lambda):  # a function, defined as a def is: only its defaults run now
            arguments = node.value.args
            return all(calls_only_libraries(d) for d in [*arguments.defaults, *filter(None, arguments.kw_defaults)])
        return not isinstance(node, ast.AugAssign) and calls_only_libraries(node.value)
    if isinstance(node, ast.If):
        return (written or calls_only_libraries(node.test)) and all(kept(n, written) for n in node.body + node.orelse)
    if isinstance(node, ast.Try):
        handlers = [n for h in node.handlers for n in h.body]
        return all(kept(n, written) for n in node.body + node.orelse + node.finalbody + handlers)
    return isinstance(node, ast.Pass)


def definitions(source: str, written: bool = False) -> str:
    """What the replay keeps of a student's cell (``kept``), each statement guarded; a statement kept only because the
    student wrote the cell runs within ``BUDGET`` seconds."""
    return "\n".join(guarded(node, budget=not kept(node)) for node in top_level(source) if kept(node, written))


def cells(source_nb, submitted_nb, replayed: set[str]) -> list[dict]:
    """The replay's cells, in the submitted notebook's order up to its last replayed test: the lesson's
    locked cells and tests as the source has them, and what ``definitions`` keeps of every other code cell."""
    from .notebooks import cells_by_grade_id, grade_id, is_test, nbgrader_meta

    lesson = cells_by_grade_id(source_nb)
    demonstrations = {cell.source.strip() for cell in source_nb.cells if cell.cell_type == "code" and not grade_id(cell)}
    found, wanted = [], set(replayed)
    for index, cell in enumerate(submitted_nb.cells):
        if not wanted:
            break
        if cell.cell_type != "code":
            continue
        gid = grade_id(cell)
        original = lesson.get(gid) if gid else None
        if original is not None and is_test(original):
            if gid in wanted:
                found.append({"kind": "test", "name": gid, "source": original.source})
                wanted.discard(gid)
        elif original is not None and nbgrader_meta(original).get("locked") and not nbgrader_meta(original).get("solution"):
            found.append({"kind": "lesson", "name": gid, "source": "\n".join(ast.unparse(n) for n in top_level(original.source))})
        else:
            written = cell.source.strip() not in demonstrations
            found.append({"kind": "student", "name": f"your cell {index + 1}", "source": definitions(cell.source, written), "written": written})
    return needed_only(found)


DYNAMIC = {"globals", "locals", "vars", "eval", "exec"}
"""Builtins through which code reads a notebook's names by string (``globals()["model"]``); so does the module
``__main__``, where a notebook's names live."""


def reads_names_by_string(tree) -> bool:
    """Whether code may read names that no syntax shows (``DYNAMIC``, ``__main__``): then what it reads cannot be
    known from its text. ``vars(obj)`` reads an object's attributes, not the notebook's names: it does not count."""
    of_objects = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "vars" and n.args}
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and n.id in DYNAMIC and id(n) not in of_objects or isinstance(n, ast.Constant) and n.value == "__main__":
            return True
        if isinstance(n, (ast.Import, ast.ImportFrom)) and "__main__" in {getattr(n, "module", None), *(a.name for a in n.names)}:
            return True
    return False


def needed_only(replay_cells: list[dict]) -> list[dict]:
    """``replay_cells`` without the statements whose names nothing else reads (the dataset a demonstration needed,
    ``import matplotlib.pyplot as plt`` where no test plots, ``history = train_model(...)`` in a cell the student
    wrote where no replayed test reads ``history``): each statement of a lesson's cell or of a student's that binds
    names is kept only if a test or a kept statement reads one of them; one that does more than bind names is
    kept. Every test stays whole, and so does every cell the student wrote wherever some code reads names by string
    (``reads_names_by_string``); a cell left empty goes."""

    def used(tree) -> set[str]:
        """The names a statement reads and does not bind itself (anywhere in it: a function's argument, a loop's variable)."""
        loaded, stored = set(), set()
        for n in ast.walk(tree):
            if isinstance(n, ast.Name):
                (loaded if isinstance(n.ctx, ast.Load) else stored).add(n.id)
            elif isinstance(n, ast.arg):
                stored.add(n.arg)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                stored.add(n.name)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                stored.update((a.asname or a.name).split(".")[0] for a in n.names)
        return loaded - stored

    libraries = LIBRARIES | {
        (a.asname or a.name).split(".")[0] for cell in replay_cells for n in ast.walk(ast.parse(cell["source"]))
        if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names
    }  # fmt: skip
    """Names an import binds: a call on one of them (``torch.manual_seed(0)``, ``os.makedirs(...)``) changes nothing a
    test reads, so it runs only where it also changes another name (``np.random.shuffle(order)``)."""

    def bound(node, student: bool) -> set[str] | None:
        """The names a statement binds (through the guards ``definitions`` puts around it), or of a student's cell
        changes in place (``changes``); None where it may have effects beyond these names, so it is kept."""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return {node.name}
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            return {(a.asname or a.name).split(".")[0] for a in node.names}
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and to_names(node):  # other targets: what ``changes`` says below
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        if isinstance(node, (ast.Try, ast.If, ast.With)):
            names: set[str] = set()
            for inner in node.body + getattr(node, "orelse", []) + [n for h in getattr(node, "handlers", []) for n in h.body]:
                found = bound(inner, student)
                if found is None:
                    return None
                names |= found
            return names
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name) and node.value.func.id == "print":
            return set()  # what a lesson's cell prints reaches no test
        if isinstance(node, ast.Pass):
            return set()
        if student and seeds(node):
            return None  # what every later draw depends on
        found = changes(node) if student else None
        return None if found is None else found - libraries

    statements = [ast.parse(cell["source"]).body for cell in replay_cells]
    dynamic = any(reads_names_by_string(ast.Module(body=body, type_ignores=[])) for body in statements)
    prunable = [cell["kind"] == "lesson" or (cell["kind"] == "student" and not (dynamic and cell.get("written"))) for cell in replay_cells]
    needed: set[str] = set()
    kept: set[tuple[int, int]] = set()
    waiting: dict[tuple[int, int], tuple[set[str], set[str]]] = {}
    for i, body in enumerate(statements):
        if not prunable[i]:  # kept whole: what it reads and does not bind itself is needed
            needed |= used(ast.Module(body=body, type_ignores=[]))
            kept.update((i, j) for j in range(len(body)))
            continue
        for j, node in enumerate(body):
            names = bound(node, replay_cells[i]["kind"] == "student")
            if names is None:
                kept.add((i, j))
                needed |= used(node)
            else:
                waiting[(i, j)] = (names, used(node))
    while True:
        more = [key for key, (names, _) in waiting.items() if names & needed]
        if not more:
            break
        for key in more:
            kept.add(key)
            needed |= waiting.pop(key)[1]
    found = []
    for i, cell in enumerate(replay_cells):
        if not prunable[i]:
            found.append(cell)
        elif any((i, j) in kept for j in range(len(statements[i]))):
            found.append({**cell, "source": "\n".join(ast.unparse(n) for j, n in enumerate(statements[i]) if (i, j) in kept)})
    return found


def run(replay_cells: list[dict], threads: int = 1, sandbox: bool = False, timeout: float = 300, drawn: int = 0) -> dict[str, dict]:
    """Replay the tests among ``replay_cells`` on the inputs ``drawn`` draws: test name -> {"error": ..., "replaced":
    [...], "evidence": {file: data}} (a test whose child never reported, within ``timeout`` seconds for them all, is missing)."""
    from .replay_runner import LESSON_ERROR, OUTCOME
    from .sandbox import kernel_library

    with warm.job_folder("grader-replay-") if sandbox else tempfile.TemporaryDirectory(prefix="grader-replay-") as folder:
        work = Path(folder)
        kernel_library(work)
        (work / "cells.json").write_text(json.dumps(replay_cells))
        shutil.copyfile(Path(__file__).with_name("replay_runner.py"), work / "replay_runner.py")
        argv = ["replay_runner.py", str(threads), str(int(drawn))]
        try:
            if sandbox:
                from .paths import DATA_ENV
                from .sandbox import Limits

                data = os.environ.get(DATA_ENV)
                done = warm.run_python(argv, work, Limits(), timeout=timeout, shared=[Path(data)] if data else [])
            else:
                done = subprocess.run([sys.executable, *argv], cwd=work, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            done = None  # the tests that reported count; the others did not finish
        # What the sandboxed replay left is read as plain files only: a link or FIFO it made is never followed.
        lesson_error = untrusted.read_file(work / LESSON_ERROR)
        if lesson_error is not None:
            raise ReplayFailed(f"a lesson cell failed in the replay: {lesson_error.decode(errors='replace')}")
        found = {}
        for cell in replay_cells:
            outcome = untrusted.read_file(work / cell["name"] / OUTCOME) if cell["kind"] == "test" else None
            if outcome is None:
                continue
            report = json.loads(outcome)
            report["evidence"] = {}
            for name, data in untrusted.read_tree(work / cell["name"]).files.items():
                if "/" in name or not name.endswith(".pt"):
                    continue
                try:
                    report["evidence"][name] = evidence.read(data)
                except Exception as error:  # noqa: BLE001 - not plain data: the check says so
                    report["evidence"][name] = error
            found[cell["name"]] = report
        if not found and done is not None and done.returncode != 0:
            raise ReplayFailed(f"the replay did not start: {done.stderr.strip()[-500:] or done.returncode}")
        return found
