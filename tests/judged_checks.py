"""The checks of the tiny course's ``judged`` assignment: ``make_course`` copies this file to
``source/judged/checks.py`` (``tests/tiny_course.py``)."""

from __future__ import annotations

import torch

from grader.checks import drawn, replayed, visible

DEFINITIONS = ("helpers",)


def add(e: dict, L: dict) -> None:
    """add sums every pair of the helper's inputs, negative numbers and floats included."""
    visible(e["first"] == 3, "add(1, 2) should be 3")
    pairs = L["check_pairs"](drawn())
    expected = [a + b for a, b in pairs]
    assert e["sums"] == expected, f"add gave {e['sums']} for {pairs}: it must handle negative numbers and floats"


def scale(e: dict, L: dict) -> None:
    """scale doubles every element, negative and fractional ones too."""
    visible(torch.allclose(e["ones"], torch.full((3,), 2.0)), "scale(torch.ones(3)) should be all 2")
    x = L["check_vector"](drawn())
    assert isinstance(e["doubled"], torch.Tensor) and torch.equal(e["doubled"], 2 * x), "scale must double every element"


@replayed
def call_each(e: dict, L: dict) -> None:
    """call_each calls f exactly once per value, in order (the spy's record: the judge replays the test)."""
    assert e["calls"] == [1, 2, 3], f"call_each called f with {e['calls']}: once per value, in order"
