"""IOM, CPI and PWA on hand-built cases, and the vectorised functions against the per-candidate loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from semires.config import Params, section
from semires.refine import (
    AtomBatch,
    AtomCandidates,
    CandidateBatch,
    RefineConfig,
    cpi,
    iom,
    pair_stats,
    pwa_weight,
    refine,
)
from semires.refine.atoms import pack_for_device
from semires.refine.counts import pixel_counts
from semires.refine.reference import refine_loop

H = W = 20


def box(y0, x0, y1, x1, h=H, w=W) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def batch(*stacks) -> CandidateBatch:
    return CandidateBatch.from_list([torch.stack(s) if len(s) else torch.zeros(0, H, W, dtype=torch.bool)
                                     for s in stacks], size=(H, W))


def test_iom_picks_the_best_iou_candidate_among_nested_masks():
    p = box(5, 5, 15, 15)  # 100 px
    inner = box(7, 7, 13, 13)  # 36 px inside P: IoU 0.36
    close = box(5, 5, 15, 14)  # 90 px inside P: IoU 0.9
    outer = box(0, 0, 20, 20)  # whole image: IoU 0.25
    m = iom(p[None], batch([inner, outer, close]))
    assert m.matched.tolist() == [True]
    assert torch.equal(m.label[0], close)
    assert m.score.tolist() == [0.9]
    assert m.parts.tolist() == [1]


def test_iom_tie_goes_to_the_first_candidate():
    p = box(5, 5, 15, 15)
    left, right = box(5, 4, 15, 14), box(5, 6, 15, 16)  # same IoU 90/110 by symmetry
    m = iom(p[None], batch([left, right]))
    assert torch.equal(m.label[0], left)
    m = iom(p[None], batch([right, left]))
    assert torch.equal(m.label[0], right)


def test_iom_threshold_is_strict():
    p = box(0, 0, 10, 10)  # 100 px
    half = box(0, 0, 10, 5)  # IoU exactly 50/100
    m = iom(p[None], batch([half]), iou_thresh=0.5)
    assert m.matched.tolist() == [False]
    assert torch.equal(m.label[0], p)
    assert m.score.tolist() == [0.5]
    assert iom(p[None], batch([half]), iou_thresh=0.49).matched.tolist() == [True]


def test_no_match_keeps_the_pseudo_mask_with_pwa_weights():
    p = box(0, 0, 6, 6)
    far = box(12, 12, 18, 18)
    prob = torch.full((1, H, W), 0.5)
    for strategy in ("iom", "cpi"):
        r = refine(p[None], prob, batch([far]), RefineConfig(strategy=strategy))
        assert r.matched.tolist() == [False]
        assert torch.equal(r.label[0], p)
        assert r.score.tolist() == [0.0]
        assert torch.allclose(r.weight, torch.full_like(r.weight, 1.3 - 1 / math.sqrt(2 * math.pi * 0.1)))
        no_pwa = refine(p[None], prob, batch([far]), RefineConfig(strategy=strategy, pwa=False))
        assert torch.equal(no_pwa.weight, torch.ones_like(no_pwa.weight))


def test_empty_pseudo_mask_never_matches():
    p = torch.zeros(H, W, dtype=torch.bool)
    cands = batch([box(0, 0, 20, 20), box(2, 2, 4, 4), torch.zeros(H, W, dtype=torch.bool)])
    st_ = pair_stats(p[None], cands)
    assert st_.iou.tolist() == [0.0, 0.0, 0.0]
    assert st_.cover.tolist() == [0.0, 0.0, 0.0] and st_.inside.tolist() == [0.0, 0.0, 0.0]
    for strategy in ("iom", "cpi"):
        r = refine(p[None], torch.zeros(1, H, W), cands, RefineConfig(strategy=strategy))
        assert r.matched.tolist() == [False]
        assert not r.label.any()


def test_samples_without_candidates_never_match():
    p = box(5, 5, 15, 15)
    cands = batch([], [p.clone()])
    for strategy in ("iom", "cpi"):
        r = refine(torch.stack([p, p]), torch.ones(2, H, W), cands, RefineConfig(strategy=strategy))
        assert r.matched.tolist() == [False, True]
        assert r.score.tolist() == [0.0, 1.0]
    empty = CandidateBatch.from_list([torch.zeros(0, H, W, dtype=torch.bool)] * 2)
    r = refine(torch.stack([p, p]), torch.ones(2, H, W), empty, RefineConfig(strategy="iom"))
    assert r.matched.tolist() == [False, False]


def test_cpi_unites_parts_covering_or_inside_the_pseudo_mask():
    p = box(4, 4, 16, 16)  # 144 px
    top, bottom = box(4, 4, 10, 16), box(10, 4, 16, 16)  # halves, each inside P (inside 1.0, cover 0.5)
    straddle = box(0, 0, 8, 8)  # 16 of 64 px inside P: inside 0.25, cover 0.11 -> not taken
    m = cpi(p[None], batch([top, straddle, bottom]))
    assert m.matched.tolist() == [True]
    assert torch.equal(m.label[0], top | bottom)
    assert m.parts.tolist() == [2]
    assert m.score.tolist() == [1.0]


def test_cpi_takes_a_large_candidate_that_contains_the_pseudo_mask():
    # Documented consequence of the published rule: cover = |M and P| / |P| = 1 > 0.7.
    p = box(8, 8, 12, 12)  # 16 px
    whole = box(0, 0, 20, 20)
    m = cpi(p[None], batch([whole]))
    assert m.matched.tolist() == [True]
    assert torch.equal(m.label[0], whole)
    assert m.score.tolist() == [16 / 400]
    # IOM would not take it: IoU 0.04.
    assert iom(p[None], batch([whole])).matched.tolist() == [False]


def test_cpi_thresholds_are_strict():
    p = box(0, 0, 10, 10)  # 100 px
    seventy = box(0, 0, 10, 7)  # cover exactly 0.7, inside 1.0
    assert cpi(p[None], batch([seventy]), cover_thresh=0.7, inside_thresh=1.0).matched.tolist() == [False]
    assert cpi(p[None], batch([seventy]), cover_thresh=0.69, inside_thresh=1.0).matched.tolist() == [True]
    assert cpi(p[None], batch([seventy]), cover_thresh=1.0, inside_thresh=0.99).matched.tolist() == [True]


def test_pwa_weight_values():
    p = torch.tensor([0.0, 0.5, 1.0, 0.25])
    w = pwa_weight(p)
    peak = 1 / math.sqrt(2 * math.pi * 0.1)
    expect = [1.3 - peak * math.exp(-(x - 0.5) ** 2 / 0.2) for x in p.tolist()]
    assert torch.allclose(w, torch.tensor(expect), atol=1e-6)
    assert abs(w[1].item() - 0.0384) < 1e-3 and abs(w[0].item() - 0.9386) < 1e-3
    assert w.dtype == torch.float32
    assert (pwa_weight(torch.rand(1000)) > 0).all()
    assert torch.allclose(pwa_weight(p, offset=2.0, mu=0.0, var=0.5)[0], torch.tensor(2.0 - 1 / math.sqrt(math.pi)))
    assert RefineConfig().pwa_min_weight() == pytest.approx(1.3 - peak)
    with pytest.raises(ValueError):
        pwa_weight(p, var=0.0)


def test_matched_samples_have_unit_weight_and_strategy_none_matches_nothing():
    p = box(5, 5, 15, 15)
    cands = batch([p.clone()], [box(0, 0, 2, 2)])
    prob = torch.full((2, H, W), 0.5)
    r = refine(torch.stack([p, p]), prob, cands, RefineConfig(strategy="iom", pwa=True))
    assert r.matched.tolist() == [True, False]
    assert torch.equal(r.weight[0], torch.ones(H, W))
    assert (r.weight[1] < 0.1).all()
    none = refine(torch.stack([p, p]), prob, None, RefineConfig(strategy="none", pwa=True))
    assert none.matched.tolist() == [False, False] and (none.weight < 0.1).all()
    with pytest.raises(ValueError, match="needs candidates"):
        refine(torch.stack([p, p]), prob, None, RefineConfig(strategy="cpi"))


def test_mismatched_inputs_are_rejected_with_a_clear_message():
    p = box(5, 5, 15, 15)[None]
    with pytest.raises(ValueError, match="resize the candidates"):
        iom(p, CandidateBatch.from_list([torch.zeros(2, 10, 10, dtype=torch.bool)]))
    with pytest.raises(ValueError, match="candidate stacks for"):
        iom(p, batch([], []))
    with pytest.raises(ValueError, match="disagree"):
        CandidateBatch.from_list([torch.zeros(1, 4, 4, dtype=torch.bool), torch.zeros(1, 5, 5, dtype=torch.bool)])


def test_padded_and_list_packing_agree():
    g = torch.Generator().manual_seed(1)
    padded = torch.rand(3, 4, 6, 6, generator=g) < 0.5
    counts = torch.tensor([2, 0, 4])
    a = CandidateBatch.from_padded(padded, counts)
    b = CandidateBatch.from_list([padded[0, :2], padded[1, :0], padded[2, :4]])
    assert torch.equal(a.masks, b.masks) and torch.equal(a.owner, b.owner)
    assert a.counts().tolist() == [2, 0, 4]
    assert torch.equal(a.sample(2), padded[2])


def test_config_section_is_typed_and_strict():
    cfg = section(Params.model_validate({"refine": {"strategy": "cpi", "pwa": False}}), "refine", RefineConfig)
    assert cfg.strategy == "cpi" and not cfg.pwa and cfg.iom_iou_thresh == 0.5 and cfg.name == "cpi"
    assert RefineConfig().name == "iom+pwa" and RefineConfig(strategy="none", pwa=False).name == "mt"
    with pytest.raises(ValidationError):
        RefineConfig(strategy="best")
    with pytest.raises(ValidationError):
        RefineConfig(pwa_var=0)
    with pytest.raises(ValidationError):
        RefineConfig(iom_thresh=0.5)  # typo: unknown keys are errors


@st.composite
def refine_inputs(draw):
    b = draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 13)), draw(st.integers(1, 13))  # sizes not a multiple of 8 too
    seed = draw(st.integers(0, 2**31 - 1))
    ks = draw(st.lists(st.integers(0, 6), min_size=b, max_size=b))
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    rng = np.random.default_rng(seed)
    pseudo = torch.from_numpy(rng.random((b, h, w)) < density)
    prob = torch.from_numpy(rng.random((b, h, w)).astype(np.float32))
    stacks = []
    for k in ks:
        cand = rng.random((k, h, w)) < rng.choice([0.05, 0.3, 0.7, 1.0])
        if k > 1 and rng.random() < 0.3:
            cand[1] = cand[0]  # exact ties
        stacks.append(torch.from_numpy(cand))
    cfg = RefineConfig(strategy=draw(st.sampled_from(["none", "iom", "cpi"])), pwa=draw(st.booleans()),
                       iom_iou_thresh=draw(st.sampled_from([0.0, 0.3, 0.5, 0.9])),
                       cpi_cover_thresh=draw(st.sampled_from([0.0, 0.5, 0.7])),
                       cpi_inside_thresh=draw(st.sampled_from([0.5, 0.7, 1.0])))
    return pseudo, prob, stacks, cfg


@settings(max_examples=150, deadline=None)
@given(refine_inputs())
def test_vectorised_refine_equals_the_per_candidate_loop(inputs):
    pseudo, prob, stacks, cfg = inputs
    cands = CandidateBatch.from_list(stacks, size=tuple(pseudo.shape[1:]))
    got = refine(pseudo, prob, cands, cfg)
    want = refine_loop(pseudo, prob, stacks, cfg)
    assert torch.equal(got.label, want.label)
    assert torch.equal(got.matched, want.matched)
    assert torch.equal(got.parts, want.parts)
    assert torch.equal(got.score, want.score)
    assert torch.allclose(got.weight, want.weight, atol=1e-6, rtol=0)
    atoms = AtomBatch.from_list([AtomCandidates.from_masks(m) for m in stacks])
    via_atoms = refine(pseudo, prob, atoms, cfg)
    for field in ("label", "matched", "parts", "score", "weight"):
        assert torch.equal(getattr(via_atoms, field), getattr(got, field)), field


def test_atoms_round_trip_and_count_like_the_dense_stack():
    rng = np.random.default_rng(3)
    stack = torch.from_numpy(rng.random((7, 9, 11)) < 0.4)
    stack[3] = False  # an empty candidate
    stack[5] = stack[1]  # a duplicate
    a = AtomCandidates.from_masks(stack)
    assert torch.equal(a.masks(), stack)
    assert a.area.tolist() == stack.flatten(1).sum(1).tolist()
    assert a.atom.dtype == torch.int32 and a.member.shape[1] == 7 and int(a.atom.max()) < a.member.shape[0]
    empty = AtomCandidates.from_masks(torch.zeros(0, 9, 11, dtype=torch.bool))
    assert empty.masks().shape == (0, 9, 11) and empty.num_candidates == 0
    pseudo = torch.from_numpy(rng.random((2, 9, 11)) < 0.5)
    batch = AtomBatch.from_list([a, empty])
    dense = CandidateBatch.from_list([stack, torch.zeros(0, 9, 11, dtype=torch.bool)])
    for x, y in zip(batch.overlap(pseudo), dense.overlap(pseudo)):
        assert torch.equal(x, y)
    sel = torch.tensor([True, False, False, True, False, True, False])
    assert torch.equal(batch.union(sel), dense.union(sel))
    assert torch.equal(batch.union(sel)[0], stack[0] | stack[5])
    assert isinstance(pack_for_device([a, empty], "cpu"), AtomBatch)
    with pytest.raises(ValueError, match="disagree"):
        AtomBatch.from_list([a, AtomCandidates.from_masks(torch.zeros(1, 4, 4, dtype=torch.bool))])


@pytest.mark.parametrize("picked", [0, 1, 7, 8, 9, 40])
def test_atom_union_equals_the_dense_union_for_any_number_picked(picked):
    """union() tests packed membership bytes against the packed selection: any count of picked
    candidates, across byte boundaries, gives the dense union."""
    rng = np.random.default_rng(picked)
    stacks = [torch.from_numpy(rng.random((40, 12, 10)) < 0.2), torch.from_numpy(rng.random((3, 12, 10)) < 0.5)]
    sel = torch.zeros(43, dtype=torch.bool)
    sel[torch.from_numpy(rng.permutation(40)[:picked])] = True
    sel[41] = True
    atoms = AtomBatch.from_list([AtomCandidates.from_masks(m) for m in stacks])
    want = CandidateBatch.from_list(stacks).union(sel)
    assert torch.equal(atoms.union(sel), want)
    assert torch.equal(want[0], stacks[0][sel[:40]].any(dim=0))


def test_dense_union_of_more_than_255_candidates_per_sample():
    # byte lanes count covering candidates: more than 255 per sample are added in rounds, never overflow
    rng = np.random.default_rng(5)
    stacks = [torch.from_numpy(rng.random((600, 5, 7)) < 0.5), torch.from_numpy(rng.random((3, 5, 7)) < 0.5)]
    cands = CandidateBatch.from_list(stacks)
    selected = torch.ones(603, dtype=torch.bool)
    selected[10] = False
    got = cands.union(selected)
    assert torch.equal(got[0], stacks[0][torch.arange(600) != 10].any(0))
    assert torch.equal(got[1], stacks[1].any(0))
    assert not cands.union(torch.zeros(603, dtype=torch.bool)).any()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 9), st.integers(1, 5), st.integers(1, 70), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_pixel_counts_are_exact_for_any_size_and_block(n, b, hw, block_rows, seed):
    rng = np.random.default_rng(seed)
    masks = torch.from_numpy(rng.random((n, 1, hw)) < 0.5)
    ref = torch.from_numpy(rng.random((b, 1, hw)) < 0.5)
    owner = torch.from_numpy(rng.integers(0, b, n))
    words = -(-hw // 8)
    inter, area, ref_area = pixel_counts(masks, owner, ref, block_bytes=block_rows * words * 8)
    assert inter.tolist() == (masks & ref[owner]).flatten(1).sum(1).tolist()
    assert area.tolist() == masks.flatten(1).sum(1).tolist()
    assert ref_area.tolist() == ref.flatten(1).sum(1).tolist()


def test_pixel_counts_on_large_masks_do_not_overflow_byte_lanes():
    masks = torch.ones(3, 300, 301, dtype=torch.bool)  # 90300 px per row: many 255-word groups
    ref = torch.ones(1, 300, 301, dtype=torch.bool)
    ref[0, :, :100] = False
    inter, area, ref_area = pixel_counts(masks, torch.zeros(3, dtype=torch.int64), ref)
    assert area.tolist() == [90300] * 3 and inter.tolist() == [300 * 201] * 3 and ref_area.tolist() == [300 * 201]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_give_the_same_results():
    rng = np.random.default_rng(0)
    stacks = [torch.from_numpy(rng.random((k, 64, 72)) < 0.4) for k in (5, 0, 30, 12)]
    pseudo = torch.from_numpy(rng.random((4, 64, 72)) < 0.4)
    prob = torch.from_numpy(rng.random((4, 64, 72)).astype(np.float32))
    for strategy in ("iom", "cpi"):
        cfg = RefineConfig(strategy=strategy, iom_iou_thresh=0.2, cpi_cover_thresh=0.3, cpi_inside_thresh=0.3)
        cpu = refine(pseudo, prob, CandidateBatch.from_list(stacks), cfg)
        gpu = refine(pseudo.cuda(), prob.cuda(), CandidateBatch.from_list(stacks, device="cuda"), cfg)
        assert torch.equal(cpu.label, gpu.label.cpu()) and torch.equal(cpu.matched, gpu.matched.cpu())
        assert torch.equal(cpu.score, gpu.score.cpu()) and torch.equal(cpu.parts, gpu.parts.cpu())
        assert torch.allclose(cpu.weight, gpu.weight.cpu(), atol=1e-6, rtol=0)
        atoms = AtomBatch.from_list([AtomCandidates.from_masks(m) for m in stacks], device="cuda")
        torch.use_deterministic_algorithms(True)  # the trainer may run in deterministic mode: nothing may refuse
        try:
            via_atoms = refine(pseudo.cuda(), prob.cuda(), atoms, cfg)
            dense = refine(pseudo.cuda(), prob.cuda(), CandidateBatch.from_list(stacks, device="cuda"), cfg)
            packed = pack_for_device([AtomCandidates.from_masks(m) for m in stacks], "cuda")
            assert isinstance(packed, CandidateBatch)
            via_packed = refine(pseudo.cuda(), prob.cuda(), packed, cfg)
        finally:
            torch.use_deterministic_algorithms(False)
        for got in (via_atoms, dense, via_packed):
            assert torch.equal(cpu.label, got.label.cpu()) and torch.equal(cpu.score, got.score.cpu())
