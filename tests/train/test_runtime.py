"""Execution settings: the malloc that keeps freed memory (semires.engine.runtime)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# 48 MB blocks: above the largest mmap threshold glibc adapts to by itself (32 MB), so by default
# every one is a fresh mapping that the kernel faults in page by page
SCRIPT = """
import resource, sys, torch
from semires.engine.runtime import retain_freed_memory
if sys.argv[1] == "retain" and not retain_freed_memory():
    print("unsupported")
    sys.exit(0)
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        block = torch.ones(12 * 2**20)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(), faults()  # the heap grows to its working size first
print(faults())
"""


def _faults(mode: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_memory_is_reused_without_page_faults():
    retained = _faults("retain")
    if retained == "unsupported":
        pytest.skip("this libc has no mallopt (not glibc)")
    pages = 5 * 48 * 2**20 // 4096
    assert int(_faults("default")) > pages // 2  # each block faulted in again
    assert int(retained) < pages // 100


def test_configure_on_cpu_applies_it_once():
    import torch

    from semires.engine.runtime import configure, retain_freed_memory

    configure(torch.device("cpu"), deterministic=True)
    hits = retain_freed_memory.cache_info().hits
    configure(torch.device("cpu"), deterministic=True)
    assert retain_freed_memory.cache_info().hits == hits + 1  # cached: the settings are made once
