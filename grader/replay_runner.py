"""The program ``grader.replay`` runs in its own process (in the sandbox): ``python replay_runner.py THREADS DRAWN``.

It reads ``cells.json`` (the replay's cells, ``grader.replay.cells``) from its working folder and,
for each test cell, writes ``<test>/outcome.json`` and the test's evidence into ``<test>/``.

CUDA-safe by construction. This process imports torch and the modules the lesson's cells import, and
never touches CUDA: it is a fork server.
Its child starts its random generators from fresh entropy, as a new process does, builds the notebook's namespace
(the lesson's cells, the student's definitions), which may touch CUDA, and runs the tests in notebook order, as the
kernel ran them. A child forked from a
process that had touched CUDA could not use CUDA (torch's "bad fork"); no child here is. If a test
ends the child (``os._exit``, a crash), that test fails and a new child, forked from this clean
process, rebuilds the namespace and goes on with the tests after it.

Only ``grader.evidence`` of the grader is importable here (``grader.sandbox.kernel_library``).
"""

import contextlib
import gc
import json
import os
import signal
import sys
import traceback
import types

import numpy  # imported once here, before any fork: what the children share
import torch

import grader.evidence

WATCHED = ("builtins", "torch", "numpy", "grader")
WRAPPED_ON_IMPORT = {"torch.manual_seed"}
"""Replaced by torch itself, with a wrapper of the original, when torch._dynamo is first imported."""
LESSON_ERROR = "lesson-error.txt"
OUTCOME = "outcome.json"


def functions(lesson: dict | None = None) -> dict:
    """Every function and class of builtins, torch, NumPy and ``grader.evidence``, the methods of tensors and
    modules, the attributes of the classes the lesson's cells defined (``lesson``), and those modules themselves:
    for each namespace, by where it lives, (the namespace, a copy of what it holds), so that ``replaced`` looks each
    one up again. A copy per namespace, not a name per function: about 7 ms for the 35,000
    functions here, where naming each took 130 ms (and the replay takes this once per lesson cell)."""
    found = {}
    for name, cls in (lesson or {}).items():
        if isinstance(cls, type):
            found[f"lesson.{name}"] = (vars(cls), dict(vars(cls)))
    modules = {name: module for name, module in list(sys.modules.items()) if module is not None and name.split(".")[0] in WATCHED}
    found["sys.modules"] = (sys.modules, modules)
    for name, module in modules.items():
        try:
            space = vars(module)
        except TypeError:
            continue
        found[name] = (space, {key: value for key, value in list(space.items()) if callable(value)})
    for cls in (torch.Tensor, torch._C.TensorBase, torch.nn.Module):
        found[f"{cls.__module__}.{cls.__qualname__}"] = (vars(cls), dict(vars(cls)))
    return found


def replaced(before: dict) -> list[str]:
    """What of ``before`` (``functions``) is now something else (what was removed does not count)."""
    changed = []
    for where, (space, values) in before.items():
        for key, value in values.items():
            now = space.get(key, value)
            if now is not value and not (f"{where}.{key}" in WRAPPED_ON_IMPORT and getattr(now, "__wrapped__", None) is value):
                changed.append(f"{where}.{key}")
    return sorted(changed)


def report(test: str, outcome: dict) -> None:
    with open(os.path.join(test, OUTCOME), "w") as out:
        json.dump(outcome, out)


class OverBudget(BaseException):
    """An assignment of the student's ran past its time (not an ``Exception``: a student's ``except Exception`` lets it through)."""


@contextlib.contextmanager
def budget(seconds: float):
    """Cut the statement inside short after ``seconds`` (``grader.replay.BUDGET``): it is skipped, the rest goes on."""

    def expire(*_):
        raise OverBudget

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except OverBudget:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_from(cells: list[dict], first: int, threads: int, drawn: int) -> None:
    """In a child: build the namespace from every cell that is not a test, and run the tests from index ``first`` on."""
    fresh_random_states()
    main = types.ModuleType("__main__")  # the notebook's names live in __main__, as in a kernel: pickle finds its classes there
    sys.modules["__main__"] = main
    namespace, lesson = main.__dict__, {}
    namespace["__grader_budget__"] = budget
    baseline, tampered, since = functions(), set(), None
    for index, cell in enumerate(cells):
        code = compile(cell["source"], f"<{cell['name']}>", "exec")
        if cell["kind"] != "test":
            bound = dict(namespace)
            if cell["kind"] == "lesson":  # what the student's definitions replaced so far; then the lesson's imports count as given
                tampered.update(replaced(baseline))
            try:
                exec(code, namespace)
            except BaseException:
                if cell["kind"] == "lesson":
                    with open(LESSON_ERROR, "w") as out:
                        out.write(traceback.format_exc()[-2000:])
                    os._exit(1)
            if cell["kind"] == "lesson":
                lesson.update((k, v) for k, v in namespace.items() if k not in bound or bound[k] is not v)
                baseline = functions(lesson)
            continue
        if index < first:
            continue
        if since is None:  # once the notebook is built; later, what the last test left (nothing of the student's runs between)
            since = set(replaced(baseline))
        outcome = {"error": None, "replaced": sorted(tampered | since), "bad_fork": torch.cuda._is_in_bad_fork()}
        try:
            grader.evidence.record_into(os.path.abspath(cell["name"]), drawn)
            torch.set_num_threads(threads)
            namespace.update(lesson)  # a student's cell cannot redefine a check's helper
            torch.set_grad_enabled(True)
            torch.set_default_dtype(torch.float32)
            torch.manual_seed(0)
            exec(code, namespace)
        except BaseException as error:  # noqa: BLE001 - how the test ended is its outcome
            outcome["error"] = f"{type(error).__name__}: {error}"[:1500]
        since = set(replaced(baseline))
        outcome["replaced"] = sorted({*outcome["replaced"], *since})
        report(cell["name"], outcome)
    os._exit(0)  # every test has reported: skip the interpreter's teardown (a second of torch's)


def fresh_random_states() -> None:
    """Seed torch's, NumPy's and Python's generators from the system's entropy, as a new process starts them: every
    child of this server would otherwise draw what the server's own start drew, and a notebook that never seeds
    would look reproducible (``grader.checks.reproducible``)."""
    import random

    torch.seed()
    numpy.random.seed()
    random.seed()


def preload(cells: list[dict]) -> None:
    """Import, here and once, the modules the lesson's own cells import (the instructor's code, never a student's),
    so that each child shares them instead of importing them again. Importing touches no CUDA, so no child is a
    bad fork; a module that fails to import here fails again, visibly, in the child that runs the cell."""
    import ast
    import importlib

    for cell in cells:
        if cell["kind"] != "lesson":
            continue
        for node in ast.walk(ast.parse(cell["source"])):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                try:
                    importlib.import_module(name)
                except Exception:  # noqa: BLE001 - the child's own import reports it
                    pass


def main() -> None:
    threads, drawn = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)  # no thread pool in the fork server: a child could not use it
    with open("cells.json") as found:
        cells = json.load(found)
    os.remove("cells.json")  # read before any of the student's code runs: the tests' text stays out of its reach on disk
    preload(cells)
    gc.freeze()  # the imports live as long as this process: no child's garbage collection walks them again
    tests = [i for i, cell in enumerate(cells) if cell["kind"] == "test"]
    for cell in (cells[i] for i in tests):
        os.makedirs(cell["name"])
    first = tests[0] if tests else len(cells)
    while first < len(cells):
        pid = os.fork()
        if pid == 0:
            try:
                run_from(cells, first, threads, drawn)
            finally:
                os._exit(1)
        os.waitpid(pid, 0)
        if os.path.exists(LESSON_ERROR):
            break
        unreported = [i for i in tests if i >= first and not os.path.exists(os.path.join(cells[i]["name"], OUTCOME))]
        if not unreported:
            break
        ended = unreported[0]  # the test the child was running when it ended
        report(cells[ended]["name"], {"error": "the process ended while this test ran", "replaced": [], "bad_fork": False})
        first = ended + 1
    os._exit(0)


if __name__ == "__main__":
    main()
