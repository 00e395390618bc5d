"""The commands an instructor types, run as subprocesses from a given directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from grader.paths import tool_env


def grader(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    """``grader ARGS`` as an instructor runs it, from ``cwd``."""
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd, env=tool_env(), capture_output=True, text=True, **kw)


def nbgrader(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``nbgrader ARGS`` run by hand in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=tool_env(), capture_output=True, text=True)
