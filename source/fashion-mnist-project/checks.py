"""Checks of lesson 3, the Fashion-MNIST project: the saved checkpoint's test accuracy.

The student's model class has to run for this verdict. It runs in a process of its own (in the
sandbox when the judge runs it), from the notebook's own code, with the test images and never their
labels, and it returns predictions only; the check counts the correct ones. A model earns accuracy
points only if it classifies what it was not trained on: its test accuracy must not beat its accuracy
on images of the training set, which it learned from (a model trained on the test split, or one that
carries the test images, does better on them than on anything else), must hold when the images get
noise far below one grey level (a model that looks the test images up collapses), and must fall when
its parameters and buffers start afresh (a model that does not depend on its trained state is not the
one trained), and must stay below what the best published Fashion-MNIST classifiers reach (a model that carries
the labels of the test images and of every training image it could be probed on is right on all of them).

Every check but those two is ``@replayed``: the judge runs its test cell again in a fresh process
(``grader.replay``) on inputs drawn from a number the kernel never saw, and decides the cell on that run's record
(the final training does not run again there: no replayed test reads what it made). The accuracy checks read the
checkpoint of the notebook's own final training, which no replay repeats: the judge loads that file itself and
rebuilds the model from it. ``validation_split``'s output is the split itself, which any partition of the training
set satisfies: its replay loads the dataset and splits it again with the student's cell, and records the validation
images and a drawn sample of the training split's, each with its label, and the first batches of the two loaders.
The validation set must be the same on every run ("seed it", ``@reproducible``).
"""

from __future__ import annotations

import torch
from torch import nn

from grader.checks import Disagrees, close, drawn, load, measure, replayed, reproducible, same_values, visible
from grader.checks.rebuild import model_source, predictions

DEFINITIONS = ("setup", "data")
"""The locked cells the checks use: the test images and labels, and the training set's."""
PROBED = 2_000
"""How many images each probe of the model uses (drawn test images with noise, drawn test images for the model as
built, drawn training images): enough to tell a lookup or a model trained on the test split by percentage points."""
CEILING = 0.97
"""Test accuracy above any published Fashion-MNIST classifier's (about 96 %): a model carrying the labels of the
test images and of the training images gets past the other probes, but not this."""
NOISE = 0.1 / 255 / 0.3530
"""A tenth of one grey level, in the notebook's normalised units."""


def accuracy(e: dict, L: dict) -> float:
    """The checkpoint's test accuracy, after making sure the model classifies rather than looks images up.
    Measured once per notebook, checkpoint and draw: both accuracy checks read the same measurement."""
    visible(e["checkpoint"] is not None, "No checkpoint at BEST_CHECKPOINT: run Step 7.")
    load(e["checkpoint"], "The best checkpoint", disagree=True)
    key = (e["checkpoint"], model_source(L["In"], "FashionModel"), drawn())
    if _measured[0] is None or _measured[0][0] is not L or _measured[0][1] != key:
        try:
            outcome = classified_accuracy(key[0], key[1], L)
        except AssertionError as failed:  # the same failure for both checks, Disagrees (a failed rebuild) included
            outcome = failed
        _measured[0] = (L, key, outcome)
    outcome = _measured[0][2]
    if isinstance(outcome, AssertionError):
        raise outcome
    return measure("test_accuracy", outcome)


_measured: list = [None]
"""(lesson, (checkpoint, model source, draw), accuracy or the AssertionError it raised) of the last measurement."""


def classified_accuracy(checkpoint: bytes, source: str, L: dict) -> float:
    """The test accuracy of the model built from ``source`` and ``checkpoint``, or Disagrees where its predictions
    show that it was trained on the test images, carries them (right on more than ``CEILING`` of them included) or does not
    depend on its trained state."""
    images, labels = L["test_images"], L["test_labels"]
    # the images each probe uses, and the noise, are drawn for the submission: no model can be made for them in advance
    probe = torch.randperm(len(labels), generator=torch.Generator().manual_seed(drawn() + 2))[:PROBED]
    noise = torch.randn(images[probe].shape, generator=torch.Generator().manual_seed(drawn())) * NOISE
    seen = torch.randperm(len(L["all_train_labels"]), generator=torch.Generator().manual_seed(drawn() + 1))[:PROBED]
    found = predictions(
        source, "FashionModel", checkpoint,
        {"trained": images, "noisy": images[probe] + noise, "fresh": images[probe], "seen": L["all_train_images"][seen]},
    )  # fmt: skip
    trained = (found["trained"] == labels).float().mean().item()
    on_probe = (found["trained"][probe] == labels[probe]).float().mean().item()
    noisy, fresh = ((found[v] == labels[probe]).float().mean().item() for v in ("noisy", "fresh"))
    on_training_images = (found["seen"] == L["all_train_labels"][seen]).float().mean().item()
    if trained < 0.85:  # no points to earn: nothing to look into
        return trained
    if trained > on_training_images + 0.02:
        raise Disagrees(
            f"The saved model classifies the test images ({trained:.2%}) better than images of the training set "
            f"({on_training_images:.2%}), which a model trained on the training split has seen: it was trained on the "
            "test images, or carries them. No accuracy points: the test set is for the final measurement only."
        )
    if noisy < on_probe - 0.02:
        raise Disagrees(
            f"With noise of a tenth of one grey level the saved model's test accuracy falls from {on_probe:.2%} to "
            f"{noisy:.2%}: it looks the test images up instead of classifying them. No accuracy points."
        )
    if fresh > on_probe - 0.25:
        raise Disagrees(
            f"With its parameters and buffers started afresh the model still reaches {fresh:.2%} (trained: {on_probe:.2%}): "
            "its predictions do not come from its trained state. No accuracy points."
        )
    if trained > CEILING:
        raise Disagrees(
            f"The saved model classifies {trained:.2%} of the test images correctly, more than the best published "
            "Fashion-MNIST classifiers reach: it carries the test images' labels (and those of the training images it "
            "was probed on). No accuracy points: the test set is for the final measurement only."
        )
    return trained


def accuracy_partial(e: dict, L: dict) -> None:
    """The saved best checkpoint, rebuilt in a fresh process, reaches 85 % test accuracy."""
    found = accuracy(e, L)
    assert found >= 0.85, (
        f"The saved checkpoint reaches {found:.2%} on the test set, below 85 %. The model is under-trained or "
        "under-powered: train longer (early stopping decides when to stop), check the learning rate, and read your curves."
    )


def accuracy_full(e: dict, L: dict) -> None:
    """The same checkpoint reaches 88 % test accuracy."""
    found = accuracy(e, L)
    assert found >= 0.88, (
        f"The saved checkpoint reaches {found:.2%} on the test set, below 88 %. Batch norm, dropout, AdamW with "
        "weight decay and more epochs with early stopping are the tools from this series that get a fully-connected model there."
    )


@replayed
def model_outputs_logits(e: dict, L: dict) -> None:
    """FashionModel(**MODEL_CONFIG) keeps its config and returns one raw logit per class, not probabilities.

    What it checks is a property of any model's outputs, not values recomputed here, so the kernel's record of them
    could be written without a model: the check is replayed, and the replay's own record decides."""
    visible(isinstance(e["config"], dict) and e["config"] == e["model_config"], "Keep the constructor's settings in self.config, equal to MODEL_CONFIG.")
    outputs = e["outputs"]
    visible(isinstance(outputs, torch.Tensor) and outputs.shape == (16, 10), "The model should return [batch, 10] scores.")
    probabilities = bool((outputs >= 0).all() and torch.allclose(outputs.float().sum(dim=1), torch.ones(16), atol=1e-4))
    assert not probabilities, (
        "The model's outputs are probabilities (non-negative, summing to 1). Misconception: the model should end with "
        "softmax. nn.CrossEntropyLoss takes raw logits and applies log-softmax itself; a softmax before it squashes "
        "the gradients and slows or stalls training. Remove the softmax; use it only when you want probabilities."
    )


CHECKPOINT_KEYS = {"model_state_dict", "optimizer_state_dict", "epoch", "val_accuracy", "model_config"}
"""What train_model's checkpoint holds: enough to rebuild the model and resume its training."""


@replayed
def checkpoint_contents(e: dict, L: dict) -> None:
    """The pipeline's best checkpoint loads with weights_only=True and holds what is needed to rebuild and resume."""
    checkpoint = load(e["checkpoint"], "The checkpoint train_model saved", disagree=True)
    visible(isinstance(checkpoint, dict), "The checkpoint should be a dictionary.")
    missing = CHECKPOINT_KEYS - set(checkpoint)
    visible(not missing, (
        f"The checkpoint lacks {sorted(missing)}. Misconception: the weights are the whole checkpoint. To rebuild and "
        "resume you also need the optimizer's state, the epoch, the score it was chosen by and the model's config."
    ))  # fmt: skip
    history = e["history"] if isinstance(e["history"], dict) else {}
    best, accuracies = history.get("best_epoch"), history.get("val_accuracy") or []
    assert checkpoint["epoch"] == best and best in range(1, len(accuracies) + 1) and close(checkpoint["val_accuracy"], accuracies[best - 1]), (
        "The checkpoint file should be the best epoch's (its epoch counted from 1, and its validation accuracy), saved "
        "whenever the accuracy beats the best so far."
    )
    assert isinstance(checkpoint["model_config"], dict), "Save the model's config (a dictionary) in the checkpoint."
    state = checkpoint["model_state_dict"]
    assert isinstance(state, dict) and state and all(isinstance(t, torch.Tensor) for t in state.values()), (
        "model_state_dict should be model.state_dict()."
    )
    optimizer = checkpoint["optimizer_state_dict"]
    assert isinstance(optimizer, dict) and optimizer.get("state"), "The optimizer state in the checkpoint is empty: save optimizer.state_dict()."
    # the checkpoint of the previous test's run on a drawn curve: saved at its epoch, with the optimizer as it was then
    # (two steps an epoch: 64 images in batches of 32); which epoch that should be, that test's check says
    scripted = load(e["scripted_checkpoint"], "The checkpoint train_model saved on the scripted validation curve")
    missing = CHECKPOINT_KEYS - set(scripted if isinstance(scripted, dict) else {})
    assert not missing, f"On another run the checkpoint lacked {sorted(missing)}: save all five entries every time."
    epoch, optimizer = scripted["epoch"], scripted["optimizer_state_dict"]
    steps = [state.get("step") for state in optimizer.get("state", {}).values()] if isinstance(optimizer, dict) else []
    assert isinstance(epoch, int) and steps and all(close(step, 2 * epoch) for step in steps), (
        f"The checkpoint of epoch {epoch!r} holds an optimizer state after {float(steps[0]) if steps else 'no'} steps, not after that "
        "epoch's. Save optimizer.state_dict() at the same moment as the model's weights: resuming needs both as they were then."
    )


@replayed
def per_class_accuracy(e: dict, L: dict) -> None:
    """per_class_accuracy divides by the number of images of each true class, and gives nan for an absent class."""
    result, imbalanced = e["result"], e["imbalanced"]
    visible(isinstance(result, torch.Tensor) and result.shape == (4,), "Return one accuracy per class.")
    visible(torch.allclose(result[:3].float(), torch.tensor([0.75, 0.5, 1.0])), (
        f"Expected [0.75, 0.5, 1.0] for classes 0-2, got {result[:3].tolist()}. Misconception: divide by the number of "
        "all images. Each class's accuracy is (correct predictions of that class) / (images whose true class it is)."
    ))  # fmt: skip
    assert torch.isnan(result[3]), "Class 3 never appears: its accuracy is undefined, return nan (not 0, not an error)."
    assert isinstance(imbalanced, torch.Tensor) and imbalanced.shape == (2,), "Return one accuracy per class."
    assert torch.isnan(imbalanced[0]) and abs(imbalanced[1].item() - 0.9) < 1e-6, (
        "With 9 of 10 class-1 images right, class 1's accuracy is 0.9; class 0 has no images, so nan."
    )
    generator = torch.Generator().manual_seed(drawn())  # the test's drawn labels and predictions, made again here
    drawn_labels = torch.randint(0, 5, (200,), generator=generator)
    guessed = torch.where(torch.rand(200, generator=generator) < 0.7, drawn_labels, torch.randint(0, 6, (200,), generator=generator))
    expected = torch.tensor([(guessed[drawn_labels == k] == k).double().mean().item() if (drawn_labels == k).any() else float("nan") for k in range(6)], dtype=torch.float64)
    got = e["drawn_result"]
    assert isinstance(got, torch.Tensor) and got.shape == (6,) and torch.allclose(got.double(), expected, atol=1e-6, equal_nan=True), (
        f"On other labels and predictions per_class_accuracy gave {got.tolist() if isinstance(got, torch.Tensor) else got}, "
        f"expected {[round(v, 4) for v in expected.tolist()]}: each class's correct predictions over that class's images, nan where absent."
    )


SAMPLED = 2_000
"""How many images of the training split ``validation_split``'s test records, drawn per submission: enough to see
a training split that shares 1 % of the validation images (each drawn image is then one of them with chance
60/54,000: about 2 of 2,000)."""


def each_pixel_row(images: torch.Tensor):
    """Each image of a uint8 [N, 784] tensor as bytes, one at a time: what identifies it."""
    flat = images.reshape(len(images), -1).to(torch.uint8).contiguous().numpy().tobytes()
    size = len(flat) // max(len(images), 1)
    return (flat[start : start + size] for start in range(0, len(flat), size or 1))


def pixel_rows(images: torch.Tensor) -> list[bytes]:
    """Each image of a uint8 [N, 784] tensor as bytes: what identifies it."""
    return list(each_pixel_row(images))


def labelled(dataset, wanted: set[bytes]) -> dict[bytes, set[int]]:
    """Each image of ``wanted`` (as ``pixel_rows``) that a torchvision dataset holds -> the labels it has there (a few
    images appear twice). Only the wanted ones are kept: 60,000 rows kept would cost the judge a quarter of a second."""
    found: dict[bytes, set[int]] = {}
    for row, label in zip(each_pixel_row(dataset.data), dataset.targets.tolist()):
        if row in wanted:
            found.setdefault(row, set()).add(label)
    return found


def share(rows: list[bytes], where) -> float:
    return sum(row in where for row in rows) / max(len(rows), 1)


@replayed
@reproducible(
    "val", "val_labels",
    message="Two fresh runs of your notebook validate on different images. Misconception: a random split needs no seed. "
    "Seed the generator that draws it (torch.Generator().manual_seed(0), or torch.manual_seed(0) first), so that every run "
    "chooses models and epochs on the same validation set.",
)  # fmt: skip
def validation_split(e: dict, L: dict) -> None:
    """The validation images come from the training set, are not also in the training split, are not test images,
    and keep their labels; so do the training split's images (a drawn sample of them); train_loader gives the training
    split, shuffled anew each epoch, and val_loader the validation images."""
    sizes = [int(n) for n in e["sizes"]]
    for name in ("train", "val"):
        visible(isinstance(e[name], torch.Tensor) and e[name].ndim == 2 and e[name].shape[1] == 784, f"The {name} images should be a [N, 1, 28, 28] tensor.")
        visible(len(e[name]) == len(e[f"{name}_labels"]), "One label per image.")
    visible(len(e["train"]) == min(SAMPLED, sizes[0]), f"The test records {SAMPLED:,} images of the training split.")
    total = len(L["all_train_labels"])
    visible(0.05 <= sizes[1] / total <= 0.20, "Use 5-20 % of the training images for validation.")
    val, train = pixel_rows(e["val"]), pixel_rows(e["train"])
    batches = [pixel_rows(t) for key in ("train_batches", "val_batches") for t, _ in e[key] if isinstance(t, torch.Tensor)]
    training = labelled(L["train_set"], {*val, *train, *(row for rows in batches for row in rows)})
    in_test = share(val, set(pixel_rows(L["test_set"].data)))
    assert in_test < 0.01, (
        f"{in_test:.0%} of the validation images are test images. Misconception: the test set is fine for choosing "
        "models and checkpoints. Tuning on it makes the final test accuracy optimistic; carve validation out of the training set."
    )
    assert sum(sizes) == total, "train + validation should together be the 60,000 training images."
    for name, rows in (("validation", val), ("training", train)):
        assert share(rows, training) > 0.99, f"The {name} images should come from the training set."
    assert share(train, set(val)) < 0.01, (
        "Images of the validation set are also in the training split. Misconception: drawing the two parts "
        "separately splits the data. Shuffle the indices once and cut that one permutation in two."
    )
    for name, rows, labels in (("validation", val, e["val_labels"]), ("training", train, e["train_labels"])):
        labelled_right = kept(rows, labels, training)
        assert labelled_right > 0.99, (
            f"Only {labelled_right:.0%} of the {name} images keep their own label. Misconception: images and labels can be "
            "shuffled separately. Index both with the same indices, so that each image keeps its label."
        )
    loaders(e, training, set(val))


def kept(rows: list[bytes], labels, training: dict) -> float:
    """The share of ``rows`` whose label is one the image has in the training set."""
    return sum(int(label) in training.get(row, ()) for row, label in zip(rows, torch.as_tensor(labels).tolist())) / max(len(rows), 1)


def loaders(e: dict, training: dict, val: set[bytes]) -> None:
    """train_loader's first batch of two epochs and val_loader's first: the training split's images with their labels, in
    a new order each epoch; the validation images."""
    batches = {"train_loader": e["train_batches"], "val_loader": e["val_batches"]}
    for name, found in batches.items():
        assert all(isinstance(t, torch.Tensor) and t.ndim == 2 and t.shape[1] == 784 and len(t) == len(labels) for t, labels in found), (
            f"{name} should give batches of (images, labels), the images [N, 1, 28, 28]."
        )
    for name, (rows, labels) in (("train_loader", batches["train_loader"][0]), ("val_loader", batches["val_loader"][0])):
        rows = pixel_rows(rows)
        assert kept(rows, labels, training) > 0.99, f"{name}'s batches should be images of the training set with their own labels."
        in_val = share(rows, val)
        if name == "val_loader":
            assert in_val > 0.99, f"val_loader should give the validation images; {1 - in_val:.0%} of its first batch are not."
        else:
            assert in_val < 0.01, f"train_loader should give the training split; {in_val:.0%} of its first batch are validation images."
    first, second = (pixel_rows(rows) for rows, _ in batches["train_loader"])
    assert first != second, (
        "train_loader gives the same batches in the same order every epoch. Misconception: a random split is shuffled "
        "enough. Shuffle the training loader (shuffle=True), so that each epoch's batches and their order are new."
    )


@replayed
def evaluate_mode(e: dict, L: dict) -> None:
    """evaluate returns the loss per sample (or the mean of the batch means) and the accuracy over all samples, measured
    in eval mode (a model with dropout and batch norm, handed over in training mode), without gradient tracking."""
    visible(close(e["accuracy"], 0.5), f"2 of 4 predictions are right, so the accuracy is 0.5, not {e['accuracy']}.")
    fixed = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), torch.tensor([0, 1, 0, 2])
    visible(close(e["loss"], nn.functional.cross_entropy(*fixed).item()), "evaluate's loss is not the mean cross-entropy.")
    seed = drawn()  # the test's drawn model and images, made again here
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))
    images, labels = torch.randn(200, 1, 28, 28, generator=generator), torch.randint(0, 10, (200,), generator=generator)
    model.eval()
    with torch.no_grad():
        batches = [(model(images[i:i + 64]), labels[i:i + 64]) for i in range(0, 200, 64)]
    losses = [nn.functional.cross_entropy(outputs, y, reduction="sum").item() for outputs, y in batches]
    per_sample, batch_means = sum(losses) / 200, sum(loss / len(y) for loss, (_, y) in zip(losses, batches)) / len(batches)
    right = sum((outputs.argmax(dim=1) == y).sum().item() for outputs, y in batches) / 200
    found = e["drawn_result"]
    assert isinstance(found, list) and len(found) == 2, "evaluate should return (mean loss, accuracy)."
    assert close(found[0], per_sample) or close(found[0], batch_means), (
        f"evaluate returned the loss {found[0]!r}; measured in eval mode it is {per_sample:.5f}. Misconception: evaluation "
        "is just a forward pass. Call model.eval() first: dropout must be off and batch norm must use its running "
        "statistics, or the measurement is noisy and wrong."
    )
    assert close(found[1], right), f"evaluate returned the accuracy {found[1]!r}; over all {len(labels)} images it is {right}."
    assert e["tracking"] and not any(e["tracking"]), (
        "evaluate tracked gradients. Wrap the evaluation in torch.no_grad(): it saves memory and time, and nothing "
        "measured should ever be able to change the model."
    )


def drawn_epoch(seed: int, zero_grad: bool = True) -> tuple[dict, float, float]:
    """The test's drawn model and batches, made again here (after the images evaluate_mode drew), and one epoch of SGD
    over them: (the weights after it, the mean loss per sample, the mean of the batch means)."""
    generator = torch.Generator().manual_seed(seed)
    torch.randn(200, 1, 28, 28, generator=generator), torch.randint(0, 10, (200,), generator=generator)
    torch.manual_seed(seed + 1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    images, labels = torch.randn(96, 1, 28, 28, generator=generator), torch.randint(0, 10, (96,), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for i in range(0, 96, 40):
        if zero_grad:
            optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images[i:i + 40]), labels[i:i + 40])
        loss.backward()
        optimizer.step()
        losses.append((loss.item(), len(labels[i:i + 40])))
    return model.state_dict(), sum(v * n for v, n in losses) / 96, sum(v for v, _ in losses) / len(losses)


@replayed
def one_training_epoch(e: dict, L: dict) -> None:
    """train_one_epoch runs the four-beat loop over every batch (zero the gradients, forward, loss, backward, step) and
    returns the epoch's mean loss per sample (or the mean of the batch means) as a float."""
    state, per_sample, batch_means = drawn_epoch(drawn())
    if not same_values(e["epoch_state"], state):
        assert not same_values(e["epoch_state"], drawn_epoch(drawn(), zero_grad=False)[0]), (
            "train_one_epoch never zeroes the gradients. Misconception: gradients start from zero on their own. "
            "loss.backward() adds to them, so every batch begins with optimizer.zero_grad()."
        )
        raise AssertionError(
            "After one epoch of train_one_epoch the weights are not those of the four-beat loop over every batch: "
            "zero the gradients, forward, loss, backward, step."
        )
    found = e["epoch_loss"]
    assert isinstance(found, float) and (close(found, per_sample, rel_tol=1e-4) or close(found, batch_means, rel_tol=1e-4)), (
        f"train_one_epoch returned {found!r}; the epoch's mean loss per sample is {per_sample:.5f} "
        "(add loss.item() * len(labels) per batch, divide by the number of samples), a Python float."
    )


def scripted_curve(seed: int) -> tuple[int, int, list[int], list[float]]:
    """The test's drawn validation curve, made again here: (best epoch, patience, accuracies in %, each epoch's stamp)."""
    generator = torch.Generator().manual_seed(seed)
    best, patience = 2 + seed % 3, 2 + seed // 3 % 2
    steps = torch.randint(1, 6, (best + patience + 2,), generator=generator).tolist()
    curve = [30 + sum(steps[: epoch + 1]) for epoch in range(best)]
    curve += [curve[-1]] + [curve[-1] - steps[best + k] for k in range(1, patience)] + [curve[-1] + 1, curve[-1] + 2]
    return best, patience, curve, torch.rand(len(curve), generator=generator).tolist()


@replayed
def early_stopping_restores_best(e: dict, L: dict) -> None:
    """On a scripted validation curve, train_model saves a checkpoint whenever the accuracy beats the best so far (a tie
    does not), stops after `patience` epochs without improvement, and returns the best epoch's weights and the history."""
    visible(isinstance(e["val_accuracy"], list) and e["best_epoch"] in range(1, len(e["val_accuracy"]) + 1),
            "best_epoch should be the epoch of the best validation accuracy, counted from 1.")
    best, patience, curve, stamps = scripted_curve(drawn())
    history = e["history"]
    assert isinstance(history, dict) and isinstance(history.get("val_accuracy"), list), "train_model should return the history dictionary."
    ran = len(history["val_accuracy"])
    assert ran == best + patience, (
        f"With the best validation accuracy at epoch {best} and patience {patience}, training should stop after epoch "
        f"{best + patience}; it ran {ran}. Stop when `patience` epochs in a row bring no improvement (a tie is none)."
    )
    assert all(close(found, value / 100) for found, value in zip(history["val_accuracy"], curve)), (
        "history['val_accuracy'] should hold each epoch's validation accuracy from evaluate(model, val_loader, loss_fn, device)."
    )
    assert len(history.get("train_loss", [])) == ran and len(history.get("val_loss", [])) == ran, "The history needs one train and one validation loss per epoch."
    assert history.get("best_epoch") == best, f"The best validation accuracy was at epoch {best}, not {history.get('best_epoch')}."
    checkpoint = load(e["checkpoint"], "The checkpoint train_model saved")
    assert isinstance(checkpoint, dict) and checkpoint.get("epoch") == best, (
        f"The checkpoint at checkpoint_path should be the best epoch's ({best}), counted from 1; it is {checkpoint.get('epoch') if isinstance(checkpoint, dict) else checkpoint!r}."
    )
    saved = checkpoint.get("model_state_dict", {})
    assert isinstance(saved, dict) and close(saved.get("stamp"), stamps[best - 1]), "The checkpoint does not hold the best epoch's weights."
    assert isinstance(checkpoint.get("val_accuracy"), float) and close(checkpoint["val_accuracy"], curve[best - 1] / 100), (
        "The checkpoint's val_accuracy should be the best epoch's validation accuracy, as a float."
    )
    assert checkpoint.get("model_config") == {"hidden": 16}, "The checkpoint's model_config should be the model's config."
    assert close(e["returned_stamp"], stamps[best - 1]), (
        "train_model returned weights that are not the best epoch's. Misconception: early stopping only has to stop; "
        "restore the best checkpoint's weights before returning -- the last ones have already moved past the best."
    )
