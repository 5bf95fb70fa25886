"""Pseudo-label and refined-label gates on small hand-built stage folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semires import io
from semires.checks import check_pseudo_labels, check_refined
from semires.data import masks as mask_codec
from semires.data.index import RefIndex
from semires.data.splits import load_split
from semires.errors import CheckFailed

S = 32


def _square(x0: int, side: int) -> np.ndarray:
    m = np.zeros((S, S), bool)
    m[x0:x0 + side, x0:x0 + side] = True
    return m


def write_pseudo(out: Path, keys: list[tuple[int, int, int]], masks: np.ndarray) -> Path:
    from semires.pseudo.shards import FORMAT, write_shard

    out.mkdir(parents=True, exist_ok=True)
    half = len(keys) // 2
    shards = []
    for i, rows in enumerate([slice(0, half), slice(half, len(keys))]):
        k = keys[rows]
        path = write_shard(out / f"shard-{i:05d}.npz", [a for a, _, _ in k], [b for _, b, _ in k], [c for _, _, c in k],
                           masks[rows].astype(np.float32), masks[rows])
        shards.append({"file": path.name, "count": len(k), "sha256": io.sha256_file(path)})
    io.write_json(out / "manifest.json", {"format": FORMAT, "image_size": S, "split": "train", "shards": shards,
                                          "expressions": len(keys)})
    io.mark_complete(out)
    return out


def write_refined(out: Path, pseudo: Path, keys, labels: np.ndarray, matched: list[bool], strategy: str = "iom") -> Path:
    from semires.pseudo.refine_stage import REFINED_FORMAT
    from semires.refine.config import RefineConfig

    out.mkdir(parents=True, exist_ok=True)
    items = [{"ref_id": r, "sent_id": s, "image_id": i, "matched": m, "score": 0.9 if m else 0.0, "parts": int(m),
              "rle": mask_codec.encode(lab), "before": [0, 1], "after": [0, 1]}
             for (r, s, i), lab, m in zip(keys, labels, matched)]
    io.write_json(out / "refined-00000.json", {"format": REFINED_FORMAT, "config_sha": "x", "items": items})
    io.write_json(out / "manifest.json", {"format": REFINED_FORMAT, "config_sha": "x", "files": ["refined-00000.json"],
                                          "refine": RefineConfig(strategy=strategy).model_dump(mode="json"),
                                          "image_size": S, "pseudo_dir": str(pseudo), "expressions": len(items)})
    io.mark_complete(out)
    return out


@pytest.fixture
def labels(tmp_path, refshapes_tiny):
    index = RefIndex.load(refshapes_tiny["index"])
    split = load_split(refshapes_tiny["splits"][0.5])
    exprs = index.expressions("train", split.unlabeled)
    keys = [(e.ref_id, e.sent_id, e.image_id) for e in exprs]
    masks = np.stack([_square(2 + i % 8, 8) for i in range(len(keys))])
    pseudo = write_pseudo(tmp_path / "pseudo", keys, masks)
    return {"index": refshapes_tiny["index"], "split": split, "keys": keys, "masks": masks, "pseudo": pseudo,
            "tmp": tmp_path}


def test_pseudo_labels_pass(labels):
    rep = check_pseudo_labels(labels["pseudo"], labels["index"], labels["split"].unlabeled,
                              report_path=labels["tmp"] / "r.txt")
    assert rep.success and (labels["tmp"] / "r.txt").read_text().startswith("data check 'pseudo_labels' passed")


def test_pseudo_label_on_labeled_image_is_a_leak(labels):
    keys = list(labels["keys"])
    leaked = labels["split"].labeled[0]
    keys[3] = (keys[3][0], keys[3][1], leaked)
    bad = write_pseudo(labels["tmp"] / "leak", keys, labels["masks"])
    with pytest.raises(CheckFailed) as info:
        check_pseudo_labels(bad, labels["index"], labels["split"].unlabeled)
    block = info.value.report.split("\nFAIL ")[1]
    assert "no split leak" in block and f"{keys[3][0]}:{keys[3][1]}" in block


def test_collapsed_teacher_fails_on_foreground_fraction(labels):
    full = np.ones_like(labels["masks"])
    bad = write_pseudo(labels["tmp"] / "full", labels["keys"], full)
    with pytest.raises(CheckFailed) as info:
        check_pseudo_labels(bad)
    assert "mean foreground fraction" in info.value.report and "observed: 1.0" in info.value.report


def test_refined_labels_pass(labels):
    n = len(labels["keys"])
    ref = write_refined(labels["tmp"] / "refined", labels["pseudo"], labels["keys"], labels["masks"],
                        [i % 2 == 0 for i in range(n)])
    assert check_refined(ref).success


def test_refined_low_match_rate_fails(labels):
    n = len(labels["keys"])
    ref = write_refined(labels["tmp"] / "refined", labels["pseudo"], labels["keys"], labels["masks"], [False] * n)
    with pytest.raises(CheckFailed) as info:
        check_refined(ref)
    assert "match rate" in str(info.value) and "observed: 0.0" in info.value.report


def test_refined_area_ratio_out_of_range_fails_with_ids(labels):
    n = len(labels["keys"])
    huge = np.ones_like(labels["masks"])  # every matched label swallows the whole image: 1024 / 64 = 16x
    ref = write_refined(labels["tmp"] / "refined", labels["pseudo"], labels["keys"], huge, [True] * n)
    with pytest.raises(CheckFailed) as info:
        check_refined(ref)
    block = next(b for b in info.value.report.split("\nFAIL ") if "area ratio" in b)
    assert f"{labels['keys'][0][0]}:{labels['keys'][0][1]}" in block


def test_strategy_none_has_no_match_rate_bound(labels):
    n = len(labels["keys"])
    ref = write_refined(labels["tmp"] / "refined", labels["pseudo"], labels["keys"], labels["masks"], [False] * n,
                        strategy="none")
    assert check_refined(ref).success
