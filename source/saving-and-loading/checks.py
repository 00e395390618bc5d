"""Checks of lesson 1, "Saving and loading": one per hidden test, on what the student's code produced.

Every check is ``@replayed``: the judge runs its test cell again in a fresh process (``grader.replay``), where
nothing the student's cells did to their kernel is in force, on inputs drawn from a number the kernel never saw,
and decides the cell on that run's record; no record the kernel wrote (forged, or worked out from the kernel's own
number, such as a drawn model's state) earns a point. The training checks make the test's drawn run again here
with the lesson's own functions and compare every loss, checkpoint and returned state with it; the test's first
run, on fixed data, is compared too only where the drawn run cannot show the misconception (its best epoch is its
last).
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
import torch.nn as nn

from grader.checks import drawn, load, number, replayed, same_tensors, same_values, truth, visible

DEFINITIONS = ("setup", "model_and_training", "check_helpers")
"""The locked cells the checks use: MNISTModel, train_one_epoch, evaluate, model_with_statistics, synthetic_loader."""
STATE_DICT_ADVICE = (
    "Misconception: torch.save(model) is the way to save a model. It pickles a reference to your "
    "class and breaks when the code moves; save model.state_dict() instead."
)


def images(seed: int) -> torch.Tensor:
    """The check's input images (the test cell makes them the same way)."""
    return torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@replayed
def round_trip(e: dict, L: dict) -> None:
    """save_model writes exactly the state_dict; load_model restores it, buffers included, from a file a GPU run wrote
    too (map_location); predictions_match tells models apart, and compares in eval mode whatever mode the models come
    in, without tracking gradients (moving to a device shows in no output on a grader without a GPU)."""
    original = L["model_with_statistics"](seed=drawn()).state_dict()  # the test's second round trip, on a drawn model
    visible(e["saved_file"] is not None, "save_model did not write a file at the path it was given.")
    visible(e["is_model"] is True, "load_model must build and return an MNISTModel.")
    visible(e["new_object"] is True, "load_model must build a new model, not return an existing one.")
    saved = load(e["saved_file"], "The file save_model wrote", STATE_DICT_ADVICE)
    assert isinstance(saved, dict) and set(saved) == set(original), (
        "The file should hold exactly model.state_dict(): one entry per parameter and buffer."
    )
    for name in same_tensors(e["loaded_state"], original):
        raise AssertionError(
            f"{name} differs after loading. Misconception: only weights matter. Batch-norm buffers "
            "(running_mean, running_var) are learned state too, and load_state_dict restores them."
        )
    from_gpu = e["from_gpu"]
    assert not isinstance(from_gpu, str), (
        f"load_model could not load a state_dict saved on a GPU onto the CPU ({from_gpu}). Misconception: a saved file "
        "loads on any machine. torch.load puts every tensor back on the device it was saved from unless told otherwise: "
        "pass map_location=device."
    )
    assert not same_tensors(from_gpu, original), "load_model did not restore a state_dict saved on a GPU."
    visible(truth(e["same"], "predictions_match"), "The loaded model predicts differently from the original.")
    assert not truth(e["different"], "predictions_match"), (
        "predictions_match returned True for two different models: compare their outputs with torch.allclose."
    )
    assert truth(e["same_handed_in_training_mode"], "predictions_match"), (
        "predictions_match said two copies of one model predict differently when they were handed over in training "
        "mode. Compare in eval mode: call .eval() on both models first; in training mode dropout makes every call differ."
    )
    tracking = e["tracking"]
    assert isinstance(tracking, list) and tracking, "predictions_match should run both models on the images and compare their outputs."
    assert not any(tracking), (
        "predictions_match ran the models with gradient tracking on. Misconception: a forward pass that is only compared "
        "costs nothing extra. Autograd records every operation for a backward pass that never comes, and keeps the "
        "activations in memory for it: compare inside torch.no_grad()."
    )


@replayed
def eval_mode(e: dict, L: dict) -> None:
    """The loaded model is in eval mode: two calls agree, and with the original's eval-mode predictions."""
    original = L["model_with_statistics"](seed=3)
    with torch.no_grad():
        expected = original.eval()(images(drawn()))
    visible(e["training"] is False, (
        "load_model returned a model in training mode. Call model.eval() after loading: otherwise dropout "
        "is active and batch norm uses batch statistics, so predictions are noisy and non-reproducible."
    ))
    first, second = e["first"], e["second"]
    assert isinstance(first, torch.Tensor) and first.shape == expected.shape, "The loaded model should return logits of shape [16, 10]."
    assert torch.equal(first, second), (
        "Two calls of the loaded model on the same images disagree. Misconception: a loaded model is ready "
        "to predict as it is. Without model.eval(), dropout and batch norm behave as in training."
    )
    assert torch.allclose(first, expected, atol=1e-6), (
        "The loaded model's predictions differ from the original model's in eval mode: call model.eval() after load_state_dict."
    )


@replayed
def changed_architecture(e: dict, L: dict) -> None:
    """load_model loads a state_dict of the lesson's architecture (a drawn model's) and fails loudly
    (load_state_dict's RuntimeError) on a state_dict of another architecture."""
    expected = L["model_with_statistics"](seed=drawn() + 1).state_dict()
    hidden(isinstance(e["same_architecture"], dict), (
        "load_model failed on a state_dict saved from the lesson's own MNISTModel. Strict loading refuses other "
        "architectures only: matching weights must still load."
    ))  # fmt: skip
    for name in same_tensors(e["same_architecture"], expected):
        raise AssertionError(f"load_model did not restore {name} from a state_dict of the lesson's own MNISTModel.")
    for outcome, accepted, check in (
        (e["wider"], "load_model accepted a state_dict from a model with 512 hidden units. A state_dict holds values, "
         "not architecture: loading it into a different architecture must fail loudly.", visible),
        (e["without_batch_norm"], "load_model loaded a state_dict without any batch-norm entries and did not complain. "
         "Misconception: strict=False (or a try/except) makes loading 'work'. It silently leaves layers "
         "at their initial values; keep the default strict loading so a mismatch fails loudly.", hidden),
    ):  # fmt: skip
        check(isinstance(outcome, list) and "NotImplementedError" not in outcome, "load_model is not written yet.")
        check(outcome != ["returned"], accepted)
        check("RuntimeError" in outcome, (
            f"load_model raised {outcome[0]} on a state_dict file, not load_state_dict's RuntimeError: "
            "build an MNISTModel in code and load the state_dict into it."
        ))


@replayed
def checkpoint_contents(e: dict, L: dict) -> None:
    """A checkpoint holds model, optimizer, epoch and a float loss; load_checkpoint restores both states and returns (epoch, loss)."""
    trained = L["model_with_statistics"](seed=drawn()).train()  # the test's second checkpoint, of a drawn model
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-3)
    L["train_one_epoch"](trained, L["synthetic_loader"](seed=drawn()), optimizer, nn.CrossEntropyLoss())
    checkpoint = load(e["checkpoint"], "The checkpoint save_checkpoint wrote", "Store plain values: state_dicts, int, float.", disagree=True)
    visible(isinstance(checkpoint, dict), "save_checkpoint should save a dictionary.")
    missing = {"epoch", "model_state_dict", "optimizer_state_dict", "loss"} - set(checkpoint)
    visible(not missing, (
        f"The checkpoint lacks {sorted(missing)}. Misconception: the model's weights are enough to resume. "
        "Adam's momentum (exp_avg) and adaptive rates (exp_avg_sq) live in optimizer.state_dict() and must be saved too."
    ))
    visible(checkpoint["epoch"] == 7 and checkpoint["loss"] == 0.25, "Store the epoch and the loss you were given.")
    returned = e["returned"]
    assert isinstance(returned, list) and returned == [7, 0.25], "load_checkpoint must return (epoch, loss) from the checkpoint."
    for name in same_tensors(e["model_state"], trained.state_dict()):
        raise AssertionError(f"load_checkpoint did not restore {name}.")
    restored = e["optimizer_state"].get("state", {}) if isinstance(e["optimizer_state"], dict) else {}
    for index, expected in optimizer.state_dict()["state"].items():
        assert index in restored, (
            "load_checkpoint left the optimizer empty. Misconception: restoring the model is enough to resume; "
            "without optimizer.load_state_dict(...) Adam restarts with no momentum (the pilot with amnesia)."
        )
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert not same_tensors(restored[index], {key: expected[key]}), (
                f"The optimizer's {key} was not restored: call optimizer.load_state_dict(checkpoint['optimizer_state_dict'])."
            )
    reloaded = load(
        e["numpy_loss_checkpoint"], "A checkpoint saved with a NumPy loss", "Store the loss as a plain Python number: float(loss)."
    )
    assert isinstance(reloaded, dict) and isinstance(reloaded.get("loss"), float), "Store the loss as a Python float: float(loss)."


class Run(NamedTuple):
    """A test's training run, made again here with the lesson's own train_one_epoch and evaluate."""

    val_losses: list[float]
    states: list[dict]
    """The model's state_dict after each epoch."""


class RelabelledValidation:
    """The test's validation set of its drawn early-stopping run, made again here: the training images after each
    epoch, with their own labels after the epochs in ``improving`` and every label moved by one after the others;
    which one an epoch sees follows the optimizer's steps."""

    def __init__(self, optimizer, train_loader, improving: set[int]):
        self.optimizer, self.train_loader, self.improving, self.dataset = optimizer, train_loader, improving, train_loader.dataset

    def __len__(self):
        return len(self.train_loader)

    def __iter__(self):
        steps = max((int(state["step"]) for state in self.optimizer.state.values() if "step" in state), default=0)
        epoch = steps // len(self.train_loader)
        for images, labels in self.train_loader:
            yield images, labels if epoch in self.improving else (labels + 1) % 10


def reference_run(
    L: dict, train_seed: int, val_seed: int | None, epochs: int, patience: int | None = None, seed: int = 0, improving: set[int] = frozenset()
) -> Run:
    """``epochs`` epochs (fewer if ``patience`` epochs in a row bring no improvement) of a fresh MNISTModel (built after
    ``torch.manual_seed(seed)``) with Adam(lr=1e-3) on ``synthetic_loader(seed=train_seed)``, each followed by the
    validation loss on ``synthetic_loader(n=128, seed=val_seed)`` (``val_seed`` None: on ``RelabelledValidation``,
    improving after the epochs ``improving``): the run the test asks the student's function for."""
    torch.manual_seed(seed)
    model = L["MNISTModel"]()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = L["synthetic_loader"](seed=train_seed)
    val = L["synthetic_loader"](n=128, seed=val_seed) if val_seed is not None else RelabelledValidation(optimizer, train, improving)
    run, best, waited = Run([], []), float("inf"), 0
    for _ in range(epochs):
        L["train_one_epoch"](model, train, optimizer, nn.CrossEntropyLoss())
        run.val_losses.append(L["evaluate"](model, val, nn.CrossEntropyLoss())[0])
        run.states.append(copy.deepcopy(model.state_dict()))
        best, waited = (run.val_losses[-1], 0) if run.val_losses[-1] < best else (best, waited + 1)
        if patience is not None and waited >= patience:
            break
    return run


def same_losses(found, expected: list[float]) -> bool:
    """The recorded losses are the reference run's (up to another thread count's rounding)."""
    return isinstance(found, list) and len(found) == len(expected) and all(
        math.isclose(number(f, "Each validation loss"), x, rel_tol=1e-4, abs_tol=1e-6) for f, x in zip(found, expected)
    )


def holds(state, expected: dict) -> bool:
    """``state`` is a state_dict with ``expected``'s values (up to round-off, ``grader.checks.same_values``)."""
    return same_values(state, expected)


def state_of(checkpoint, what: str, advice: str) -> dict:
    state = checkpoint.get("model_state_dict") if isinstance(checkpoint, dict) else None
    assert isinstance(state, dict), f"{what} should be a checkpoint saved with save_checkpoint ({advice})."
    return state


COUNTED_FROM_0 = " Count epochs from 1: 'epoch' is the number of epochs completed, 1 after the first epoch."
SAVE_CHECKPOINT = "keys 'epoch', 'model_state_dict', 'optimizer_state_dict', 'loss'"


@replayed
def periodic_and_best(e: dict, L: dict) -> None:
    """train_with_checkpoints saves every save_every epochs and keeps the best model by validation loss."""
    files, history = e["checkpoints"], e["history"]
    saved = sorted(name for name in files if name.startswith("checkpoint_epoch_"))
    visible(saved == ["checkpoint_epoch_2.pth", "checkpoint_epoch_4.pth", "checkpoint_epoch_6.pth"], (
        f"With num_epochs=6 and save_every=2 expected checkpoints after epochs 2, 4 and 6, found {saved}."
    ))
    visible(isinstance(history, dict), "train_with_checkpoints should return the history dictionary.")
    visible(len(history.get("val_loss", [])) == 6 and len(history.get("train_loss", [])) == 6, "Record one train and one val loss per epoch.")
    visible("best.pth" in files, "No best.pth: save a checkpoint whenever the validation loss improves.")
    seed = drawn()  # the test's second run, on data drawn for the submission
    drawn_run = reference_run(L, train_seed=seed, val_seed=seed + 1, epochs=4, seed=seed)
    drawn_files = e["drawn_checkpoints"]
    assert sorted(n for n in drawn_files if n.startswith("checkpoint_epoch_")) == ["checkpoint_epoch_3.pth"], (
        "With num_epochs=4 and save_every=3, save checkpoint_epoch_3.pth only: after every save_every-th epoch."
    )
    periodic_run(drawn_files, e["drawn_history"], e["drawn_model_state"], drawn_run, save_every=3)
    if drawn_run.val_losses[-1] == min(drawn_run.val_losses):  # this draw cannot tell the best model from the latest: the first run can
        run = reference_run(L, train_seed=5, val_seed=6, epochs=6)
        assert run.val_losses.index(min(run.val_losses)) < 5, "Check scenario broken: the best epoch should come before the last one."
        periodic_run(files, history, e["model_state"], run, save_every=2)


def periodic_run(files: dict, history, model_state, run: Run, save_every: int) -> None:
    """One run of train_with_checkpoints against the same run made here."""
    assert isinstance(history, dict) and same_losses(history.get("val_loss"), run.val_losses), (
        "history['val_loss'] should hold each epoch's validation loss, from evaluate(model, val_loader, loss_fn, device) "
        "after that epoch's train_one_epoch."
    )
    best_epoch = 1 + run.val_losses.index(min(run.val_losses))
    best = load(files.get("best.pth"), "best.pth")
    best_state = state_of(best, "best.pth", SAVE_CHECKPOINT)
    assert holds(best_state, run.states[best_epoch - 1]), (
        f"best.pth does not hold the weights of epoch {best_epoch}, whose validation loss was the lowest"
        + (
            ": it holds the last epoch's model. Misconception: the latest model is the best model. Save best.pth "
            "only when the validation loss beats the best so far." if holds(best_state, run.states[-1]) else
            ". Save best.pth right after the epoch whose validation loss beats the best so far, with that epoch's weights."
        )
    )  # fmt: skip
    assert best.get("epoch") == best_epoch, (
        f"best.pth holds the best weights, but its 'epoch' is {best.get('epoch')}, not {best_epoch}."
        + (COUNTED_FROM_0 if best.get("epoch") == best_epoch - 1 else "")
    )
    assert history.get("best_epoch") == best_epoch, (
        f"history['best_epoch'] is {history.get('best_epoch')}, but the lowest validation loss was at epoch {best_epoch}."
        + (COUNTED_FROM_0 if history.get("best_epoch") == best_epoch - 1 else "")
    )
    for epoch in range(save_every, len(run.states) + 1, save_every):
        last = load(files.get(f"checkpoint_epoch_{epoch}.pth"), f"checkpoint_epoch_{epoch}.pth")
        assert isinstance(last, dict) and last.get("epoch") == epoch, (
            f"checkpoint_epoch_{epoch}.pth says epoch {last.get('epoch') if isinstance(last, dict) else None}: "
            "a checkpoint's 'epoch' is the number of epochs completed." + (COUNTED_FROM_0 if isinstance(last, dict) and last.get("epoch") == epoch - 1 else "")
        )
        assert holds(last.get("model_state_dict"), run.states[epoch - 1]), (
            f"checkpoint_epoch_{epoch}.pth does not hold the model as it was after epoch {epoch}: save the checkpoint after that epoch's training."
        )
    assert holds(model_state, run.states[-1]), "After train_with_checkpoints the model should hold its last epoch's weights."


@replayed
def exact_resume(e: dict, L: dict) -> None:
    """4 epochs straight == 2 epochs + checkpoint + fresh model and optimizer + resume + 2 epochs."""
    MNISTModel = L["MNISTModel"]
    loader = L["synthetic_loader"](seed=drawn())  # the test's second run, on drawn data

    def run_epochs(model, optimizer, first_epoch, last_epoch):
        for epoch in range(first_epoch, last_epoch + 1):
            torch.manual_seed(epoch)  # the same dropout masks in both runs
            L["train_one_epoch"](model, loader, optimizer, nn.CrossEntropyLoss())

    torch.manual_seed(0)
    straight = MNISTModel()
    run_epochs(straight, torch.optim.Adam(straight.parameters(), lr=1e-3), 1, 4)
    torch.manual_seed(0)
    first_half = MNISTModel()
    first_half_optimizer = torch.optim.Adam(first_half.parameters(), lr=1e-3)
    run_epochs(first_half, first_half_optimizer, 1, 2)
    control = MNISTModel()
    control.load_state_dict(first_half.state_dict())
    run_epochs(control, torch.optim.Adam(control.parameters(), lr=1e-3), 3, 4)
    assert not same_values(control.state_dict(), straight.state_dict()), "Check scenario broken: a fresh optimizer should change the result."
    visible(e["epoch"] == 2, f"resume_from_checkpoint should return the checkpoint's epoch (2), got {e['epoch']}.")
    assert same_values(e["resumed_state"], straight.state_dict()), (
        "Training resumed from the checkpoint ended with different parameters than training straight through. "
        "Misconception: loading the model's weights is enough to resume. Restore the optimizer's state too "
        "(Adam's exp_avg, exp_avg_sq and step), so the run continues exactly where it stopped."
    )


@replayed
def early_stopping(e: dict, L: dict) -> None:
    """Early stopping stops `patience` epochs after the best one and hands back the best weights, not the last."""
    history = e["history"]
    visible(isinstance(history, dict) and history.get("val_loss"), "train_with_early_stopping should return the history dictionary.")
    val_losses = [number(v, "Each validation loss") for v in history["val_loss"]]
    best_epoch = 1 + min(range(len(val_losses)), key=val_losses.__getitem__)
    visible(history.get("best_epoch") == best_epoch, (
        f"best_epoch is {history.get('best_epoch')}, but the lowest validation loss was at epoch {best_epoch}."
    ))
    visible(len(val_losses) == min(best_epoch + 3, 20), (
        f"With patience=3 and the best epoch {best_epoch}, training should stop after epoch {min(best_epoch + 3, 20)}, "
        f"but it ran {len(val_losses)} epochs. Count the epochs without improvement and reset the count when the loss improves."
    ))
    seed = drawn()  # the test's second run, on data, a patience and a validation curve drawn for the submission
    patience = 2 + seed % 2
    improving = {1, 3 + seed // 2 % (patience - 1)}  # after a stall shorter than `patience`, the loss improves again
    drawn_run = reference_run(L, train_seed=seed, val_seed=None, epochs=12, patience=patience, seed=seed, improving=improving)
    stopping_run(e["drawn_checkpoint"], e["drawn_history"], e["drawn_model_state"], drawn_run, patience)
    if drawn_run.val_losses[-1] == min(drawn_run.val_losses):  # this draw never stopped early: the first run does
        run = reference_run(L, train_seed=8, val_seed=9, epochs=20, patience=3)
        assert run.val_losses[-1] > min(run.val_losses), "Check scenario broken: the last epoch should be worse than the best."
        stopping_run(e["checkpoint"], history, e["model_state"], run, patience=3)


def stopping_run(checkpoint, history, model_state, run: Run, patience: int) -> None:
    """One run of train_with_early_stopping against the same run made here."""
    best_epoch = 1 + run.val_losses.index(min(run.val_losses))
    found = history.get("val_loss") if isinstance(history, dict) else None
    assert isinstance(found, list) and same_losses(found[: len(run.val_losses)], run.val_losses[: len(found)]), (
        "history['val_loss'] should hold each epoch's validation loss, from evaluate(model, val_loader, loss_fn, device) "
        "after that epoch's train_one_epoch."
    )
    assert len(found) == len(run.val_losses), (
        f"With patience={patience} and the best epoch {best_epoch}, training should stop after epoch {len(run.val_losses)}, "
        f"but it stopped after epoch {len(found)}. Misconception: patience counts every epoch without improvement. It "
        "counts those in a row: reset the count to 0 whenever the loss improves."
        if len(found) < len(run.val_losses) else
        f"With patience={patience} and the best epoch {best_epoch}, training should stop after epoch {len(run.val_losses)}, "
        f"but it ran {len(found)} epochs. Count the epochs without improvement and stop as soon as there are `patience` in a row."
    )  # fmt: skip
    assert history.get("best_epoch") == best_epoch, f"best_epoch is {history.get('best_epoch')}, but the lowest validation loss was at epoch {best_epoch}."
    saved = load(checkpoint, "The file at checkpoint_path", "Save it with your save_checkpoint from Exercise 2.")
    saved_state = saved.get("model_state_dict", saved) if isinstance(saved, dict) else None
    assert holds(saved_state, run.states[best_epoch - 1]), (
        f"The checkpoint at checkpoint_path does not hold the weights of epoch {best_epoch}, the best: save it (with "
        f"save_checkpoint, {SAVE_CHECKPOINT}) only when the validation loss improves on the best so far."
    )
    if isinstance(saved, dict) and "epoch" in saved:
        assert saved["epoch"] == best_epoch, (
            f"The checkpoint holds the best weights but says epoch {saved['epoch']}, not {best_epoch}."
            + (" Count epochs from 1." if saved["epoch"] == best_epoch - 1 else "")
        )
    kept_last = holds(model_state, run.states[-1])
    assert holds(model_state, run.states[best_epoch - 1]), (
        f"The returned model does not hold the weights of epoch {best_epoch}, the best"
        + (" (it holds the last epoch's weights)" if kept_last else "") + ", although the best checkpoint was saved. "
        "Either the model was never restored -- misconception: early stopping only has to stop; it must also restore the "
        "best weights -- or it was restored from `best_state = model.state_dict()`, which is a live view of the model's "
        "tensors that the later epochs kept changing: reload the checkpoint file, or keep copy.deepcopy(model.state_dict())."
    )


def hidden(condition, message: str) -> None:
    assert condition, message
