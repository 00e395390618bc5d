"""The GPU where student code runs: inside the grader's sandbox, not only in the pytest process.

``PYTORCH_COURSE_REQUIRE_CUDA=1`` (the GPU job of the workflow) makes the session refuse to start
without CUDA in this process (conftest.py); the kernels that grade run in a bubblewrap sandbox
(``grader/sandbox.py``) with its own /dev and per-process limits, so this checks CUDA there too:
the device nodes it binds and the memory limit it sets must let torch start CUDA and compute on it.
On a machine that need not have a GPU (the variable unset) there is nothing to prove, and it is skipped.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from grader import sandbox

REQUIRE_CUDA = "PYTORCH_COURSE_REQUIRE_CUDA"
pytestmark = pytest.mark.skipif(
    os.environ.get(REQUIRE_CUDA) != "1",
    reason=f"GPU-only check: set {REQUIRE_CUDA}=1 on a machine with an NVIDIA GPU to prove CUDA inside the sandbox",
)

PROBE = r"""
import json, traceback, warnings
found = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        import torch
        found["torch"] = torch.__version__
        found["cuda"] = torch.version.cuda
        found["available"] = torch.cuda.is_available()
        if found["available"]:
            found["device"] = torch.cuda.get_device_name(0)
            x = torch.arange(6, dtype=torch.float32, device="cuda").reshape(2, 3)
            y = x @ x.T + 1
            found["on"] = y.device.type
            found["product"] = y.cpu().tolist()
    except BaseException:
        found["error"] = traceback.format_exc()
found["warnings"] = [str(w.message) for w in caught]
with open("cuda.json", "w") as out:
    json.dump(found, out)
"""
"""Runs in the sandbox (stdio goes nowhere there): what torch sees of CUDA, written to cuda.json."""


def test_cuda_inside_the_grading_sandbox() -> None:
    sandbox.check()  # a clear SandboxUnavailable if bubblewrap cannot run on this runner
    with tempfile.TemporaryDirectory(prefix="grader-cuda-") as folder:
        work = Path(folder)
        (work / "probe.py").write_text(PROBE)
        done = sandbox.run_python(["probe.py"], work, sandbox.Limits(), timeout=300)
        report = work / "cuda.json"
        assert report.is_file(), f"the probe did not run in the sandbox (exit {done.returncode}): {done.stderr.strip()[-1500:]}"
        found = json.loads(report.read_text())
    assert "error" not in found, f"torch failed in the sandbox:\n{found['error']}"
    devices = sorted(str(p) for p in Path("/dev").glob("nvidia*"))
    assert found["available"] is True, (
        f"torch.cuda.is_available() is False inside the sandbox (torch {found['torch']}, CUDA {found['cuda']}; "
        f"host device nodes {devices}); warnings: {found['warnings']}"
    )
    assert found["on"] == "cuda"
    assert found["product"] == [[6.0, 15.0], [15.0, 51.0]], found
