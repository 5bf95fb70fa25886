"""Code tier: the tree passes the project's ruff rules (``make lint``), so lint cannot rot between CI runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).with_name("ruff")
    exe = str(ruff) if ruff.is_file() else shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (it comes with the [test] extra)")
    res = subprocess.run([exe, "check", "--no-cache", "semires", "components", "dags", "benchmarks", "scripts", "tests"],
                         cwd=ROOT, check=False, capture_output=True, text=True)
    assert res.returncode == 0, f"`make lint` fails:\n{res.stdout}{res.stderr}"
