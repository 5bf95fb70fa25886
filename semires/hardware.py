"""What a measurement ran on, for benchmark results (timings mean little without it)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo ("AMD EPYC 7B13"), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none): CPU timings on a shared machine depend on it."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def describe(device: str = "cpu", threads: int | None = None) -> str:
    """One line: device, CPU, cores, torch threads and version, e.g. for a results JSON's ``machine``."""
    import torch

    threads = torch.get_num_threads() if threads is None else threads
    s = f"{cpu_name()}, {os.cpu_count()} cores, {threads} torch thread(s), torch {torch.__version__}"
    if device.startswith("cuda"):
        s = f"{torch.cuda.get_device_name()} ({s})"
    return s
