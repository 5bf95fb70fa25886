"""semi.ref_competition: the other refs of an image compete for the pixels of a ref's pseudo-label."""

from __future__ import annotations

import pytest
import torch

from semires.pseudo.predict import compete, ref_probs
from semires.train.semi_config import SemiConfig


def test_a_pixel_a_rival_ref_claims_more_strongly_leaves_the_pseudo_label():
    prob = torch.full((2, 4, 4), 0.8)
    rivals = torch.zeros(2, 2, 4, 4)
    rivals[0, 0, :, :2] = 0.9          # image 0: the first rival claims the left half more strongly
    rivals[0, 1, :, 2:] = 0.7          # the second claims the right half less strongly: kept
    rivals[1, 0] = 1.0                 # image 1: a strong rival, but not a valid one (padding)
    valid = torch.tensor([[True, True], [False, False]])
    out = compete(prob, rivals, valid)
    assert torch.equal(out[0, :, :2], torch.zeros(4, 2))
    assert torch.equal(out[0, :, 2:], torch.full((4, 2), 0.8))
    assert torch.equal(out[1], prob[1])  # no rival: unchanged
    assert torch.equal(compete(prob, rivals, valid), out)  # pure


class _Echo(torch.nn.Module):
    """Foreground logit = the first token id everywhere (so each sentence's probability is known)."""

    def forward(self, images, input_ids, attention_mask):
        self.seen = images.shape[0]
        fg = input_ids[:, 0].float()[:, None, None].expand(-1, *images.shape[-2:])
        return torch.stack([torch.zeros_like(fg), fg], 1)


def test_ref_probs_averages_the_valid_sentences_of_each_ref_and_runs_only_those():
    model = _Echo()
    images = torch.zeros(2, 3, 4, 4)
    ids = torch.zeros(2, 2, 3, 5, dtype=torch.long)
    ids[..., 0] = torch.tensor([[[1, 3, 50], [2, 2, 2]], [[0, 0, 0], [4, 4, 4]]])
    valid = torch.tensor([[[True, True, False], [True, False, False]], [[False, False, False], [True, True, True]]])
    out = ref_probs(model, images, ids, torch.ones_like(ids), valid)
    assert out.shape == (2, 2, 4, 4)
    assert model.seen == int(valid.sum())  # padded sentences are not run
    sig = torch.sigmoid  # 2-class softmax of (0, fg) = sigmoid(fg)
    assert torch.allclose(out[0, 0], ((sig(torch.tensor(1.0)) + sig(torch.tensor(3.0))) / 2).expand(4, 4))
    assert torch.allclose(out[0, 1], sig(torch.tensor(2.0)).expand(4, 4))
    assert torch.equal(out[1, 0], torch.zeros(4, 4))  # no valid sentence: zeros
    assert torch.allclose(out[1, 1], sig(torch.tensor(4.0)).expand(4, 4))


def test_competition_needs_the_consensus():
    with pytest.raises(ValueError, match="ref_consensus"):
        SemiConfig(ref_competition=True)
    assert SemiConfig(ref_competition=True, ref_consensus=True).competing_refs == 4


def test_items_carry_the_other_refs_of_their_image(semi_setup):
    from semires.engine.dataset import ExpressionDataset
    from semires.models import load_tokenizer
    from semires.train.semi_data import UnlabeledDataset

    s = semi_setup
    index = s["index"]
    base = ExpressionDataset.from_split(index, load_tokenizer(str(s["text"])), 32, 12, split="train",
                                        image_ids=s["split"].unlabeled)
    ds = UnlabeledDataset(base, ref_sentences=2, competing_refs=3)
    rows_of = {}
    for row, e in enumerate(base.expressions):
        rows_of.setdefault(e.ref_id, []).append(row)
    checked = 0
    for i, e in enumerate(base.expressions):
        item = ds[i]
        assert item["rival_input_ids"].shape == (3, 2, base.input_ids.shape[1])
        others = sorted(r for r in rows_of if r != e.ref_id and index.refs[r]["image_id"] == e.image_id)[:3]
        for j in range(3):
            n = min(2, len(rows_of[others[j]])) if j < len(others) else 0
            assert item["rival_valid"][j].tolist() == [True] * n + [False] * (2 - n)
            for k in range(n):  # the rival ref's own sentences, never this ref's
                assert torch.equal(item["rival_input_ids"][j, k], base.input_ids[rows_of[others[j]][k]])
        checked += bool(others)
    assert checked > 0
    with pytest.raises(ValueError, match="ref_sentences"):
        UnlabeledDataset(base, competing_refs=2)


def test_semi_training_with_competition_logs_what_rivals_removed(semi_setup, tmp_path):
    from semires.refine import RefineConfig
    from semires.tracking import TrackingConfig
    from semires.train.semi import train_semi

    s = semi_setup
    cfg = SemiConfig(steps=4, batch_size=2, eval_every=4, log_every=2, image_size=32, device="cpu", threads=1,
                     eval_batch_size=8, overlays=0, ref_consensus=True, ref_competition=True, ref_sentences=2)
    res = train_semi(s["index"], s["split"].labeled, s["split"].unlabeled, s["burn_in"], tmp_path / "run", cfg,
                     RefineConfig(strategy="soft_iom"), s["candidates"], tracking=TrackingConfig(enabled=False),
                     progress=False)
    logged = [r for r in res["train_log"] if "rival_removed" in r]
    assert logged and all(0.0 <= r["rival_removed"] <= 1.0 for r in logged)
    assert all(0.0 <= r["pseudo_on_target_refined"] <= 1.0 and 0.0 <= r["student_fit"] <= 1.0 for r in logged)


def test_a_saved_config_without_a_later_setting_had_its_default():
    from semires.train.semi import _semi_diffs

    now = {"semi": SemiConfig(steps=10).model_dump(mode="json")}
    saved = {"semi": {k: v for k, v in now["semi"].items() if k not in ("ref_competition", "competing_refs")}}
    assert _semi_diffs(saved, now) == []
    other = {"semi": SemiConfig(steps=10, ref_consensus=True, ref_competition=True).model_dump(mode="json")}
    assert _semi_diffs(saved, other) == ["semi.ref_competition", "semi.ref_consensus"]
