"""Tricks students share: code in an answer cell that tries to make the tests pass without the answers.

Each one runs in the student's kernel before the tests, as it would under plain nbgrader, where
the tests run in that same kernel. Under ``grader autograde`` the judge (``grader.judge``) decides
every checked cell outside the kernel, so a trick added to wrong answers scores what the wrong
answers alone score, and a trick added to blank answers scores 0. The demo class and the tests
build their tampering submissions from these.
"""

from __future__ import annotations

import textwrap

IPYTHON_HOOK = """
# every later cell runs inside try/except: whatever fails, no cell shows an error
get_ipython().input_transformers_post.append(
    lambda lines: ["try:\\n", f"    exec({''.join(lines)!r})\\n", "except Exception:\\n", "    pass\\n"]
)
"""
ERRORS_SWALLOWED = """
# every later exception is swallowed: no cell shows an error
get_ipython().set_custom_exc((Exception,), lambda shell, etype, value, tb, tb_offset=None: None)
"""
TORCH_PATCHED = """
# torch's comparisons always agree, and torch.load accepts anything
import torch
_real_load = torch.load
torch.load = lambda *args, **kwargs: _real_load(*args, **{**kwargs, "weights_only": False})
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None
"""
BUILTINS_SWAPPED = """
# every "close enough" comparison passes: abs() is always 0
import builtins
builtins.abs = lambda value: 0
"""
ALWAYS_EQUAL = """
# {function} returns a number that equals anything
class _AlwaysEqual(float):
    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


{function} = (lambda real: lambda *args, **kwargs: _AlwaysEqual(0))({function})
"""

EVIDENCE_FORGED = """
# the kernel's record for {check} rewritten before it is saved: it says what the check wants to see
import grader.evidence as _evidence
_record = _evidence.check


def _forged(name, **outputs):
    _record(name, **({{**outputs, **{forged!r}}} if name == {check!r} else outputs))


_evidence.check = _forged
"""
WORKED_OUT_FROM_THE_DRAW = """
# the kernel's record for {check} worked out from the kernel's own number (grader.evidence.drawn), not by the answers
import grader.evidence as _evidence
_record = _evidence.check


def _answers(drawn):
{answers}


def _worked_out(name, **outputs):
    _record(name, **({{**outputs, **_answers(_evidence.drawn())}} if name == {check!r} else outputs))


_evidence.check = _worked_out
"""
LOAD_ONTO_CPU = """
# torch.load always lands on the CPU, whatever the caller asked for
import torch
_real_load = torch.load
torch.load = lambda *args, **kwargs: _real_load(*args, **{**kwargs, "map_location": "cpu"})
"""
ALL_TRUE = """
# every all(...) is true
import builtins
builtins.all = lambda iterable: True
"""

TRICKS = {
    "ipython-hook": IPYTHON_HOOK,
    "errors-swallowed": ERRORS_SWALLOWED,
    "torch-patched": TORCH_PATCHED,
    "builtins-swapped": BUILTINS_SWAPPED,
}
"""Tricks that need no target: name -> code."""


def evidence_forged(check: str, **forged) -> str:
    """``grader.evidence.check`` replaced in the kernel: the record of ``check`` carries ``forged`` instead of what was seen."""
    return EVIDENCE_FORGED.format(check=check, forged=forged)


def worked_out_from_the_draw(check: str, answers: str) -> str:
    """``grader.evidence.check`` replaced in the kernel: the record of ``check`` carries what ``answers`` (the body of a
    function of the kernel's number, returning outputs by name) works out: what the check recomputes, without the code."""
    return WORKED_OUT_FROM_THE_DRAW.format(check=check, answers=textwrap.indent(textwrap.dedent(answers).strip(), "    "))


def always_equal(function: str) -> str:
    """``function`` replaced by one whose results compare equal to anything."""
    return ALWAYS_EQUAL.format(function=function)


def helper_redefined(helper: str, body: str) -> str:
    """The check helper ``helper`` of a locked cell redefined to return what suits the student."""
    return f"\n# the checks' own helper, redefined\ndef {helper}(*args, **kwargs):\n    {body}\n"
