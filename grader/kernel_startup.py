"""The IPython start-up file of a student's kernel, copied into its profile by ``worker.prepare_kernel``.

Runs in the kernel before the notebook: gives the kernel its share of the cores and seeds every
generator just before the first cell runs (the kernel's own start-up may draw from Python's
generator a varying number of times). torch is seeded and given its threads when the notebook
first imports it, never imported for a notebook that does not (an import costs two seconds).
It also tells ``grader.evidence`` where the hidden tests record their evidence for the judge. The grader
writes the four settings above this text: ``SEED = ...``, ``THREADS = ...``, ``EVIDENCE = ...`` and ``DRAWN = ...``
(the number this submission's check inputs are drawn from).
"""

import importlib.abc
import importlib.util
import sys

SEED = globals().get("SEED", 0)
THREADS = globals().get("THREADS", 1)
EVIDENCE = globals().get("EVIDENCE")
DRAWN = globals().get("DRAWN", 0)


def _grader_seed_torch(torch) -> None:
    torch.manual_seed(SEED)  # seeds CUDA too, where present
    torch.set_num_threads(THREADS)


class _GraderTorchSeeder(importlib.abc.MetaPathFinder):
    """Seeds torch the moment the notebook first imports it."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _grader_seed_torch(module)

        spec.loader.exec_module = exec_module
        return spec


def _grader_seed() -> None:
    import random

    random.seed(SEED)
    try:
        import numpy

        numpy.random.seed(SEED)
    except ImportError:
        pass
    if "torch" in sys.modules:
        _grader_seed_torch(sys.modules["torch"])
    elif not any(isinstance(finder, _GraderTorchSeeder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _GraderTorchSeeder())


def _grader_first_cell(*_) -> None:
    _grader_seed()
    get_ipython().events.unregister("pre_run_cell", _grader_first_cell)  # noqa: F821 - IPython's own name


if EVIDENCE:
    import grader.evidence

    grader.evidence.record_into(EVIDENCE, DRAWN)
_grader_seed()
get_ipython().events.register("pre_run_cell", _grader_first_cell)  # noqa: F821
