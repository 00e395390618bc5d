"""What a hidden test hands to its check: the outputs of the student's code, recorded.

A hidden test cell calls the student's functions on the check's inputs and passes what came out
to ``check("function", name=value, ...)``: a function of the assignment's own checks, in
``source/<assignment>/checks.py`` beside its notebook (``CHECKS``). The values are turned into plain data (tensors,
numbers, strings, bytes, lists and dicts of them) and written with ``torch.save``; the check reads
them back with ``torch.load(weights_only=True)``, so an object that only pretends to be a value
(an ``__eq__`` that always agrees) never reaches it.

- Under ``grader autograde`` (its kernel start-up calls ``record_into(folder)``) the kernel only records: the
  check runs later in the judge (``grader.judge``), a process in which no student code has run.
  This module is the only part of the grader a sandboxed kernel can import, and it holds no
  expected value.
- Elsewhere (plain ``nbgrader autograde``, ``grader validate``) the same check runs here, at once,
  on the same round-tripped evidence, with the notebook's own definitions: the same verdict.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import re
import sys
from pathlib import Path
from types import ModuleType

_RECORDING: list[Path] = []
"""The folder the kernel writes evidence into while the grader's judge decides (empty: the check runs here)."""
DEFAULT_DRAW = 0
"""What ``drawn()`` gives where no grader drew (plain nbgrader, ``grader validate``, a student's own run)."""
_DRAWN = [DEFAULT_DRAW]
CHECKS = "checks.py"
"""An assignment's checks, beside its notebook in ``source/<assignment>/``: one function per check."""
CHECKS_ENV = "GRADER_CHECKS"
"""Optional: the folder that holds the checks where a test runs them itself, for a course laid out otherwise."""
NAME = re.compile(r"^[A-Za-z_]\w*$")


def record_into(folder, drawn: int) -> None:
    """From now on, record evidence into ``folder`` and leave the checks to the judge, on the inputs ``drawn``
    draws: what the grader's kernel start-up (``grader/kernel_startup.py``) and its replay
    (``grader/replay_runner.py``) call first."""
    _RECORDING[:] = [Path(folder)]
    use_draw(drawn)


def use_draw(drawn: int) -> None:
    """Draw the checks' inputs from ``drawn`` (the judge: from the grader, never from the kernel)."""
    _DRAWN[0] = int(drawn)


def drawn() -> int:
    """The number a hidden test and its check draw their inputs from: under ``grader autograde``, one per submission,
    from the course's secret (``grader.records.draw``), so no answer can be written before the kernel runs;
    elsewhere ``DEFAULT_DRAW``."""
    return _DRAWN[0]


def check(name: str, **outputs) -> None:
    """Record ``outputs`` for the check ``name``; without a judge, run the check now."""
    import torch

    if not NAME.match(name):
        raise ValueError(f"a check is named by its function in {CHECKS}, not {name!r}")
    evidence = {key: plain(value) for key, value in outputs.items()}
    if _RECORDING:
        torch.save(evidence, _RECORDING[0] / file_name(name))
        return
    buffer = io.BytesIO()
    torch.save(evidence, buffer)
    try:
        with torch.random.fork_rng():  # the notebook's generators go on as if no check had run
            run(load_checks(checks_folder()), name, read(buffer.getvalue()), sys._getframe(1).f_globals)
    except AssertionError as failure:  # the student reads a plain AssertionError and its message
        raise AssertionError(str(failure)) from None


def run(checks: ModuleType, name: str, evidence: dict, lesson: dict) -> None:
    """Call the check ``name`` of ``checks`` on the evidence and the lesson's definitions; it raises AssertionError."""
    getattr(checks, name)(evidence, lesson)


def checks_folder() -> Path:
    """Where a test that runs its check itself finds the assignment's checks: ``GRADER_CHECKS`` when set; else
    the course's ``source/<assignment>/`` as nbgrader lays a course out (the kernel runs in
    ``<course>/autograded/<student>/<assignment>/``, or in the source folder itself); else the working folder
    (``grader validate`` runs a copy of the source folder)."""
    if os.environ.get(CHECKS_ENV):
        return Path(os.environ[CHECKS_ENV])
    here = Path.cwd()
    if here.parent.name == "source":
        return here
    course = here.parents[2] / "source" / here.name if len(here.parents) > 2 else here
    return course if (course / CHECKS).is_file() else here


def load_checks(folder: Path) -> ModuleType:
    """The module ``folder/checks.py``: an assignment's checks, loaded once per content (ImportError if absent).

    It is loaded from its file, never from the import path, so no module a student's folder holds can stand in
    for it, and a course needs nothing installed beside the grader."""
    path = Path(folder).resolve() / CHECKS
    try:
        text = path.read_bytes()
    except OSError as error:
        raise ImportError(f"the assignment has no checks file {path} ({type(error).__name__})") from None
    key = "grader_assignment_checks_" + hashlib.sha256(str(path).encode() + b"\0" + text).hexdigest()[:16]
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        try:
            exec(compile(text, str(path), "exec"), module.__dict__)
        except BaseException:
            del sys.modules[key]
            raise
    return sys.modules[key]


def file_name(name: str) -> str:
    return name + ".pt"


def file(path) -> bytes | None:
    """The bytes of a file the student's code wrote (None if there is none)."""
    path = Path(path)
    return path.read_bytes() if path.is_file() else None


def files(folder, pattern: str = "*") -> dict[str, bytes]:
    """The files matching ``pattern`` in ``folder``, name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob(pattern)) if p.is_file()}


def outcome(function, *args, **kwargs) -> list[str]:
    """How a call ended: ``["returned"]``, or the names of the raised exception's classes (most specific first)."""
    try:
        function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - which exception it was is the evidence
        return [cls.__name__ for cls in type(error).__mro__]
    return ["returned"]


BYTES = "grader.evidence.bytes"
"""How a recording holds bytes (a file's): ``{BYTES: uint8 tensor}``, which ``torch.save`` writes as raw storage and
``read`` turns back into bytes (as bytes themselves they would be pickled at protocol 2, as text, ten times slower)."""


def plain(value):
    """``value`` as data ``torch.load(weights_only=True)`` reads: NumPy becomes Python or torch, tensors are detached
    copies on the CPU, bytes are held as ``BYTES``."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, bytes):
        return {BYTES: torch.frombuffer(bytearray(value), dtype=torch.uint8) if value else torch.empty(0, dtype=torch.uint8)}
    if type(value).__module__ == "numpy":
        return value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else torch.as_tensor(value)
    if isinstance(value, dict):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def read(data: bytes):
    """A recording written by ``check``, read with ``torch.load(weights_only=True)``: the plain data it recorded, bytes as bytes."""
    import torch

    return unplain(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))


def unplain(value):
    """``plain``'s data with every ``BYTES`` holder turned back into bytes."""
    import torch

    if isinstance(value, dict):
        if len(value) == 1 and BYTES in value and isinstance(value[BYTES], torch.Tensor) and value[BYTES].dtype == torch.uint8:
            return value[BYTES].numpy().tobytes()
        return {key: unplain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unplain(item) for item in value]
    return value
