"""What an assignment's checks are written with: the helpers every check may use.

An assignment's checks live with it, in ``source/<assignment>/checks.py`` beside its notebook (never
in this package, never copied into release/ or a student's folder): one function per check, named by
the hidden test that records its evidence (``evidence.check("function", key=value, ...)``).
A check is ``function(evidence, lesson)``: ``evidence`` is what the hidden test recorded from the
student's code (plain data, read with ``weights_only=True``), ``lesson`` the notebook's own locked
definitions (the model class, the check helpers). It computes what it expects itself, from the
test's inputs, and raises AssertionError with a message for the student. Inputs the student's code
could otherwise be written for in advance are drawn from ``drawn()``: under ``grader autograde`` a
number per submission from the course's secret (the test reads it in the kernel, the check gets it
from the grader), elsewhere a fixed default. The file lists
in ``DEFINITIONS`` the grade_ids of the locked cells its checks need.

The same function runs in the kernel under plain ``nbgrader autograde`` (``grader.evidence``) and
in the judge under ``grader autograde`` (``grader.judge``), where the kernel cannot reach it.
``grader validate`` (``grader.authoring``) checks, before anyone is graded, that every name a test
gives exists: the function, the evidence keys both ways, the ``DEFINITIONS`` cells.

A check whose evidence is an observation of how the student's code behaved (a spy's record, not
an output) is marked ``@replayed``: the judge also runs its test cell again in a fresh process on
the student's definitions alone (``grader.replay``), and the check must pass on that run's evidence.
A check that must run the student's model for its verdict uses ``grader.checks.rebuild``.
"""

from __future__ import annotations

import io

from ..evidence import drawn  # noqa: F401 - what a check draws its inputs from, as its test did


def load(data: bytes | None, what: str, advice: str = "", disagree: bool = False):
    """``torch.load(weights_only=True)`` of recorded file bytes; AssertionError saying which file, if it
    cannot (``Disagrees`` where the test's visible part already loaded it that way)."""
    import torch

    failure = Disagrees if disagree else AssertionError
    if data is None:
        raise failure(f"{what} was not written.")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:
        raise failure(f"{what} does not load with torch.load(path, weights_only=True) ({type(error).__name__}). {advice}".strip()) from None


def truth(value, what: str) -> bool:
    """A recorded True/False (a one-element tensor counts), or AssertionError."""
    import torch

    if isinstance(value, bool):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return bool(value.item())
    raise AssertionError(f"{what} should return True or False, not {type(value).__name__}.")


def number(value, what: str) -> float:
    """A recorded number (a one-element tensor counts), or AssertionError."""
    import torch

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    raise AssertionError(f"{what} should be a number, not {type(value).__name__}.")


def close(found, expected: float, rel_tol: float = 1e-5, abs_tol: float = 1e-6) -> bool:
    """A recorded number (a one-element tensor counts) within ``rel_tol``/``abs_tol`` of ``expected``; False for anything else."""
    import math

    import torch

    if isinstance(found, torch.Tensor) and found.numel() == 1:
        found = found.item()
    return isinstance(found, (int, float)) and not isinstance(found, bool) and math.isclose(found, expected, rel_tol=rel_tol, abs_tol=abs_tol)


def same_tensors(found: dict, expected: dict, rtol: float = 1e-5, atol: float = 1e-8) -> list[str]:
    """Names of ``expected``'s tensors that ``found`` lacks or holds with other values."""
    import torch

    differ = []
    for name, tensor in expected.items():
        other = found.get(name) if isinstance(found, dict) else None
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            differ.append(name)
        elif not torch.allclose(other.float(), tensor.float(), rtol=rtol, atol=atol):
            differ.append(name)
    return differ


def same_values(found, expected: dict, rtol: float = 1e-4, atol: float = 1e-5, share: float = 0.99) -> bool:
    """``found`` holds every tensor of ``expected`` (same names and shapes), and at least ``share`` of all their
    elements agree within the tolerance. The rest may differ by round-off alone between two thread counts or
    machines: a bias that batch norm cancels has a gradient of pure noise, and Adam turns noise into steps of
    the full learning rate. A mistake in the code under test (a missing zero_grad, another learning rate, an
    optimizer made per epoch) moves nearly every weight."""
    import torch

    if not isinstance(found, dict):
        return False
    agree = total = 0
    for name, tensor in expected.items():
        other = found.get(name)
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            return False
        agree += torch.isclose(other.double(), tensor.double(), rtol=rtol, atol=atol).sum().item()
        total += tensor.numel()
    return agree >= share * total


def replayed(check):
    """Mark a check whose test the judge must also replay in a fresh process (``grader.replay``)."""
    check.replayed = True
    return check


def reproducible(*keys: str, message: str):
    """Mark outputs of a ``@replayed`` check's test that every run of the notebook must give alike (a split drawn with
    a seed). The judge compares the kernel's record of them with the replay's; where they differ, it replays the test
    once more, and outputs that differ between the two replays, each started with fresh random states as a new
    process is, fail the cell with ``message``. Only points can be lost here: the kernel's record is the student's
    process's, and no record it writes can match a replay's unseeded draw."""

    def mark(check):
        check.reproducible = (tuple(keys), message)
        return check

    return mark


class Disagrees(AssertionError):
    """The evidence contradicts an assert the kernel ran and passed: the cell's success was not the student code's doing."""


def visible(condition, message: str) -> None:
    """Repeat an assert of the test cell's visible part; failing it after the kernel passed it means tampering."""
    if not condition:
        raise Disagrees(message)


MEASURED: dict[str, float] = {}
"""What the checks measured in this process (name -> value); the judge hands it on with its verdicts."""


def measure(name: str, value: float) -> float:
    """Record a number a check measured (the project's test accuracy) for the report; return it."""
    MEASURED[name] = float(value)
    return value
