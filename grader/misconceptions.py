"""Misconception submissions: the reference solution with one solution block changed.

Each entry is a student of the demo class. It is built from the source notebook, so it
cannot drift from the lesson: if an edit's text is no longer in the solution cell, building
the submission fails and names the cell.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Misconception:
    student: str
    """Student id in the demo class, named for the mistake (e.g. ``no-optimizer-state``)."""
    description: str
    """One line for the grade table."""
    cell: str
    """grade_id of the solution cell that is changed."""
    edits: tuple[tuple[str, str], ...]
    """(old, new) pairs; each ``old`` must occur exactly once in the reference cell."""
    loses: frozenset[str]
    """grade_ids of the test cells on which this submission must score 0 (all others: full)."""
    also_loses_on_cuda: frozenset[str] = frozenset()
    """Test cells it loses only where CUDA is present (a device bug that a CPU cannot show)."""

    def lost_cells(self, cuda: bool) -> frozenset[str]:
        """The test cells scoring 0 on a grader with (or without) CUDA."""
        return self.loses | self.also_loses_on_cuda if cuda else self.loses


SAVING_AND_LOADING = (
    Misconception(
        student="no-optimizer-state",
        description="checkpoints and resumes without the optimizer's state",
        cell="checkpoint_functions",
        edits=(
            ('        "optimizer_state_dict": optimizer.state_dict(),\n', ""),
            ('    if optimizer is not None:\n        optimizer.load_state_dict(checkpoint["optimizer_state_dict"])\n', ""),
        ),
        loses=frozenset({"test_checkpoint_contents", "test_exact_resume"}),
    ),
    Misconception(
        student="numpy-loss",
        description="stores the loss as it comes (a NumPy number breaks weights_only=True)",
        cell="checkpoint_functions",
        edits=(('        "loss": float(loss),\n', '        "loss": loss,\n'),),
        loses=frozenset({"test_checkpoint_contents"}),
    ),
    Misconception(
        student="no-eval-after-load",
        description="returns the loaded model in training mode",
        cell="save_and_load_model",
        edits=(("    model.to(device)\n    model.eval()\n", "    model.to(device)\n"),),
        loses=frozenset({"test_loaded_model_in_eval_mode"}),
    ),
    Misconception(
        student="whole-model-pickle",
        description="saves the whole model object with torch.save(model)",
        cell="save_and_load_model",
        edits=(
            ("    torch.save(model.state_dict(), path)\n", "    torch.save(model, path)\n"),
            (
                "    model = MNISTModel()\n"
                "    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))\n",
                "    model = torch.load(path, map_location=device, weights_only=False)\n",
            ),
        ),
        loses=frozenset({"test_save_load_round_trip", "test_changed_architecture_raises"}),
    ),
    Misconception(
        student="strict-false",
        description="loads with strict=False, hiding a mismatched architecture",
        cell="save_and_load_model",
        edits=(("map_location=device, weights_only=True))\n", "map_location=device, weights_only=True), strict=False)\n"),),
        loses=frozenset({"test_changed_architecture_raises"}),
    ),
    Misconception(
        student="best-is-latest",
        description="overwrites best.pth every epoch, whatever the validation loss",
        cell="train_with_checkpoints",
        edits=(("        if val_loss < best_val_loss:\n", "        if True:  # the latest model is taken as the best\n"),),
        loses=frozenset({"test_periodic_and_best_checkpoints"}),
    ),
    Misconception(
        student="last-not-best",
        description="early stopping stops but keeps the last weights, not the best",
        cell="early_stopping",
        edits=(("    load_checkpoint(checkpoint_path, model, optimizer, device)\n", ""),),
        loses=frozenset({"test_early_stopping_restores_best"}),
    ),
)

GPU_TRAINING = (
    Misconception(
        student="no-mps-fallback",
        description="picks CUDA or else the CPU, never Apple's MPS",
        cell="device_helpers",
        edits=(('    if torch.backends.mps.is_available():\n        return torch.device("mps")\n', ""),),
        loses=frozenset({"test_pick_device"}),
    ),
    Misconception(
        student="move-batch-drops-labels",
        description="move_batch moves the images and returns the labels where they were",
        cell="device_helpers",
        edits=(("    return images.to(device), labels.to(device)\n", "    return images.to(device), labels\n"),),
        loses=frozenset({"test_move_batch", "test_training_moves_everything"}),
        also_loses_on_cuda=frozenset({"test_training_on_real_device", "test_amp_train_step", "test_checkpoint_across_devices"}),
    ),
    Misconception(
        student="labels-not-moved",
        description="moves the inputs to the device but not the labels",
        cell="device_aware_training",
        edits=(("        images, labels = move_batch(images, labels, device)\n", "        images = images.to(device)\n"),),
        loses=frozenset({"test_training_moves_everything"}),
        also_loses_on_cuda=frozenset({"test_training_on_real_device"}),
    ),
    Misconception(
        student="model-not-moved",
        description="moves every batch but never the model",
        cell="device_aware_training",
        edits=(("    model.to(device)\n", ""),),
        loses=frozenset({"test_training_moves_everything"}),
        also_loses_on_cuda=frozenset({"test_training_on_real_device"}),
    ),
    Misconception(
        student="autocast-without-scaler",
        description="runs autocast but calls backward and step without the GradScaler",
        cell="mixed_precision",
        edits=(
            (
                "    scaler.scale(loss).backward()\n    scaler.step(optimizer)\n    scaler.update()\n",
                "    loss.backward()\n    optimizer.step()\n",
            ),
        ),
        loses=frozenset({"test_amp_train_step"}),
    ),
    Misconception(
        student="deprecated-amp-api",
        description="uses the deprecated torch.cuda.amp API",
        cell="mixed_precision",
        edits=(
            ('    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda")\n', "    return torch.cuda.amp.GradScaler()\n"),
            ("    with torch.autocast(device_type=device.type, dtype=amp_dtype(device)):\n", "    with torch.cuda.amp.autocast():\n"),
        ),
        # Its deprecation warnings also reach stderr in the checkpoint test, which nbgrader scores 0.
        loses=frozenset({"test_amp_train_step", "test_checkpoint_across_devices"}),
    ),
    Misconception(
        student="no-map-location",
        description="loads checkpoints without map_location",
        cell="checkpoint_across_devices",
        edits=(
            ("    checkpoint = torch.load(path, map_location=device, weights_only=True)\n", "    checkpoint = torch.load(path, weights_only=True)\n"),
        ),
        loses=frozenset({"test_checkpoint_across_devices"}),
    ),
    Misconception(
        student="scaler-state-unguarded",
        description="loads the GradScaler state even when the saved scaler was disabled",
        cell="checkpoint_across_devices",
        edits=(('    if checkpoint["scaler_state_dict"]:\n        scaler.load_state_dict', "    scaler.load_state_dict"),),
        loses=frozenset({"test_checkpoint_across_devices"}),
    ),
)

FASHION_MNIST_PROJECT = (
    Misconception(
        student="tuning-on-test-set",
        description="validates (chooses checkpoints) on the test set",
        cell="validation_split",
        edits=(
            (
                "val_images, val_labels = all_train_images[val_index], all_train_labels[val_index]\n",
                "val_images, val_labels = test_images, test_labels\n",
            ),
        ),
        loses=frozenset({"test_validation_split"}),
    ),
    Misconception(
        student="eval-in-train-mode",
        description="evaluates without model.eval()",
        cell="training_functions",
        edits=(("    model.eval()\n    total_loss, correct, count = 0.0, 0, 0\n", "    total_loss, correct, count = 0.0, 0, 0\n"),),
        loses=frozenset({"test_evaluate_mode"}),
    ),
    Misconception(
        student="softmax-before-loss",
        description="ends the model with a softmax before nn.CrossEntropyLoss",
        cell="model_definition",
        edits=(("        return self.layers(x)\n", "        return torch.softmax(self.layers(x), dim=1)\n"),),
        loses=frozenset({"test_model_outputs_logits"}),
    ),
    Misconception(
        student="keeps-last-weights",
        description="train_model stops early but returns the last weights, not the best",
        cell="pipeline",
        edits=(
            (
                '    best = torch.load(checkpoint_path, map_location=device, weights_only=True)\n'
                '    model.load_state_dict(best["model_state_dict"])\n',
                "",
            ),
        ),
        loses=frozenset({"test_early_stopping_restores_best"}),
    ),
    Misconception(
        student="checkpoint-without-optimizer",
        description="the best checkpoint holds the model but not the optimizer's state",
        cell="pipeline",
        edits=(('                "optimizer_state_dict": optimizer.state_dict(),\n', ""),),
        loses=frozenset({"test_checkpoint_contents"}),
    ),
    Misconception(
        student="under-trained",
        description="stops after one epoch at a tiny learning rate",
        cell="final_training",
        edits=(
            ("lr=2e-3", "lr=1e-5"),
            ('group["lr"] = 2e-4', 'group["lr"] = 1e-6'),
            ("max_epochs=12", "max_epochs=1"),
            ("max_epochs=8", "max_epochs=1"),
        ),
        loses=frozenset({"test_checkpoint_accuracy_partial", "test_checkpoint_accuracy_full"}),
    ),
    Misconception(
        student="per-class-over-total",
        description="divides each class's correct count by the number of all images",
        cell="per_class",
        edits=(
            (
                "accuracies[k] = (predictions[of_class] == k).float().mean()\n",
                "accuracies[k] = (predictions[of_class] == k).float().sum() / len(labels)\n",
            ),
        ),
        loses=frozenset({"test_per_class_accuracy"}),
    ),
)

MISCONCEPTIONS: dict[str, tuple[Misconception, ...]] = {
    "saving-and-loading": SAVING_AND_LOADING,
    "gpu-training": GPU_TRAINING,
    "fashion-mnist-project": FASHION_MNIST_PROJECT,
}
