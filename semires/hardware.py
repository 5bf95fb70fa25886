"""What a measurement ran on, for benchmark results (timings mean little without it)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _cpuinfo(key: str) -> str | None:
    """The value of the first ``key`` line of /proc/cpuinfo (None where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo ("AMD EPYC 7B13"), else what :mod:`platform` knows."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "cpu"


def cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none)."""
    return set((_cpuinfo("flags") or "").split())


def cpu_native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX): then bf16 autocast speeds up CPU
    training (measured 1.3x on lavt_tiny); elsewhere it is emulated and slower."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_amp() -> str:
    """The ``amp`` setting for CPU training here: 'bf16' where the CPU has native bf16, else 'off'."""
    return "bf16" if cpu_native_bf16() else "off"


def cpu_summary() -> str:
    """One line naming the CPU kind a CPU timing ran on: model, cores, and whether it computes bf16
    natively ("Intel(R) Xeon(R) Processor, 2 cores, native bf16"); the AVX2-only kind trains ~5x slower."""
    bf16 = "native bf16" if cpu_native_bf16() else "no native bf16 (AVX2 kind)"
    return f"{cpu_name()}, {os.cpu_count()} cores, {bf16}"


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none): CPU timings on a shared machine depend on it."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def load_averages() -> str:
    """The 1, 5 and 15-minute load averages as "1.00 1.07 1.20" ("n/a" where the OS has none)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def describe(device: str = "cpu", threads: int | None = None) -> str:
    """One line: device, CPU, cores, torch threads and version, e.g. for a results JSON's ``machine``."""
    import torch

    threads = torch.get_num_threads() if threads is None else threads
    s = f"{cpu_name()}, {os.cpu_count()} cores, {threads} torch thread(s), torch {torch.__version__}"
    if device.startswith("cuda"):
        s = f"{torch.cuda.get_device_name()} ({s})"
    return s
