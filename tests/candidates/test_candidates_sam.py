"""SAM candidates through segment-anything's own model classes (tiny, random weights) and the fast AMG's
agreement with segment-anything's SamAutomaticMaskGenerator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam

from semires.candidates import CandidatesConfig, SamConfig, build_generator
from semires.candidates.disc_sam import disc_sam
from semires.candidates.fast_amg import FastAutomaticMaskGenerator, _remove_small_regions
from semires.candidates.sam import SamGenerator
from semires.candidates.sam_models import build_sam_arch, load_sam
from semires.data import masks as mask_codec
from semires.errors import SemiresError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = np.full((96, 120, 3), (40, 70, 100), np.uint8)
    img[10:50, 15:70] = (210, 40, 40)
    img[55:90, 70:115] = (30, 200, 60)
    return np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)


def test_tiny_sam_is_built_from_segment_anything_modules():
    sam = build_sam_arch("tiny", seed=3)
    assert isinstance(sam, Sam) and isinstance(sam.image_encoder, ImageEncoderViT)
    assert isinstance(sam.prompt_encoder, PromptEncoder) and isinstance(sam.mask_decoder, MaskDecoder)
    assert sam.image_encoder.img_size == 256 and sam.image_encoder.patch_embed.proj.out_channels == 64
    assert len(sam.image_encoder.blocks) == 2
    again = build_sam_arch("tiny", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(sam.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("implementation", ["fast", "vanilla"])
def test_sam_generator_output_format_and_rle_round_trip(image, implementation):
    cfg = CandidatesConfig(generator="sam", sam=SamConfig(model="tiny", implementation=implementation, points_per_side=4,
                                                          pred_iou_thresh=0.0, stability_score_thresh=0.0))
    gen = build_generator(cfg)
    assert isinstance(gen, SamGenerator) and gen.device.type == "cpu"
    c = gen.generate(image)
    assert len(c) >= 1
    assert c.masks.dtype == bool and c.masks.shape[1:] == image.shape[:2]
    assert c.scores.dtype == np.float32 and c.scores.shape == (len(c),)
    assert np.all(np.diff(c.scores) <= 0)  # NMS order
    rles = mask_codec.encode_many(c.masks)
    assert np.array_equal(mask_codec.decode_many(rles), c.masks)


def _vanilla(model, image, **kw):
    anns = SamAutomaticMaskGenerator(model, output_mode="binary_mask", **kw).generate(image)
    masks = np.stack([a["segmentation"] for a in anns]) if anns else np.zeros((0, *image.shape[:2]), bool)
    return masks, np.array([a["predicted_iou"] for a in anns], np.float32), [a["bbox"] for a in anns]


def _assert_same(model, image, **kw):
    vm, vs, vb = _vanilla(model, image, **kw)
    res = FastAutomaticMaskGenerator(model, **kw).generate(image)
    fm, fs = res.masks.numpy(), res.iou_preds.numpy()
    assert len(vm) == len(fm)
    assert np.array_equal(vm, fm)
    np.testing.assert_allclose(vs, fs, rtol=0, atol=1e-6)
    xywh = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in res.boxes.tolist()]
    assert xywh == [[int(v) for v in b] for b in vb]
    return len(vm)


def test_fast_amg_equals_vanilla_on_disc_sam(image):
    """Prompt-dependent masks: the IoU, stability and NMS filters each keep some masks and drop others."""
    model = disc_sam("tiny")
    n = _assert_same(model, image, points_per_side=8, points_per_batch=16)
    n_all = _assert_same(model, image, points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                         box_nms_thresh=1.0)
    assert 3 <= n < n_all <= 3 * 64
    assert _assert_same(model, image, points_per_side=6, crop_n_layers=1, pred_iou_thresh=0.8,
                        stability_score_thresh=0.5) >= 3


def test_fast_amg_equals_vanilla_on_tiny_sam(image):
    """The real tiny network (random weights: filters lowered equally, NMS off to compare every mask)."""
    model = build_sam_arch("tiny", seed=1)
    assert _assert_same(model, image, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                        box_nms_thresh=1.0) == 48


def test_small_region_removal_fills_holes_and_drops_islands():
    m = np.zeros((1, 40, 40), bool)
    m[0, 5:30, 5:30] = True
    m[0, 10:12, 10:12] = False  # 4 px hole
    m[0, 35:37, 35:37] = True  # 4 px island
    boxes = torch.tensor([[5, 5, 36, 36]])
    out, out_boxes, keep = _remove_small_regions(torch.from_numpy(m), boxes, 10, 0.7)
    want = np.zeros((40, 40), bool)
    want[5:30, 5:30] = True
    assert np.array_equal(out[0].numpy(), want)
    assert out_boxes.tolist() == [[5, 5, 29, 29]] and keep.tolist() == [0]


def test_missing_checkpoint_names_the_params_key_and_the_download():
    with pytest.raises(SemiresError) as info:
        load_sam("vit_h", None)
    msg = str(info.value)
    assert "candidates.sam.checkpoint" in msg and "sam_vit_h_4b8939.pth" in msg and "segment-anything" in msg
    with pytest.raises(SemiresError, match="candidates.sam.checkpoint"):
        SamGenerator(SamConfig(model="vit_b", checkpoint="/nonexistent/sam_vit_b.pth"))


def test_unreadable_checkpoint_is_reported(tmp_path):
    bad = tmp_path / "sam_vit_b.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SemiresError, match="cannot read SAM checkpoint"):
        load_sam("vit_b", str(bad))


def test_sam_candidates_through_the_store(refshapes_tiny, tmp_path):
    from semires.candidates.store import CandidateStore, generate_shard, merge
    from semires.data.index import RefIndex

    ix = RefIndex.load(refshapes_tiny["index"])
    ids = ix.image_ids()[:3]
    gen = SamGenerator(SamConfig(model="tiny", points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                 box_nms_thresh=1.0))
    entry = generate_shard(ix, ids, 0, 1, tmp_path, gen, progress=False)
    assert entry["images"] == 3 and entry["generator"]["name"] == "sam-tiny-fast"
    merge(tmp_path, 1)
    store = CandidateStore(tmp_path, verify=True)
    for iid in ids:
        want = gen.generate(ix.load_image(iid))
        assert len(want) == 48 and torch.equal(store.masks(iid), torch.from_numpy(want.masks))
