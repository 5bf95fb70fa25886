"""The machine line that every benchmark result carries."""

from __future__ import annotations

import os

import torch

from semires.hardware import cpu_name, describe, load_average


def test_describe_names_cpu_cores_threads_and_torch():
    line = describe("cpu", threads=3)
    assert line.startswith(cpu_name()) and f"{os.cpu_count()} cores" in line
    assert "3 torch thread(s)" in line and torch.__version__ in line
    assert cpu_name() and load_average() >= 0.0
