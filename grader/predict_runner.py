"""Rebuild a student's model from its own source and a checkpoint, and predict: the program that
``grader.checks.rebuild.predictions`` runs in a fresh (sandboxed) process, as
``python predict_runner.py CLASS VARIANT ...``.

It reads from its working folder ``model.py`` (the student's definitions), ``checkpoint.pth`` and one
``<variant>.pt`` of images per variant, builds ``CLASS(**checkpoint["model_config"])``, and writes
``<variant>-predictions.pt`` (or ``<variant>-error.txt``). Each variant runs in a child forked before any
of the student's code, so no variant's run can remember another's. The variant ``fresh`` builds the model
without loading the checkpoint's state. The process never touches CUDA, so forking is safe.
"""

import os
import sys
import traceback

import torch  # imported once, before any of the student's code


def predict(model_class: str, variant: str) -> None:
    namespace = {"__name__": "__student__"}
    exec(compile(open("model.py").read(), "<your notebook>", "exec"), namespace)
    checkpoint = torch.load("checkpoint.pth", map_location="cpu", weights_only=True)
    torch.manual_seed(1)
    model = namespace[model_class](**checkpoint["model_config"])
    if variant != "fresh":
        model.load_state_dict(checkpoint["model_state_dict"])
    model.eval()
    images = torch.load(f"{variant}.pt", weights_only=True)
    with torch.no_grad():
        predictions = torch.cat([model(images[i : i + 1000]).argmax(dim=1) for i in range(0, len(images), 1000)])
    torch.save(predictions.to(torch.long).cpu(), f"{variant}-predictions.pt")


def preload(source: str) -> None:
    """Import, once before the forks, the installed modules ``model.py`` imports (each child would import them
    again: a second or more for torchvision). Only modules found outside this folder: no student code runs here."""
    import ast
    import importlib
    import importlib.util

    here = os.path.realpath(".")
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            try:
                spec = importlib.util.find_spec(name.split(".")[0])
                origin = os.path.realpath(spec.origin or "") if spec else here
                if spec is not None and spec.origin not in (None, "built-in", "frozen") and not origin.startswith(here + os.sep):
                    importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the child's own import reports it
                pass


def main(model_class: str, variants: list[str]) -> None:
    try:
        preload(open("model.py").read())
    except SyntaxError:
        pass  # each child reports it
    for variant in variants:
        pid = os.fork()
        if pid == 0:
            try:
                predict(model_class, variant)
            except BaseException:
                with open(f"{variant}-error.txt", "w") as out:
                    out.write(traceback.format_exc()[-1500:])
            os._exit(0)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
    os._exit(0)  # skip the interpreter's teardown
