"""Checks of lesson 1, "Saving and loading": one per hidden test, on what the student's code produced."""

from __future__ import annotations

import torch
import torch.nn as nn

from grader.checks import drawn, load, number, same_tensors, truth, visible

DEFINITIONS = ("setup", "model_and_training", "check_helpers")
"""The locked cells the checks use: MNISTModel, train_one_epoch, evaluate, model_with_statistics, synthetic_loader."""
STATE_DICT_ADVICE = (
    "Misconception: torch.save(model) is the way to save a model. It pickles a reference to your "
    "class and breaks when the code moves; save model.state_dict() instead."
)


def images(seed: int) -> torch.Tensor:
    """The check's input images (the test cell makes them the same way)."""
    return torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def round_trip(e: dict, L: dict) -> None:
    """save_model writes exactly the state_dict; load_model restores it, buffers included; predictions_match tells models
    apart, and compares in eval mode whatever mode the models come in ("without gradients" shows in no output)."""
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
    visible(truth(e["same"], "predictions_match"), "The loaded model predicts differently from the original.")
    assert not truth(e["different"], "predictions_match"), (
        "predictions_match returned True for two different models: compare their outputs with torch.allclose."
    )
    assert truth(e["same_handed_in_training_mode"], "predictions_match"), (
        "predictions_match said two copies of one model predict differently when they were handed over in training "
        "mode. Compare in eval mode: call .eval() on both models first; in training mode dropout makes every call differ."
    )


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


def changed_architecture(e: dict, L: dict) -> None:
    """load_model fails loudly (load_state_dict's RuntimeError) on a state_dict of another architecture."""
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
    val_losses = [number(v, "Each validation loss") for v in history["val_loss"]]
    best_epoch = 1 + min(range(6), key=val_losses.__getitem__)
    assert best_epoch < 6, "Check scenario broken: the best epoch should come before the last one."
    best = load(files["best.pth"], "best.pth")
    assert isinstance(best, dict) and {"epoch", "model_state_dict"} <= set(best), (
        "best.pth should be a checkpoint saved with save_checkpoint (keys 'epoch', 'model_state_dict', "
        f"'optimizer_state_dict', 'loss'); it holds {sorted(best) if isinstance(best, dict) else type(best).__name__}."
    )
    best_val_loss = validation_loss(L, best["model_state_dict"], seed=6, what="best.pth")
    is_last = abs(best_val_loss - val_losses[-1]) < 1e-5
    assert abs(best_val_loss - min(val_losses)) < 1e-5, (
        f"best.pth's weights give validation loss {best_val_loss:.4f}, but the lowest was {min(val_losses):.4f} "
        f"(epoch {best_epoch})" + (
            ": best.pth holds the last epoch's model. Misconception: the latest model is the best model. Save best.pth "
            "only when the validation loss beats the best so far." if is_last else
            ". Save best.pth right after the epoch whose validation loss beats the best so far, with that epoch's weights."
        )
    )  # fmt: skip
    counted_from_0 = " Count epochs from 1: 'epoch' is the number of epochs completed, 1 after the first epoch."
    assert best["epoch"] == best_epoch, (
        f"best.pth holds the best weights, but its 'epoch' is {best['epoch']}, not {best_epoch}."
        + (counted_from_0 if best["epoch"] == best_epoch - 1 else "")
    )
    assert history.get("best_epoch") == best_epoch, (
        f"history['best_epoch'] is {history.get('best_epoch')}, but the lowest validation loss was at epoch {best_epoch}."
        + (counted_from_0 if history.get("best_epoch") == best_epoch - 1 else "")
    )
    last = load(files["checkpoint_epoch_6.pth"], "checkpoint_epoch_6.pth")
    assert isinstance(last, dict) and last.get("epoch") == 6, (
        f"checkpoint_epoch_6.pth says epoch {last.get('epoch') if isinstance(last, dict) else None}: "
        "a checkpoint's 'epoch' is the number of epochs completed." + (counted_from_0 if isinstance(last, dict) and last.get("epoch") == 5 else "")
    )
    assert not same_tensors(last.get("model_state_dict", {}), e["model_state"]), (
        "checkpoint_epoch_6.pth does not hold the model as it was after epoch 6: save the checkpoint after that epoch's training."
    )


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
    assert same_tensors(control.state_dict(), straight.state_dict(), atol=1e-6), "Check scenario broken: a fresh optimizer should change the result."
    visible(e["epoch"] == 2, f"resume_from_checkpoint should return the checkpoint's epoch (2), got {e['epoch']}.")
    assert not same_tensors(e["resumed_state"], straight.state_dict(), atol=1e-6), (
        "Training resumed from the checkpoint ended with different parameters than training straight through. "
        "Misconception: loading the model's weights is enough to resume. Restore the optimizer's state too "
        "(Adam's exp_avg, exp_avg_sq and step), so the run continues exactly where it stopped."
    )


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
    assert val_losses[-1] > min(val_losses), "Check scenario broken: the last epoch should be worse than the best."
    saved = load(e["checkpoint"], "The file at checkpoint_path", "Save it with your save_checkpoint from Exercise 2.")
    saved_state = saved.get("model_state_dict", saved) if isinstance(saved, dict) else None
    saved_val_loss = validation_loss(
        L, saved_state, seed=9, what="The file at checkpoint_path",
        advice="save a checkpoint with save_checkpoint (keys 'epoch', 'model_state_dict', 'optimizer_state_dict', 'loss')",
    )  # fmt: skip
    assert abs(saved_val_loss - min(val_losses)) < 1e-5, (
        f"The checkpoint at checkpoint_path has validation loss {saved_val_loss:.4f}, the best epoch had "
        f"{min(val_losses):.4f}: save it only when the validation loss improves on the best so far."
    )
    if isinstance(saved, dict) and "epoch" in saved:
        assert saved["epoch"] == best_epoch, (
            f"The checkpoint holds the best weights but says epoch {saved['epoch']}, not {best_epoch}."
            + (" Count epochs from 1." if saved["epoch"] == best_epoch - 1 else "")
        )
    final_val_loss = validation_loss(L, e["model_state"], seed=9, what="The returned model")
    kept_last = abs(final_val_loss - val_losses[-1]) < 1e-5
    assert abs(final_val_loss - min(val_losses)) < 1e-5, (
        f"The returned model has validation loss {final_val_loss:.4f}, the best epoch had {min(val_losses):.4f}"
        + (" (it holds the last epoch's weights)" if kept_last else "") + ", although the best checkpoint was saved. "
        "Either the model was never restored -- misconception: early stopping only has to stop; it must also restore the "
        "best weights -- or it was restored from `best_state = model.state_dict()`, which is a live view of the model's "
        "tensors that the later epochs kept changing: reload the checkpoint file, or keep copy.deepcopy(model.state_dict())."
    )


def hidden(condition, message: str) -> None:
    assert condition, message


def validation_loss(L: dict, state, seed: int, what: str, advice: str = "save the model's state_dict") -> float:
    """The loss on ``synthetic_loader(n=128, seed=seed)`` of an MNISTModel holding ``state``, computed here."""
    model = L["MNISTModel"]()
    try:
        model.load_state_dict(state)
    except Exception as error:
        raise AssertionError(
            f"{what} does not hold the model's weights: {advice}; loading it failed with {type(error).__name__}."
        ) from None
    loss, _ = L["evaluate"](model, L["synthetic_loader"](n=128, seed=seed), nn.CrossEntropyLoss())
    return loss
