"""Damaged artifacts are never read silently, and non-finite numbers never become labels.

Each case damages a copy of one output of the reference chain (:func:`conftest.chain`) and runs the stage
that reads it: exit 2, one line naming the damaged file and the command that rebuilds it, no output of
the failed stage, the inputs left as they were.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fault_helpers import component, expect_error, run, temps, tree_digest


def _flip_byte(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rle_byte(shard: Path) -> None:
    """Flip one character inside an RLE ``counts`` string: still valid JSON, a different mask."""
    text = shard.read_text()
    i = text.index('"counts":"') + len('"counts":"') + 3
    c = text[i]
    text = text[:i] + ("a" if c != "a" else "b") + text[i + 1:]
    shard.write_text(text)


def test_flipped_byte_in_a_candidate_shard_fails_recall(chain, tmp_path, case):
    case("damaged artifact", "one character of a merged candidate shard's RLE changed; `semires candidates recall`")
    cand = _copy(chain.cand, tmp_path / "cand")
    shard = min((cand / "shards").glob("*.jsonl"))
    _rle_byte(shard)
    before = tree_digest(cand)
    out = tmp_path / "recall.json"
    res = run("-m", "semires", "candidates", "recall", "--index", chain.index, "--candidates", cand, "--out", out)
    expect_error(case, res.returncode, res.stderr, 2, shard.name, "checksum", "semires candidates generate --shard")
    assert not out.exists() and tree_digest(cand) == before


@pytest.mark.parametrize("what,damage,names", [
    ("candidate shard damaged", lambda c, p: _rle_byte(max((c / "shards").glob("*.jsonl"))),
     ["shard-00001-of-00002.jsonl", "checksum", "candidates generate"]),
    ("candidate manifest missing", lambda c, p: (c / "manifest.json").unlink(),
     ["manifest.json", "not found", "candidates merge"]),
    ("candidate manifest truncated", lambda c, p: (c / "manifest.json").write_text(
        (c / "manifest.json").read_text()[:40]), ["manifest.json", "not valid JSON"]),
    ("pseudo-label shard damaged", lambda c, p: _flip_byte(p / "shard-00002.npz", 0.6),
     ["shard-00002.npz", "checksum", "pseudo_label"]),
    ("pseudo-label folder unfinished (no _SUCCESS)", lambda c, p: (p / "_SUCCESS").unlink(),
     ["pseudo", "incomplete", "pseudo_label"]),
], ids=["cand-shard", "cand-manifest-missing", "cand-manifest-truncated", "pseudo-shard", "pseudo-unfinished"])
def test_refine_refuses_damaged_inputs(what, damage, names, chain, tmp_path, capsys, case):
    case("damaged artifact", f"components.refine: {what}", "in-process")
    cand, pseudo = _copy(chain.cand, tmp_path / "cand"), _copy(chain.pseudo, tmp_path / "pseudo")
    damage(cand, pseudo)
    before = {**tree_digest(cand), **{f"p/{k}": v for k, v in tree_digest(pseudo).items()}}
    run_ = chain.at(tmp_path)
    code = component(*run_.argv("refine", index=chain.index, cand=cand, pseudo=pseudo))
    expect_error(case, code, capsys.readouterr().err, 2, *names)
    assert not (run_.refined / "_SUCCESS").exists() and not (run_.root / "metrics" / "refine.json").exists()
    assert {**tree_digest(cand), **{f"p/{k}": v for k, v in tree_digest(pseudo).items()}} == before


def _nan_teacher(src: Path, dst: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    dst.mkdir(parents=True)
    with safe_open(str(src / "best.safetensors"), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
    tensors = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(tensors, str(dst / "best.safetensors"), metadata=meta)
    return dst


def test_nan_teacher_fails_pseudo_labelling_instead_of_writing_zeros(chain, tmp_path, capsys, case):
    case("non-finite numbers", "components.pseudo_label with a teacher whose weights are NaN", "in-process")
    teacher = _nan_teacher(chain.burn, tmp_path / "teacher")
    before = tree_digest(teacher)
    run_ = chain.at(tmp_path)
    code = component(*run_.argv("pseudo_label", index=chain.index, splits=chain.splits, burn=teacher))
    expect_error(case, code, capsys.readouterr().err, 2, "best.safetensors", "NaN", "burn_in")
    assert not list(run_.pseudo.glob("*.npz")) and not (run_.pseudo / "_SUCCESS").exists()
    assert not temps(run_.pseudo) and tree_digest(teacher) == before


def test_truncated_teacher_is_one_line(chain, tmp_path, capsys, case):
    case("damaged artifact", "components.pseudo_label with a truncated best.safetensors", "in-process")
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "best.safetensors").write_bytes((chain.burn / "best.safetensors").read_bytes()[:5000])
    run_ = chain.at(tmp_path)
    code = component(*run_.argv("pseudo_label", index=chain.index, splits=chain.splits, burn=teacher))
    expect_error(case, code, capsys.readouterr().err, 2, "best.safetensors")
    assert not run_.pseudo.exists() or not list(run_.pseudo.glob("*.npz"))


def test_nan_probabilities_are_never_quantised(tmp_path, case):
    from semires.errors import NonFiniteError, user_error_message
    from semires.pseudo.shards import write_shard

    case("non-finite numbers", "write_shard given NaN / inf teacher probabilities", "library")
    prob = torch.rand(2, 8, 8)
    prob[0, 1, 1], prob[1, 2, 2] = float("nan"), float("inf")
    path = tmp_path / "shard-00000.npz"
    with pytest.raises(NonFiniteError) as info:
        write_shard(path, [1, 2], [1, 2], [1, 1], prob, prob > 0.5)
    line = user_error_message(info.value)
    case.saw(2, f"error: {line}")
    assert "2 of 128" in line and "shard-00000.npz" in line and not path.exists() and not list(tmp_path.iterdir())


def test_nan_probabilities_are_refused_by_pwa(case):
    from semires.errors import NonFiniteError
    from semires.refine.core import pwa_weight

    case("non-finite numbers", "PWA weights of probabilities holding NaN", "library")
    prob = torch.full((1, 4, 4), 0.3)
    prob[0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="1 of 16 probabilities"):
        pwa_weight(prob)
    case.saw(2, "NonFiniteError")
    assert np.isfinite(pwa_weight(torch.full((1, 4, 4), 0.3)).numpy()).all()


def test_checksum_verdict_is_cached_per_file_version(chain, tmp_path, monkeypatch, case):
    """The store is hashed once per process and file version: reopening costs no hashing, a rewrite does."""
    from semires import io
    from semires.candidates.store import CandidateStore

    case("damaged artifact", "candidate shard damaged after the store was verified once (cache invalidated)",
         "library")
    cand = _copy(chain.cand, tmp_path / "cand")
    calls = []
    real = io.sha256_file
    monkeypatch.setattr(io, "sha256_file", lambda p, *a: calls.append(Path(p).name) or real(p, *a))
    CandidateStore(cand)
    n = len(calls)
    CandidateStore(cand)
    assert n == 2 and len(calls) == n  # two shards hashed once, not again
    shard = min((cand / "shards").glob("*.jsonl"))
    _rle_byte(shard)
    from semires.errors import DataError

    with pytest.raises(DataError, match="checksum") as info:
        CandidateStore(cand)
    case.saw(2, str(info.value))
    assert json.loads((cand / "manifest.json").read_text())["num_shards"] == 2
