"""The machine line that every benchmark result carries."""

from __future__ import annotations

import os

import torch

from semires import hardware
from semires.hardware import cpu_name, describe, load_average


def test_describe_names_cpu_cores_threads_and_torch():
    line = describe("cpu", threads=3)
    assert line.startswith(cpu_name()) and f"{os.cpu_count()} cores" in line
    assert "3 torch thread(s)" in line and torch.__version__ in line
    assert cpu_name() and load_average() >= 0.0


def test_cpu_amp_follows_the_bf16_flags(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"sse2", "avx2", "avx512f"})
    assert not hardware.cpu_native_bf16() and hardware.cpu_amp() == "off"
    for flag in ("avx512_bf16", "amx_bf16"):
        monkeypatch.setattr(hardware, "cpu_flags", lambda flag=flag: {"avx2", flag})
        assert hardware.cpu_native_bf16() and hardware.cpu_amp() == "bf16"
    assert hardware.cpu_summary().endswith(", native bf16")
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2"})
    assert hardware.cpu_summary() == f"{cpu_name()}, {os.cpu_count()} cores, no native bf16 (AVX2 kind)"
    monkeypatch.undo()
    assert isinstance(hardware.cpu_flags(), set)


def test_cpu_name_and_flags_read_cpuinfo_and_load_averages_have_three_values():
    flags = hardware.cpu_flags()
    if hardware._cpuinfo("flags") is not None:  # Linux
        assert flags and all(" " not in f for f in flags)
        assert cpu_name() == hardware._cpuinfo("model name") or not hardware._cpuinfo("model name")
    loads = hardware.load_averages()
    assert loads == "n/a" or [float(x) >= 0 for x in loads.split()] == [True] * 3
