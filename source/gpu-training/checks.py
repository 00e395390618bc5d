"""Checks of lesson 2, "GPU training".

Every point is earned by outputs of the student's functions on inputs drawn for the submission
(``drawn()``): the moved batch, the model and loss after an epoch, after ``fit``, after one
mixed-precision step through an enabled scaler, and the states a checkpoint brings back. Each
check recomputes what they must be here, with the lesson's ``MNISTModel`` and the loop the text
describes. Devices, dtypes and how ``torch.load`` was called only take points away: on a grader
without a GPU, where a tensor went is seen on PyTorch's ``meta`` device.

Every check is ``@replayed``: the judge runs its test cell again in a fresh process (``grader.replay``),
where nothing the student's cells did to their kernel is in force, on inputs drawn from a number the
kernel never saw, and the replay's record must pass the check too. That covers what the kernel's
record alone could not: behaviour (which devices reached the loss on the meta device; how
``torch.load`` was called, and what it returned where the kernel's ``torch.load`` may have been
patched), ``pick_device``'s outputs, which no drawn input can vary (a device per runtime), and
outputs that code reading the kernel's own number could work out without the functions asked for.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from grader.checks import close, drawn, load, replayed, same_values, visible

DEFINITIONS = ("setup", "model")
"""The locked cells the checks use: the lesson's imports and MNISTModel."""
PREFERENCE = {
    "True,False": ("cuda", "With CUDA available, pick_device must choose cuda."),
    "True,True": ("cuda", "CUDA comes first, before MPS."),
    "False,True": ("mps", "Without CUDA but with Apple's MPS, pick_device must choose mps."),
    "False,False": ("cpu", "With no GPU, pick_device must fall back to the CPU."),
}
"""'cuda available,mps available' -> (the device pick_device must choose, why)."""
CPU = torch.device("cpu")


@replayed
def pick_device(e: dict, L: dict) -> None:
    """pick_device prefers CUDA, then MPS, then the CPU, and returns a torch.device."""
    visible(e["is_device"] is True, "pick_device must return a torch.device, not a string.")
    visible(e["picked"] in ("cuda", "mps", "cpu"), f"Unexpected device {e['picked']}.")
    chosen = e["chosen"]
    assert isinstance(chosen, dict), "pick_device should return a device for every combination of GPUs."
    for available, (device, why) in PREFERENCE.items():
        assert chosen.get(available) == device, why


@replayed
def move_batch(e: dict, L: dict) -> None:
    """move_batch returns the batch it was given, images and labels, both moved to the device."""
    visible(e["devices"][:1] == ["meta"], "move_batch did not move the images.")
    generator = torch.Generator().manual_seed(drawn())  # the test's drawn batch, made again here
    images, labels = torch.randn(6, 1, 28, 28, generator=generator), torch.randint(0, 10, (6,), generator=generator)
    returned = e["on_cpu"]
    assert isinstance(returned, list) and len(returned) == 2, "move_batch must return the pair (images, labels)."
    assert all(isinstance(t, torch.Tensor) for t in returned), "move_batch must return two tensors."
    assert torch.equal(returned[0], images) and torch.equal(returned[1], labels), (
        "move_batch must return the images and the labels it was given (in that order), unchanged but for their device."
    )
    assert e["devices"] == ["meta", "meta"], (
        "move_batch moved the images but not the labels. Misconception: moving to the GPU is one line. "
        "The labels meet the outputs at the loss, so they must be on the same device."
    )
    assert e["shapes"] == [[4, 1, 28, 28], [4]], "move_batch must not change the shapes."


def drawn_loader(seed: int, n: int, batch_size: int) -> DataLoader:
    """The tests' drawn data: random images, each labelled by which of its first ten pixels is largest."""
    images = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    return DataLoader(TensorDataset(images, images.flatten(1)[:, :10].argmax(dim=1)), batch_size=batch_size)


def epoch(model, loader, optimizer) -> tuple[float, float]:
    """One epoch of the loop the lesson describes: (mean loss per sample, mean of the batch means)."""
    model.train()
    total, count, means = 0.0, 0, []
    for images, labels in loader:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        total, count = total + loss.item() * len(labels), count + len(labels)
        means.append(loss.item())
    return total / count, sum(means) / len(means)


def same_loss(found, expected: tuple[float, float]) -> bool:
    return isinstance(found, float) and any(close(found, value, rel_tol=1e-4, abs_tol=1e-5) for value in expected)


def state_after(found, expected: dict, what: str) -> None:
    assert same_values(found, expected), f"{what}, the weights are not those of the loop the exercise describes."


META_MOVE = "Moving to the GPU is not one line: move the model once (model.to(device)), and every batch's inputs and labels."


@replayed
def training_moves_everything(e: dict, L: dict) -> None:
    """train_one_epoch runs the usual loop and returns the mean loss; on the meta device, fit puts the labels, the
    outputs, every parameter and every buffer on the chosen device."""
    visible(isinstance(e["epoch_loss"], float) and math.isfinite(e["epoch_loss"]), "train_one_epoch should return a finite float.")
    seed = drawn()
    torch.manual_seed(seed)
    model = L["MNISTModel"](dropout=0.0)
    expected = epoch(model, drawn_loader(seed, 80, 32), torch.optim.SGD(model.parameters(), lr=0.05))
    assert isinstance(e["drawn_loss"], float), f"train_one_epoch should return a Python float, not {type(e['drawn_loss']).__name__}."
    state_after(e["drawn_state"], model.state_dict(), "After one epoch of train_one_epoch (zero the gradients, forward, loss, backward, step per batch)")
    assert same_loss(e["drawn_loss"], expected), (
        f"train_one_epoch returned {e['drawn_loss']:.5f}; the epoch's mean loss per sample is {expected[0]:.5f} "
        "(add loss.item() * len(labels) per batch, divide by the number of samples)."
    )
    if e["mismatch"] is False:
        return  # the loop failed on the meta device for a reason other than devices: there is nothing to see there
    placed = {name: device for name, device in e["placed"].items() if device != "meta"}
    if e["label_devices"] == ["cpu"] and e["output_devices"] == ["meta"]:
        raise AssertionError(
            "On another device the labels stayed on the CPU while the outputs did not. Misconception: moving the model "
            "and the inputs is enough. " + META_MOVE
        )
    assert not placed, f"After fit, {', '.join(sorted(placed)[:3])} stayed on the CPU: move the whole model with model.to(device)."
    assert not e["mismatch"] and e["label_devices"] == ["meta"] and e["output_devices"] == ["meta"], (
        f"On another device, a tensor stayed on the CPU (outputs on {e['output_devices']}, labels on {e['label_devices']}). " + META_MOVE
    )


@replayed
def training_on_real_device(e: dict, L: dict) -> None:
    """fit trains num_epochs epochs with Adam at the given learning rate and returns one float loss per epoch."""
    losses = e["losses"]
    visible(isinstance(losses, list) and len(losses) == 3 and all(isinstance(v, float) for v in losses), "fit should return one float loss per epoch.")
    visible(all(math.isfinite(v) for v in losses), f"Training produced non-finite losses: {losses}")
    visible(losses[-1] < losses[0], f"The loss should go down over 3 epochs of an easy task: {losses}")
    seed = drawn()
    torch.manual_seed(seed)
    model = L["MNISTModel"](dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=(1e-3, 3e-3)[seed % 2])
    expected = [epoch(model, drawn_loader(seed, 96, 32), optimizer) for _ in range(2)]
    found = e["drawn_losses"]
    assert isinstance(found, list) and len(found) == 2, f"fit(..., num_epochs=2) should return 2 losses, not {found!r}."
    state_after(e["drawn_state"], model.state_dict(), "After fit (one Adam optimizer at lr, built once, over the model's parameters)")
    assert all(same_loss(f, x) for f, x in zip(found, expected)), f"fit returned {found}; the epochs' mean losses are {[round(x[0], 5) for x in expected]}."


AMP_DTYPES = {"cpu": "torch.bfloat16", "cuda": "torch.float16", "mps": "torch.bfloat16"}
"""The dtype autocast uses per device type, as the exercise states it."""


def amp_step(model, images, labels, scaler, dtype=torch.bfloat16, autocast=True) -> float:
    """The lesson's mixed-precision step on the CPU with SGD(lr=0.1): the check's reference."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    optimizer.zero_grad()
    with torch.autocast(device_type="cpu", dtype=dtype, enabled=autocast):
        loss = nn.functional.cross_entropy(model(images), labels)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


@replayed
def amp_train_step(e: dict, L: dict) -> None:
    """amp_dtype and make_scaler per device type (float16 and an enabled scaler on CUDA only); one step: forward and
    loss under autocast (bfloat16 on the CPU), backward on the scaled loss, scaler.step, scaler.update; float32
    parameters; the loss returned as a float."""
    visible(isinstance(e["loss"], float) and math.isfinite(e["loss"]), f"amp_train_step should return a finite float loss, got {e['loss']!r}.")
    assert e["dtypes"] == AMP_DTYPES, (
        f"amp_dtype gave {e['dtypes']}. Misconception: every GPU computes in float16. float16, with its scaler, is "
        "CUDA's; on the CPU and on Apple's MPS autocast uses bfloat16, which needs no scaler."
    )
    assert e["scalers"] == {"cpu": False, "cuda": True, "mps": False}, (
        f"On a runtime with CUDA, make_scaler enabled its scaler for {e['scalers']}. Enable it for a CUDA device only "
        "(enabled=device.type == 'cuda'): it follows the device the step runs on, not whether the machine has a GPU."
    )
    seed = drawn()
    generator = torch.Generator().manual_seed(seed)
    images, labels = torch.randn(48, 1, 28, 28, generator=generator), torch.randint(0, 10, (48,), generator=generator)
    init_scale = 2.0 ** (8 + seed % 8)

    def reference(**how):
        torch.manual_seed(seed)
        model = L["MNISTModel"](dropout=0.0)
        scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1)
        return amp_step(model, images, labels, scaler, **how), model.state_dict(), scaler.get_scale()

    loss, state, scale = reference()
    found = e["drawn_state"]
    assert isinstance(found, dict) and all(
        t.dtype == torch.float32 for t in found.values() if isinstance(t, torch.Tensor) and t.is_floating_point()
    ), "Parameters must stay float32 under mixed precision: do not call model.half(); autocast handles the casts."
    if not same_values(found, state):
        if same_values(found, reference(autocast=False)[1]):
            raise AssertionError(
                "The step ran in float32: run the forward pass and the loss under "
                "torch.autocast(device_type=device.type, dtype=amp_dtype(device)). The deprecated torch.cuda.amp.autocast "
                "does nothing on a CPU."
            )
        raise AssertionError(
            "The parameters after one step are not those of scaler.scale(loss).backward(), scaler.step(optimizer). "
            "Misconception: autocast alone is mixed precision. In float16 small gradients underflow to zero; the scaler "
            "multiplies the loss before backward and divides the gradients back before the step."
        )
    assert e["drawn_scale"] == scale, (
        f"After the step the scaler's scale is {e['drawn_scale']}, expected {scale}: the step did not end with "
        "scaler.update(). Misconception: autocast alone is mixed precision. Go through the scaler: "
        "scaler.scale(loss).backward(), scaler.step(optimizer), scaler.update()."
    )
    assert isinstance(e["drawn_loss"], float) and close(e["drawn_loss"], loss, rel_tol=1e-4, abs_tol=1e-5), (
        f"amp_train_step returned {e['drawn_loss']!r}; the step's loss is {loss:.5f}: return loss.item()."
    )


@replayed
def checkpoint_across_devices(e: dict, L: dict) -> None:
    """save_checkpoint writes the four keys; load_checkpoint loads a GPU-saved checkpoint onto the CPU (map_location),
    restores model, optimizer and scaler (the scaler only from a non-empty state) and returns the epoch."""
    seed = drawn()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = L["MNISTModel"](dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    optimizer.zero_grad()
    images, labels = torch.randn(32, 1, 28, 28, generator=generator), torch.randint(0, 10, (32,), generator=generator)
    nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
    scale, saved_epoch = 2.0 ** (4 + seed % 8), 1 + seed % 50

    saved = load(e["file"], "The checkpoint save_checkpoint wrote")
    keys = {"model_state_dict", "optimizer_state_dict", "scaler_state_dict", "epoch"}
    assert isinstance(saved, dict) and keys <= set(saved), f"save_checkpoint must save one dictionary with the keys {sorted(keys)}."
    assert saved["epoch"] == saved_epoch, "save_checkpoint must save the epoch it is given."
    assert same_values(saved["model_state_dict"], model.state_dict()), "save_checkpoint must save model.state_dict()."
    assert saved["scaler_state_dict"].get("scale") == scale, "save_checkpoint must save scaler.state_dict()."
    assert saved["optimizer_state_dict"].get("state"), "save_checkpoint must save optimizer.state_dict(), with its moment estimates."

    landed = e["landed"]
    assert set(landed) <= {"cpu"}, (
        f"torch.load put the checkpoint's tensors on {landed}, not on the CPU that load_checkpoint was asked for. "
        "A checkpoint saved on a GPU holds CUDA tensors: pass map_location=device."
    )
    assert e["epoch"] == saved_epoch, f"load_checkpoint should return the saved epoch ({saved_epoch}), got {e['epoch']!r}."
    assert same_values(e["model"], model.state_dict()), "load_checkpoint did not restore the model's weights."
    restored = e["optimizer"].get("state", {}) if isinstance(e["optimizer"], dict) else {}
    expected = optimizer.state_dict()["state"]
    assert restored.keys() == expected.keys() and all(
        same_values(restored[k], {n: v for n, v in expected[k].items() if isinstance(v, torch.Tensor)}) for k in expected
    ), "load_checkpoint did not restore the optimizer's state (its moment estimates): optimizer.load_state_dict(...)."
    assert all(t.device.type == "cpu" for s in restored.values() for t in s.values() if isinstance(t, torch.Tensor)), (
        "The optimizer state did not land on the CPU."
    )
    assert e["scale"] == scale, "load_checkpoint did not restore the scaler's state: scaler.load_state_dict(...)."
    assert e["empty_scaler_state"] == "returned", (
        "load_checkpoint passed an empty GradScaler state to an enabled scaler. A run without CUDA saves a disabled "
        "scaler, whose state_dict() is {}: load the scaler's state only when the saved state is not empty."
    )
    assert e["weights_only"] is not False, "Load checkpoints with weights_only=True."

