"""Checks of lesson 2, "GPU training", that rest on what the student's functions return.

The lesson's other tests observe how code behaves while it runs (a loss that records devices, a
scaler that records calls, a recorder around ``torch.load``) and still decide in the kernel.
"""

from __future__ import annotations

from . import visible

DEFINITIONS = ()
"""The checks need no locked cell: their inputs are written out in the test cells."""
PREFERENCE = {
    "True,False": ("cuda", "With CUDA available, pick_device must choose cuda."),
    "True,True": ("cuda", "CUDA comes first, before MPS."),
    "False,True": ("mps", "Without CUDA but with Apple's MPS, pick_device must choose mps."),
    "False,False": ("cpu", "With no GPU, pick_device must fall back to the CPU."),
}
"""'cuda available,mps available' -> (the device pick_device must choose, why)."""


def pick_device(e: dict, L: dict) -> None:
    """pick_device prefers CUDA, then MPS, then the CPU, and returns a torch.device."""
    visible(e["is_device"] is True, "pick_device must return a torch.device, not a string.")
    visible(e["picked"] in ("cuda", "mps", "cpu"), f"Unexpected device {e['picked']}.")
    chosen = e["chosen"]
    assert isinstance(chosen, dict), "pick_device should return a device for every combination of GPUs."
    for available, (device, why) in PREFERENCE.items():
        assert chosen.get(available) == device, why


def move_batch(e: dict, L: dict) -> None:
    """move_batch moves both the inputs and the labels to the device, shapes unchanged."""
    visible(e["devices"][:1] == ["meta"], "move_batch did not move the images.")
    assert e["devices"] == ["meta", "meta"], (
        "move_batch moved the images but not the labels. Misconception: moving to the GPU is one line. "
        "The labels meet the outputs at the loss, so they must be on the same device."
    )
    assert e["shapes"] == [[4, 1, 28, 28], [4]], "move_batch must not change the shapes."
