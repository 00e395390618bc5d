"""Rebuild a student's model in a fresh process and have it predict: for checks that need the
student's code to run (a model's accuracy), since no output of the notebook's own run can show it.

What the rebuild reads of the notebook: its import statements, and the top-level imports, classes,
functions and assignments (library calls only, ``grader.replay.guarded``) of the last cell above the
test that defines the model class. It then builds the class from the checkpoint's ``model_config``.
"""

from __future__ import annotations

import ast
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from .. import untrusted, warm
from ..replay import guarded, top_level
from . import visible

SANDBOXED = [False]
"""Whether the student's model runs in the sandbox: the judge sets it (``python -m grader.judge --sandbox``)."""


def model_source(cells: list[str], model_class: str) -> str:
    """The notebook's imports, then what the last cell defining ``class <model_class>`` defines (its imports,
    classes, functions and assignments, in order): what rebuilds the model in a fresh process. ``cells`` is the
    student's code as the test found it (the lesson's ``In``), so a class defined after the test does not count."""
    model_cells = [c for c in cells if any(isinstance(n, ast.ClassDef) and n.name == model_class for n in top_level(c))]
    visible(model_cells, f"No cell defining `class {model_class}` was found: define it at the top level of a cell.")
    imports = [guarded(n) for c in cells for n in top_level(c) if isinstance(n, (ast.Import, ast.ImportFrom))]
    body = []
    for node in top_level(model_cells[-1]):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body.append(ast.unparse(node))
        elif isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.AugAssign)):
            body.append(guarded(node))
    return "\n".join(["import torch, torch.nn as nn, torch.nn.functional as F", *dict.fromkeys(imports), *body])


def predictions(source: str, model_class: str, checkpoint: bytes, images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The class predictions of the student's ``model_class`` (built from ``source`` and the checkpoint's
    ``model_config``, its state loaded) for each set of ``images`` (``fresh``: the model as built, without the
    checkpoint's state), in a process of its own (``grader.predict_runner``; in the sandbox where the judge
    runs the student's code there): a child of it per set, so no set's run can remember another's."""
    with warm.job_folder("grader-predict-") if SANDBOXED[0] else tempfile.TemporaryDirectory(prefix="grader-predict-") as folder:
        work = Path(folder)
        (work / "model.py").write_text(source)
        (work / "checkpoint.pth").write_bytes(checkpoint)
        for variant, tensor in images.items():
            torch.save(tensor, work / f"{variant}.pt")
        shutil.copyfile(Path(__file__).parent.parent / "predict_runner.py", work / "predict_runner.py")
        argv = ["predict_runner.py", model_class, *images]
        if SANDBOXED[0]:
            from ..sandbox import Limits

            done = warm.run_python(argv, work, Limits(), timeout=600)
        else:
            done = subprocess.run([sys.executable, *argv], cwd=work, capture_output=True, text=True, timeout=600)
        found = {}
        for variant in images:  # plain files only: a link or FIFO the sandboxed code made is never followed
            error = untrusted.read_file(work / f"{variant}-error.txt")
            predictions = untrusted.read_file(work / f"{variant}-predictions.pt")
            visible(error is None and predictions is not None, (
                "Your checkpoint could not be rebuilt in a fresh Python process (torch.load with weights_only=True, then "
                f"{model_class}(**checkpoint['model_config'])):\n{error.decode(errors='replace') if error else done.stderr[-1500:]}"
            ))  # fmt: skip
            found[variant] = torch.load(io.BytesIO(predictions), weights_only=True)
            assert isinstance(found[variant], torch.Tensor) and found[variant].shape == (len(images[variant]),), (
                "The model should give one class per image."
            )
    return found
