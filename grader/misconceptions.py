"""Demo-class submissions built by editing the reference solution's cells.

Misconceptions: the reference with one solution block changed the wrong way; each must lose
exactly the test cells it names. Correct variants: the reference with answers written another way
that the lesson's text allows (several cells per student, to keep the test suite short); each
must keep full marks.

Each entry is a student of the demo class. It is built from the source notebook, so it
cannot drift from the lesson: if an edit's text is no longer in the solution cell, building
the submission fails and names the cell.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import tricks


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
    more_cells: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    """(grade_id, edits) of further solution cells the same submission changes."""
    written: tuple[tuple[str, str], ...] = ()
    """(grade_id, source) of solution cells this student wrote whole, from the exercise's text alone (after any ``edits``)."""
    trick: str = ""
    """Code appended to ``cell`` that tampers with the kernel (``grader.tricks``): it must not change the scores."""
    flagged: frozenset[str] = frozenset()
    """Test cells the trick makes pass in the kernel, which the judge must flag (passed in the kernel, failed the judge)."""
    judge_only: bool = False
    """A mistake only the grader's judge can see: it takes a second fresh run (``grader.checks.reproducible``), and
    plain nbgrader runs each check once, in the kernel, so there it keeps the points."""
    fails_in_the_kernel_on_cuda: frozenset[str] = frozenset()
    """Test cells whose visible checks already fail in the kernel on CUDA (they run the student's code on the device):
    no trick makes them pass there, so they are not flagged there."""

    def cell_edits(self) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
        """(grade_id, edits) of every cell the submission changes, ``cell`` first."""
        return ((self.cell, self.edits), *self.more_cells)

    def lost_cells(self, cuda: bool) -> frozenset[str]:
        """The test cells scoring 0 on a grader with (or without) CUDA."""
        return self.loses | self.also_loses_on_cuda if cuda else self.loses

    def flagged_cells(self, cuda: bool) -> frozenset[str]:
        """The test cells the judge flags on a grader with (or without) CUDA."""
        return self.flagged - self.fails_in_the_kernel_on_cuda if cuda else self.flagged


SAVING_AND_LOADING = (
    Misconception(
        student="no-optimizer-state",
        description="checkpoints and resumes without the optimizer's state",
        cell="checkpoint_functions",
        edits=(
            ('        "optimizer_state_dict": optimizer.state_dict(),\n', ""),
            ('    if optimizer is not None:\n        optimizer.load_state_dict(checkpoint["optimizer_state_dict"])\n', ""),
        ),
        # Exercise 3's check resumes with a load_checkpoint of its own: an Exercise 2 slip costs Exercise 2 only.
        loses=frozenset({"test_checkpoint_contents"}),
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
        student="compare-in-train-mode",
        description="predictions_match compares the models in whatever mode they come in, never calling eval()",
        cell="save_and_load_model",
        edits=(("    model.eval()\n    loaded_model.eval()\n", ""),),
        loses=frozenset({"test_save_load_round_trip"}),
    ),
    Misconception(
        student="compare-with-gradients",
        description="predictions_match runs the models with gradient tracking on, never entering torch.no_grad()",
        cell="save_and_load_model",
        edits=(
            (
                "    with torch.no_grad():\n        return torch.allclose(model(images), loaded_model(images))\n",
                "    return torch.allclose(model(images), loaded_model(images))\n",
            ),
        ),
        loses=frozenset({"test_save_load_round_trip"}),
    ),
    Misconception(
        student="strict-false",
        description="loads with strict=False, hiding a mismatched architecture",
        cell="save_and_load_model",
        edits=(("map_location=device, weights_only=True))\n", "map_location=device, weights_only=True), strict=False)\n"),),
        loses=frozenset({"test_changed_architecture_raises"}),
    ),
    Misconception(
        student="refuses-every-file",
        description="load_model raises load_state_dict's RuntimeError on every file, matching or not",
        cell="save_and_load_model",
        edits=(("    model.to(device)\n", "    raise RuntimeError(\"size mismatch\")\n"),),
        loses=frozenset({"test_save_load_round_trip", "test_loaded_model_in_eval_mode", "test_changed_architecture_raises"}),
    ),
    Misconception(
        student="best-is-latest",
        description="overwrites best.pth every epoch, whatever the validation loss",
        cell="train_with_checkpoints",
        edits=(("        if val_loss < best_val_loss:\n", "        if True:  # the latest model is taken as the best\n"),),
        loses=frozenset({"test_periodic_and_best_checkpoints"}),
    ),
    Misconception(
        student="patience-never-reset",
        description="counts every epoch without improvement towards patience, not only those in a row",
        cell="early_stopping",
        edits=(("            epochs_without_improvement = 0\n", ""),),
        loses=frozenset({"test_early_stopping_restores_best"}),
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
        # The hidden checks of Exercises 2-4 move batches with a move_batch of their own: on a CPU this costs Exercise 1
        # only. On CUDA the visible checks of Exercises 2-4 train on the device through the student's own move_batch,
        # whose labels stay on the CPU: the student's training really fails there, in the kernel.
        loses=frozenset({"test_move_batch"}),
        also_loses_on_cuda=frozenset({"test_training_moves_everything", "test_training_on_real_device", "test_amp_train_step"}),
    ),
    Misconception(
        student="labels-not-moved",
        description="moves the inputs to the device but not the labels",
        cell="device_aware_training",
        edits=(("        images, labels = move_batch(images, labels, device)\n", "        images = images.to(device)\n"),),
        loses=frozenset({"test_training_moves_everything"}),
        also_loses_on_cuda=frozenset({"test_training_on_real_device"}),
        fails_in_the_kernel_on_cuda=frozenset({"test_training_moves_everything", "test_training_on_real_device"}),
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
        student="backward-unscaled",
        description="calls loss.backward() on the unscaled loss, then scaler.step and scaler.update",
        cell="mixed_precision",
        edits=(("    scaler.scale(loss).backward()\n", "    loss.backward()\n"),),
        # Exercise 4's check resumes with a step of its own, so this costs Exercise 3 only.
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
        # Warnings cost no points (c.IgnorePattern), and Exercise 4's check resumes with a step of its own.
        loses=frozenset({"test_amp_train_step"}),
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
        student="unseeded-split",
        description="draws the validation split from NumPy's generator without seeding it",
        cell="validation_split",
        edits=(
            (
                "split = torch.randperm(len(all_train_labels), generator=torch.Generator().manual_seed(0))\n",
                "split = torch.from_numpy(np.random.permutation(len(all_train_labels)))\n",
            ),
        ),
        loses=frozenset({"test_validation_split"}),
        judge_only=True,
    ),
    Misconception(
        student="unshuffled-training-loader",
        description="builds train_loader without shuffling: the same batches in the same order every epoch",
        cell="validation_split",
        edits=(
            (
                "train_loader = TensorLoader(train_images, train_labels, batch_size=128, shuffle=True, seed=0)\n",
                "train_loader = TensorLoader(train_images, train_labels, batch_size=128, shuffle=False)\n",
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
        student="tie-is-improvement",
        description="counts a validation accuracy equal to the best as an improvement",
        cell="pipeline",
        edits=(("        if val_accuracy > best_accuracy:\n", "        if val_accuracy >= best_accuracy:\n"),),
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


def with_short_training(m: Misconception, under_trained: Misconception) -> Misconception:
    """``m`` with the under-trained student's final training too (two epochs at a tiny learning rate): for a
    mistake in a cell the final training's quality does not show, so the submission grades in seconds instead
    of a minute. It loses the accuracy cells as well as its own."""
    return replace(
        m,
        student=f"{m.student}+short-training",
        description=f"{m.description}; trains two epochs only",
        more_cells=(*m.more_cells, (under_trained.cell, under_trained.edits)),
        loses=m.loses | under_trained.loses,
    )


SHORT_TRAINING = (
    "tuning-on-test-set", "unseeded-split", "unshuffled-training-loader", "eval-in-train-mode", "softmax-before-loss",
    "keeps-last-weights", "tie-is-improvement", "checkpoint-without-optimizer", "per-class-over-total",
)
"""Project mistakes whose test cells do not depend on how well the final model trained: in the demo class they
train two epochs only (``with_short_training``)."""
FASHION_MNIST_PROJECT_STUDENTS = tuple(
    with_short_training(m, {n.student: n for n in FASHION_MNIST_PROJECT}["under-trained"]) if m.student in SHORT_TRAINING else m
    for m in FASHION_MNIST_PROJECT
)
"""The project's misconception students as the demo class grades them."""

NO_LOSS: frozenset[str] = frozenset()

SAVING_AND_LOADING_CORRECT = (
    Misconception(
        student="correct-other-ways",
        description="correct, written other ways the text allows: full marks",
        cell="checkpoint_functions",
        edits=(('        "loss": float(loss),\n', '        "loss": loss.item() if torch.is_tensor(loss) else float(loss),\n'),),
        loses=NO_LOSS,
        more_cells=(
            (
                "train_with_checkpoints",  # os.makedirs; a 0-based loop that stores the epochs completed
                (
                    (
                        "    checkpoint_dir = pathlib.Path(checkpoint_dir)\n    checkpoint_dir.mkdir(parents=True, exist_ok=True)\n",
                        "    os.makedirs(checkpoint_dir, exist_ok=True)\n    checkpoint_dir = pathlib.Path(checkpoint_dir)\n",
                    ),
                    (
                        "    for epoch in range(1, num_epochs + 1):\n",
                        "    for index in range(num_epochs):\n        epoch = index + 1  # epochs completed\n",
                    ),
                ),
            ),
            (
                "resume_from_checkpoint",  # restores from the file itself instead of calling load_checkpoint
                (
                    (
                        "    epoch, _ = load_checkpoint(path, model, optimizer, device)\n",
                        "    checkpoint = torch.load(path, map_location=device, weights_only=True)\n"
                        '    model.load_state_dict(checkpoint["model_state_dict"])\n'
                        '    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])\n'
                        '    epoch = checkpoint["epoch"]\n',
                    ),
                ),
            ),
            (
                "early_stopping",  # the series' idea: keep a copy of the best state_dict (and save just the state_dict)
                (
                    (
                        "            save_checkpoint(checkpoint_path, model, optimizer, epoch, val_loss)\n",
                        "            torch.save(model.state_dict(), checkpoint_path)\n"
                        "            best_state = copy.deepcopy(model.state_dict())\n",
                    ),
                    ("    load_checkpoint(checkpoint_path, model, optimizer, device)\n", "    model.load_state_dict(best_state)\n"),
                ),
            ),
            ("save_and_load_model", (("    with torch.no_grad():\n", "    with torch.inference_mode():\n"),)),  # no tracking either
        ),
    ),
)

GPU_TRAINING_WRITTEN = (
    (
        "device_helpers",
        "import functools\n\n\n"
        "def pick_device():\n"
        "    # torch.accelerator names the runtime's accelerator (CUDA or MPS)\n"
        "    if torch.accelerator.is_available():\n"
        "        return torch.device(torch.accelerator.current_accelerator().type)\n"
        "    return torch.device(\"cpu\")\n\n\n"
        "def _to(device, *tensors):\n"
        "    return tuple(tensor.to(device) for tensor in tensors)\n\n\n"
        "def move_batch(images, labels, device):\n"
        "    return _to(device, images, labels)\n\n\n"
        "DEVICE = pick_device()\n"
        "!echo \"training on {DEVICE}\"\n",
    ),
    (
        "device_aware_training",
        "%%time\n"
        "LR = float(os.environ.get(\"COURSE_LR\", \"1e-3\"))\n\n\n"
        "def make_epoch_runner(log_every=0):\n"
        "    def run_epoch(model, loader, optimizer, loss_fn, device):\n"
        "        model.train()\n"
        "        batch_losses = []\n"
        "        for step, (images, labels) in enumerate(loader):\n"
        "            images, labels = move_batch(images, labels, device)\n"
        "            optimizer.zero_grad(set_to_none=True)\n"
        "            loss = loss_fn(model(images), labels)\n"
        "            loss.backward()\n"
        "            optimizer.step()\n"
        "            batch_losses.append(loss.item())\n"
        "            if log_every and step % log_every == 0:\n"
        "                print(f\"step {step}: {batch_losses[-1]:.4f}\")\n"
        "        return sum(batch_losses) / len(batch_losses)\n\n"
        "    return run_epoch\n\n\n"
        "train_one_epoch = make_epoch_runner()\n\n\n"
        "def logged(function):\n"
        "    @functools.wraps(function)\n"
        "    def wrapper(*args, **kwargs):\n"
        "        losses = function(*args, **kwargs)\n"
        "        print(\"epoch losses:\", [round(loss, 4) for loss in losses])\n"
        "        return losses\n\n"
        "    return wrapper\n\n\n"
        "@logged\n"
        "def fit(model, train_loader, loss_fn, device=DEVICE, num_epochs=1, lr=LR):\n"
        "    model = model.to(device)\n"
        "    optimizer = torch.optim.Adam(model.parameters(), lr=lr)\n"
        "    return [train_one_epoch(model, train_loader, optimizer, loss_fn, device) for _ in range(num_epochs)]\n",
    ),
    (
        "mixed_precision",
        "amp_dtype = lambda device: {\"cuda\": torch.float16}.get(torch.device(device).type, torch.bfloat16)\n\n\n"
        "class make_scaler:\n"
        "    # a class where a function is asked: make_scaler(device) builds the scaler\n"
        "    def __new__(cls, device):\n"
        "        return torch.amp.GradScaler(\"cuda\", enabled=torch.device(device).type == \"cuda\")\n\n\n"
        "class AmpStep:\n"
        "    def __call__(self, model, images, labels, optimizer, loss_fn, scaler, device):\n"
        "        images, labels = move_batch(images, labels, device)\n"
        "        optimizer.zero_grad()\n"
        "        with torch.autocast(device.type, dtype=amp_dtype(device)):\n"
        "            outputs = model(images)\n"
        "            loss = loss_fn(outputs, labels)\n"
        "        scaler.scale(loss).backward()\n"
        "        scaler.step(optimizer)\n"
        "        scaler.update()\n"
        "        return float(loss.detach())\n\n\n"
        "amp_train_step = AmpStep()\n",
    ),
    (
        "checkpoint_across_devices",
        "from pathlib import Path\n\n"
        "STATES = (\"model_state_dict\", \"optimizer_state_dict\", \"scaler_state_dict\")\n"
        "load = functools.partial(torch.load, weights_only=True)\n\n\n"
        "def save_checkpoint(path, model, optimizer, scaler, epoch):\n"
        "    states = dict(zip(STATES, (model.state_dict(), optimizer.state_dict(), scaler.state_dict())))\n"
        "    torch.save({**states, \"epoch\": epoch}, Path(path))\n\n\n"
        "def load_checkpoint(path, model, optimizer, scaler, device):\n"
        "    checkpoint = load(Path(path), map_location=device)\n"
        "    model.load_state_dict(checkpoint[\"model_state_dict\"])\n"
        "    optimizer.load_state_dict(checkpoint[\"optimizer_state_dict\"])\n"
        "    if checkpoint.get(\"scaler_state_dict\"):\n"
        "        scaler.load_state_dict(checkpoint[\"scaler_state_dict\"])\n"
        "    return checkpoint[\"epoch\"]\n",
    ),
)
"""gpu-training's four answer cells as a student might write them from the text alone: torch.accelerator, a module-level
device computed by a call and used as a default argument, a shell escape, %%time, a value read from the environment, a
factory, a decorator, a lambda, classes where functions are asked, functools.partial."""

GPU_TRAINING_CORRECT = (
    Misconception(
        student="correct-other-ways",
        description="correct, written other ways the text allows: full marks",
        cell="device_aware_training",  # logging with .detach().cpu().item(), .tolist(), a running accuracy; mean of batch means
        edits=(
            ("    total_loss, count = 0.0, 0\n", "    total_loss, count, correct = 0.0, 0, 0\n"),
            ("        loss = loss_fn(model(images), labels)\n", "        outputs = model(images)\n        loss = loss_fn(outputs, labels)\n"),
            (
                "        total_loss += loss.item() * len(labels)\n        count += len(labels)\n",
                "        total_loss += loss.detach().cpu().item()  # the mean of the batch means\n"
                "        count += 1\n"
                "        correct += (outputs.argmax(dim=1) == labels).sum().item()\n"
                "        logged = (loss.tolist(), float(loss.cpu()), f\"{loss:.4f}\")\n",
            ),
        ),
        loses=NO_LOSS,
        more_cells=(
            (
                "mixed_precision",  # GradScaler's device left at its default, "cuda"
                (
                    (
                        '    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda")\n',
                        '    return torch.amp.GradScaler(enabled=device.type == "cuda")\n',
                    ),
                    ("    return loss.item()\n", "    return float(loss)\n"),
                ),
            ),
            (
                "checkpoint_across_devices",  # map_location given positionally
                (
                    (
                        "    checkpoint = torch.load(path, map_location=device, weights_only=True)\n",
                        "    checkpoint = torch.load(path, device, weights_only=True)\n",
                    ),
                    ('    if checkpoint["scaler_state_dict"]:\n', '    if len(checkpoint["scaler_state_dict"]) > 0:\n'),
                ),
            ),
        ),
    ),
    Misconception(
        student="correct-with-helpers",
        description="correct, with helpers, constants and a fallback import of its own: full marks (the judge's replay keeps them)",
        cell="device_aware_training",
        edits=(
            (
                "def train_one_epoch(",
                "try:\n    from tqdm.auto import tqdm\nexcept ImportError:\n    tqdm = lambda items, **kwargs: items\n"
                "criterion = nn.CrossEntropyLoss()\n\n\n"
                "def one_step(model, images, labels, optimizer, loss_fn):\n    optimizer.zero_grad()\n"
                "    loss = loss_fn(model(images), labels)\n    loss.backward()\n    optimizer.step()\n    return loss\n\n\n"
                "def train_one_epoch(",
            ),
            (
                "        optimizer.zero_grad()\n        loss = loss_fn(model(images), labels)\n        loss.backward()\n        optimizer.step()\n",
                "        loss = one_step(model, images, labels, optimizer, loss_fn)\n",
            ),
            ("    for images, labels in loader:\n", "    for images, labels in tqdm(loader, disable=True):\n"),
        ),
        loses=NO_LOSS,
        more_cells=(
            (
                "device_helpers",
                (("    return images.to(device), labels.to(device)\n", "    return tuple(t.to(device, non_blocking=True) for t in (images, labels))\n"),),
            ),
            (
                "mixed_precision",
                (
                    ("def amp_dtype(device):", 'AMP_DTYPES = {"cuda": torch.float16}\n\n\ndef amp_dtype(device):'),
                    ('    return torch.float16 if device.type == "cuda" else torch.bfloat16\n', "    return AMP_DTYPES.get(device.type, torch.bfloat16)\n"),
                ),
            ),
            ("checkpoint_across_devices", (("map_location=device, weights_only=True)", "map_location=torch.device(device), weights_only=True)"),)),
        ),
    ),
    Misconception(
        student="correct-in-other-forms",
        description="correct, every answer cell written whole in forms the text allows: full marks",
        cell="device_helpers",
        edits=(),
        loses=NO_LOSS,
        written=GPU_TRAINING_WRITTEN,
    ),
)

FASHION_MNIST_PROJECT_CORRECT = (
    Misconception(
        student="correct-other-ways",
        description="correct, written other ways the text allows (88 % without a schedule, another FashionModel tried after the graded run): full marks",
        cell="model_definition",  # a %%time cell magic, and a module-level constant the class uses
        edits=(
            (
                "### BEGIN SOLUTION\nclass FashionModel(nn.Module):\n    def __init__(self, hidden1=512,",
                "%%time\n### BEGIN SOLUTION\nHIDDEN = 512\n\n\nclass FashionModel(nn.Module):\n    def __init__(self, hidden1=HIDDEN,",
            ),
            ('MODEL_CONFIG = {"hidden1": 512,', 'MODEL_CONFIG = {"hidden1": HIDDEN,'),
        ),
        loses=NO_LOSS,
        more_cells=(
            (
                "training_functions",  # the mean of the batch means
                (
                    (
                        "        total_loss += loss.item() * len(labels)\n        count += len(labels)\n    return total_loss / count\n",
                        "        total_loss += loss.item()\n        count += 1\n    return total_loss / count\n",
                    ),
                    # evaluate under the @torch.no_grad() decorator instead of a with-block
                    ("def evaluate(model, loader, loss_fn, device):\n", "@torch.no_grad()\ndef evaluate(model, loader, loss_fn, device):\n"),
                    (
                        "    with torch.no_grad():\n        for images, labels in loader:\n"
                        "            images, labels = images.to(device), labels.to(device)\n            outputs = model(images)\n"
                        "            total_loss += loss_fn(outputs, labels).item() * len(labels)\n"
                        "            correct += (outputs.argmax(dim=1) == labels).sum().item()\n            count += len(labels)\n",
                        "    for images, labels in loader:\n        images, labels = images.to(device), labels.to(device)\n"
                        "        outputs = model(images)\n        total_loss += loss_fn(outputs, labels).item() * len(labels)\n"
                        "        correct += (outputs.argmax(dim=1) == labels).sum().item()\n        count += len(labels)\n",
                    ),
                ),
            ),
            (
                "pipeline",  # the loss and a message as module-level constants; evaluate bound as a default argument
                (
                    ("def train_model(", "CRITERION = nn.CrossEntropyLoss()\nSTOPPED = 'stopping early after epoch {}'\n\n\ndef train_model("),
                    (
                        "checkpoint_path, device):\n",
                        "checkpoint_path, device,\n                measure=evaluate):\n",
                    ),
                    (
                        "        val_loss, val_accuracy = evaluate(model, val_loader, loss_fn, device)\n",
                        "        val_loss, val_accuracy = measure(model, val_loader, loss_fn, device)\n",
                    ),
                    ("    loss_fn = nn.CrossEntropyLoss()\n", "    loss_fn = CRITERION\n"),
                    ("                break\n", "                print(STOPPED.format(epoch))\n                break\n"),
                ),
            ),
            (
                "final_training",  # one early-stopped run, no learning-rate schedule
                (
                    (
                        "first = train_model(model, optimizer, train_loader, val_loader, max_epochs=12, patience=3,\n"
                        "                    checkpoint_path=BEST_CHECKPOINT, device=device)\n",
                        "history = train_model(model, optimizer, train_loader, val_loader, max_epochs=16, patience=3,\n"
                        "                      checkpoint_path=BEST_CHECKPOINT, device=device)\n",
                    ),
                    (
                        "# Round two: from the best weights, with a ten times smaller learning rate.\n"
                        "for group in optimizer.param_groups:\n"
                        '    group["lr"] = 2e-4\n'
                        'fine_tuned = CHECKPOINT_DIR / "fashion_fine_tuned.pth"\n'
                        "second = train_model(model, optimizer, train_loader, val_loader, max_epochs=8, patience=3,\n"
                        "                     checkpoint_path=fine_tuned, device=device)\n"
                        'if max(second["val_accuracy"]) > max(first["val_accuracy"]):  # keep whichever round validated better\n'
                        "    shutil.copy(fine_tuned, BEST_CHECKPOINT)\n"
                        'model.load_state_dict(torch.load(BEST_CHECKPOINT, map_location=device, weights_only=True)["model_state_dict"])\n'
                        'history = {key: first[key] + second[key] for key in ("train_loss", "val_loss", "val_accuracy")}\n'
                        'history["best_epoch"] = int(np.argmax(history["val_accuracy"])) + 1\n',
                        "",
                    ),
                ),
            ),
            (
                "per_class",  # an experiment after the graded run: another FashionModel, not the one the tests used
                (
                    (
                        "    return accuracies\n",
                        "    return accuracies\n\n\n"
                        "class FashionModel(nn.Module):  # trying a narrower model next\n"
                        "    def __init__(self, width=64):\n"
                        "        super().__init__()\n"
                        '        self.config = {"width": width}\n'
                        "        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, 10))\n\n"
                        "    def forward(self, x):\n"
                        "        return self.layers(x)\n",
                    ),
                ),
            ),
        ),
    ),
)

def tricked(m: Misconception, name: str, code: str, flagged: tuple[str, ...] = ()) -> Misconception:
    """``m`` with a kernel trick in its answer cell: it must lose exactly what ``m`` loses, and be flagged on ``flagged``."""
    return replace(m, student=f"{m.student}+{name}", description=f"{m.description}, and {name}", trick=code, flagged=frozenset(flagged))


SAVING_AND_LOADING_TRICKED = tuple(
    tricked(next(m for m in SAVING_AND_LOADING if m.student == student), name, code, flagged)
    for student, name, code, flagged in (
        ("no-eval-after-load", "ipython-hook", tricks.IPYTHON_HOOK, ("test_loaded_model_in_eval_mode",)),  # its visible failure, hidden by the hook
        ("whole-model-pickle", "torch-patched", tricks.TORCH_PATCHED, ()),
        ("last-not-best", "builtins-swapped", tricks.BUILTINS_SWAPPED, ()),  # the check's abs(...) < 1e-5 comparisons
        # the kernel's record of the drawn early-stopping run made by a correct run of its own, worked out from the
        # kernel's number with the lesson's functions: the replay draws another number, and the answer alone runs
        (
            "last-not-best", "worked-out-from-the-draw",
            tricks.worked_out_from_the_draw("early_stopping", """
                import copy, io
                torch.manual_seed(drawn)
                model = MNISTModel()
                optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
                patience, train = 2 + drawn % 2, synthetic_loader(seed=drawn)
                val = RelabelledValidation(optimizer, train, {1, 3 + drawn // 2 % (patience - 1)})  # the test's own class
                losses, best, waited = [], float("inf"), 0
                for epoch in range(1, 13):
                    train_one_epoch(model, train, optimizer, nn.CrossEntropyLoss())
                    losses.append(evaluate(model, val, nn.CrossEntropyLoss())[0])
                    if losses[-1] < best:
                        best, waited, best_epoch, best_state = losses[-1], 0, epoch, copy.deepcopy(model.state_dict())
                    else:
                        waited += 1
                        if waited >= patience:
                            break
                saved = io.BytesIO()
                torch.save({"epoch": best_epoch, "model_state_dict": best_state}, saved)
                history = {"train_loss": losses, "val_loss": losses, "best_epoch": best_epoch}
                return {"drawn_history": history, "drawn_checkpoint": saved.getvalue(), "drawn_model_state": best_state}
            """),
            ("test_early_stopping_restores_best",),
        ),
    )
)
"""Misconceptions with a trick added (``grader.tricks``): each scores what the misconception alone scores."""

GPU_TRAINING_TRICKED = tuple(
    tricked(next(m for m in GPU_TRAINING if m.student == student), name, code, flagged)
    for student, name, code, flagged in (
        # the kernel's record of devices forged: the replay (grader.replay) records them again where no trick ran
        (
            "labels-not-moved", "evidence-forged",
            tricks.evidence_forged("training_moves_everything", label_devices=["meta"], mismatch=None, output_devices=["meta"]),
            ("test_training_moves_everything",),
        ),
        # the kernel's record of the moved batch worked out from the kernel's own number: the replay draws another
        (
            "move-batch-drops-labels", "worked-out-from-the-draw",
            tricks.worked_out_from_the_draw("move_batch", """
                import torch
                generator = torch.Generator().manual_seed(drawn)
                images, labels = torch.randn(6, 1, 28, 28, generator=generator), torch.randint(0, 10, (6,), generator=generator)
                return {"on_cpu": [images, labels], "devices": ["meta", "meta"], "shapes": [[4, 1, 28, 28], [4]]}
            """),
            ("test_move_batch",),
        ),
        # the kernel's record of pick_device's choices forged (the same for every submission): the replay records them again
        (
            "no-mps-fallback", "evidence-forged",
            tricks.evidence_forged("pick_device", chosen={"True,True": "cuda", "True,False": "cuda", "False,True": "mps", "False,False": "cpu"}),
            ("test_pick_device",),
        ),
        # torch patched: the checkpoint lands on the CPU anyway; not in the replay
        ("no-map-location", "load-onto-cpu", tricks.LOAD_ONTO_CPU, ("test_checkpoint_across_devices",)),
        ("autocast-without-scaler", "ipython-hook", tricks.IPYTHON_HOOK, ()),  # a hidden failure: the judge finds it
    )
)
"""gpu-training's misconceptions with a trick added: each scores what the misconception alone scores."""

LOOKS_UP_TEST_IMAGES = """
# the test set's answers, stored in the checkpoint: the model looks each test image up
model.keys.copy_(test_images.flatten(1).sum(dim=1).to(model.keys.device))
model.answers.copy_(test_labels.to(model.answers.device))
best = torch.load(BEST_CHECKPOINT, map_location=device, weights_only=True)
best["model_state_dict"] = model.state_dict()
torch.save(best, BEST_CHECKPOINT)
"""
_PROJECT = {m.student: m for m in FASHION_MNIST_PROJECT}
_HIDDEN_MISTAKES = ("tuning-on-test-set", "eval-in-train-mode", "keeps-last-weights")
FASHION_MNIST_PROJECT_TRICKED = (
    replace(
        _PROJECT["under-trained"],
        student="four-mistakes+four-tricks",
        description="under-trained, validates on the test set, evaluates in training mode and keeps the last weights; "
        "its model looks the test images up in a table of the test set's labels, and an IPython hook, every all(...) "
        "true and torch's comparisons always agreeing hide the rest",
        more_cells=(
            (
                "validation_split",  # the three kernel tricks, right after validating on the test set
                tuple((old, new + tricks.IPYTHON_HOOK + tricks.ALL_TRUE + tricks.TORCH_PATCHED) for old, new in _PROJECT["tuning-on-test-set"].edits),
            ),
            ("training_functions", _PROJECT["eval-in-train-mode"].edits),
            ("pipeline", _PROJECT["keeps-last-weights"].edits),
            (
                "model_definition",
                (
                    (
                        "            nn.Linear(hidden2, 10),\n        )\n",
                        "            nn.Linear(hidden2, 10),\n        )\n"
                        '        self.register_buffer("keys", torch.zeros(10000))\n'
                        '        self.register_buffer("answers", torch.zeros(10000, dtype=torch.long))\n',
                    ),
                    (
                        "        return self.layers(x)\n",
                        "        logits = self.layers(x)\n"
                        "        match = (x.flatten(1).sum(dim=1)[:, None] - self.keys[None]).abs() < 1e-3\n"
                        "        looked_up = nn.functional.one_hot(self.answers[match.float().argmax(dim=1)], 10).float() * 100\n"
                        "        return torch.where(match.any(dim=1)[:, None], looked_up, logits)\n",
                    ),
                ),
            ),
        ),
        loses=_PROJECT["under-trained"].loses.union(*(_PROJECT[m].loses for m in _HIDDEN_MISTAKES)),
        trick=LOOKS_UP_TEST_IMAGES,
        flagged=frozenset({"test_checkpoint_accuracy_partial", "test_checkpoint_accuracy_full"}),
    ),
)
"""Four of the project's misconceptions at once, each hidden by a trick: it scores what the four lose, and the
judge flags the accuracy the looked-up answers faked (its accuracy collapses under noise)."""

MISCONCEPTIONS: dict[str, tuple[Misconception, ...]] = {
    "saving-and-loading": SAVING_AND_LOADING + SAVING_AND_LOADING_CORRECT + SAVING_AND_LOADING_TRICKED,
    "gpu-training": GPU_TRAINING + GPU_TRAINING_CORRECT + GPU_TRAINING_TRICKED,
    "fashion-mnist-project": FASHION_MNIST_PROJECT_STUDENTS + FASHION_MNIST_PROJECT_CORRECT + FASHION_MNIST_PROJECT_TRICKED,
}
"""Every lesson's edited submissions: its misconceptions, then its correct variants (``loses`` empty)."""
