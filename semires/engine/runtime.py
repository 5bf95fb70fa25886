"""Execution settings shared by training and evaluation: seeding, determinism, threads, precision."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import os
import random
import sys
from collections.abc import Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


@functools.cache
def retain_freed_memory(mmap_threshold: int = 256 << 20, trim_threshold: int = 512 << 20,
                        top_pad: int = 64 << 20) -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of returning it to the OS (Linux only;
    elsewhere a no-op). Returns whether the settings took.

    torch's CPU allocator has no cache: every tensor of a step is a fresh ``malloc``. glibc serves
    blocks above its adaptive mmap threshold (at most 32 MB) with fresh mappings and gives the top
    of the heap back once more than the trim threshold lies free there, so each step faulted in
    about 20 MB of new pages, zeroed by the kernel: about 4,900 minor page faults per 128 px step of
    the 100 % supervised model, 6-12 ms of system CPU time. With blocks up to ``mmap_threshold``
    bytes on the heap and up to ``trim_threshold`` bytes of free heap kept, 20-80 faults remain.
    The cost: a process keeps up to ``trim_threshold`` of freed memory until it exits.
    Process-wide; applied once.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        settings = ((_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold), (_M_TOP_PAD, top_pad))
        return all(libc.mallopt(ctypes.c_int(k), ctypes.c_int(v)) == 1 for k, v in settings)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def configure(device: torch.device, deterministic: bool = True, threads: int | None = None) -> None:
    """Deterministic kernels where torch has them (CPU runs repeat bit-exactly), thread count, and
    on the CPU a malloc that keeps freed memory (:func:`retain_freed_memory`)."""
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cpu":
        retain_freed_memory()
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        # deterministic mode also fills every new tensor with NaN, to expose reads of uninitialised
        # memory; no kernel here reads it, and the ~1000 fills per step cost about 5 % of a CPU step
        torch.utils.deterministic.fill_uninitialized_memory = False
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def amp_dtype(device: torch.device, mode: str) -> torch.dtype | None:
    """bf16 when ``mode`` is 'bf16', or 'auto' on CUDA; None (full precision) otherwise."""
    if mode == "bf16" or (mode == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def memory_format(channels_last: bool) -> torch.memory_format:
    """The layout for conv models and their image batches: ``channels_last`` (NHWC) or NCHW."""
    return torch.channels_last if channels_last else torch.contiguous_format


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects alive on entry (the index, the datasets, the tokenizer, the model: about
    half a million on RefShapes) out of Python's cyclic garbage collector until exit.

    A training step makes thousands of short-lived Python objects, so the collector runs often,
    and each full collection walked all of those objects (about 0.14 s each). Short runs of the
    100 % supervised benchmark, alternating with and without, trained at 194 and 201 against 187
    and 189 images/s. Garbage made inside is still collected; on exit the objects return to the
    collector (``gc.freeze`` / ``gc.unfreeze``).
    """
    gc.collect()  # what is garbage already is freed, not frozen
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
