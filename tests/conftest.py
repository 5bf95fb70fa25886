"""Shared fixtures: small datasets built once per session and reused read-only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests share 2 cores; one intra-op thread keeps parallel processes from thrashing.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def mini_refer(tmp_path: Path) -> Path:
    """A fresh hand-made REFER folder (8 images, 16 refs) the test may modify."""
    from mini_refer import write_mini_refer

    return write_mini_refer(tmp_path / "refer")


@pytest.fixture(scope="session")
def refshapes_tiny(tmp_path_factory) -> dict:
    """RefShapes 'tiny' preset with its index and splits: {'refer_dir', 'index', 'splits'} (read-only)."""
    from semires.data.index import RefIndex, build_index
    from semires.data.splits import make_splits
    from semires.data.synthetic import generate

    root = tmp_path_factory.mktemp("refshapes_tiny")
    refer_dir = generate(root / "refshapes", preset="tiny", seed=0, progress=False)
    index = build_index(refer_dir, refer_dir / "images", root / "index.json", dataset="refshapes", progress=False)
    splits = make_splits(RefIndex.load(index), [0.1, 0.5], seed=0, out_dir=root / "splits")
    return {"refer_dir": refer_dir, "index": index, "splits": splits, "root": root}


@pytest.fixture(scope="session")
def refshapes_default(tmp_path_factory) -> dict:
    """RefShapes 'default' preset (the benchmark the README reports) with its index (read-only)."""
    from semires.data.index import build_index
    from semires.data.synthetic import generate

    root = tmp_path_factory.mktemp("refshapes_default")
    refer_dir = generate(root / "refshapes", preset="default", seed=0, progress=False)
    index = build_index(refer_dir, refer_dir / "images", root / "index.json", dataset="refshapes", progress=False)
    return {"refer_dir": refer_dir, "index": index, "root": root}
