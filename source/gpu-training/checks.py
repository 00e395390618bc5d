"""Checks of lesson 2, "GPU training".

``pick_device`` and ``move_batch`` are judged on what they return. The training, mixed-precision
and checkpoint tests observe how the student's code behaves while it runs (a loss that records
devices, a scaler that records calls, a recorder around ``torch.load``): those checks are
``@replayed``, so the judge also runs their test cells in a fresh process on the student's
definitions alone, where nothing the student's cells did to their kernel is in force.
"""

from __future__ import annotations

import math

import torch

from grader.checks import replayed, same_tensors, visible

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


META_MOVE = "Moving to the GPU is not one line: move the model once (model.to(device)), and every batch's inputs and labels."


@replayed
def training_moves_everything(e: dict, L: dict) -> None:
    """fit puts the model's outputs, the labels, every parameter and every buffer on the chosen (meta) device."""
    visible(e["output_devices"] == ["meta"], f"The model's outputs were on {e['output_devices']}, not on the chosen device.")
    assert e["label_devices"] == ["meta"], (
        "The labels reached the loss on the CPU. Misconception: moving the model and the inputs is enough. Move the labels too."
    )
    for name, device in e["placed"].items():
        assert device == "meta", f"After fit, {name} is on {device}: move the whole model with model.to(device)."


@replayed
def training_on_real_device(e: dict, L: dict) -> None:
    """On this runtime's device, fit returns one finite float loss per epoch, the loss goes down, the parameters stay there."""
    losses = e["losses"]
    visible(isinstance(losses, list) and len(losses) == 3 and all(isinstance(v, float) for v in losses), "fit should return one float loss per epoch.")
    visible(all(math.isfinite(v) for v in losses), f"Training produced non-finite losses: {losses}")
    assert losses[-1] < losses[0], f"The loss did not go down over 3 epochs of an easy task: {losses}"
    assert set(e["placed"].values()) == {e["device"]}, f"After fit the parameters are not on {e['device']}."


@replayed
def amp_train_step(e: dict, L: dict) -> None:
    """A mixed-precision step: forward pass in float16 (CUDA) or bfloat16 (CPU), scale -> step -> update, float32 parameters, an update."""
    expected = "torch.float16" if e["device"] == "cuda" else "torch.bfloat16"
    assert e["output_dtypes"] == [expected], (
        f"The model's outputs were {e['output_dtypes']}, expected {expected}: the forward pass must run under "
        "torch.autocast(device_type=device.type, dtype=amp_dtype(device)). The deprecated torch.cuda.amp.autocast "
        "does nothing on a CPU."
    )
    assert e["scaler_calls"] == ["scale", "step", "update"], (
        f"The scaler saw {e['scaler_calls']}; expected scale -> step -> update. Misconception: autocast alone is mixed "
        "precision. In float16 small gradients underflow to zero; scaler.scale(loss).backward(), scaler.step(optimizer) "
        "and scaler.update() keep them."
    )
    after = e["after"]
    assert all(isinstance(t, torch.Tensor) and t.dtype == torch.float32 for t in after.values() if t.is_floating_point()), (
        "Parameters must stay float32 under mixed precision: do not call model.half(); autocast handles the casts."
    )
    assert same_tensors(after, e["before"], rtol=0, atol=0), "The step did not change the parameters."


@replayed
def checkpoint_across_devices(e: dict, L: dict) -> None:
    """load_checkpoint loads a GPU-saved checkpoint onto the CPU (map_location), with weights_only, and training resumes."""
    assert e["load_calls"], "load_checkpoint never called torch.load."
    landed = e["landed"]
    assert set(landed) <= {"cpu"}, (
        f"torch.load put the checkpoint's tensors on {landed}, not on the CPU that load_checkpoint was asked for. "
        "A checkpoint saved on a GPU holds CUDA tensors: pass map_location=device."
    )
    assert e["weights_only"] is not False, "Load checkpoints with weights_only=True."
    assert set(e["optimizer_devices"]) <= {"cpu"}, "The optimizer state did not land on the CPU."
    if e["scales"] is not None:
        assert e["scales"][0] == e["scales"][1], "The scaler's scale was not restored."
    assert math.isfinite(e["resumed_loss"]), "Training did not resume on the CPU with a finite loss after load_checkpoint."
