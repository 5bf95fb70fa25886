"""Backbone pretraining: the stage trains, resumes, refuses a pool that would share the RES images,
and burn-in starts from its weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semires.errors import SemiresError
from semires.models import ModelConfig, build_model
from semires.pretrain.config import PretrainConfig
from semires.pretrain.pool import CategoryPool
from semires.pretrain.train import WEIGHTS, category_miou, run_pretrain
from semires.tracking import TrackingConfig

OFF = TrackingConfig(enabled=False)
MODEL = {"channels": [8, 16, 16, 16], "depths": [1, 1, 1, 1], "decoder_channels": 8}


def cfg(**kw) -> PretrainConfig:
    base = {"preset": "tiny", "num_images": 12, "val_images": 2, "steps": 4, "batch_size": 2, "image_size": 32,
            "eval_every": 2, "checkpoint_every": 1, "log_every": 1, "device": "cpu", "threads": 1}
    return PretrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "run"
    return out, run_pretrain(out, ModelConfig(**MODEL), cfg(), OFF, exclude_seeds=[0], progress=False)


def test_pretraining_writes_backbone_weights_that_burn_in_loads(pretrained):
    out, result = pretrained
    assert (out / WEIGHTS).is_file() and (out / "curve.png").is_file()
    assert result["steps"] == 4 and [h["step"] for h in result["history"]] == [2, 4]
    from safetensors.torch import load_file

    weights = load_file(out / WEIGHTS)
    model = build_model(ModelConfig(**MODEL, backbone_weights=str(out / WEIGHTS)))
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, weights[k]), k
    fresh = build_model(ModelConfig(**MODEL))
    assert not torch.equal(fresh.backbone.stem[0].weight, model.backbone.stem[0].weight)


def test_a_finished_pretraining_is_returned_as_is(pretrained):
    out, result = pretrained
    mtime = (out / WEIGHTS).stat().st_mtime_ns
    again = run_pretrain(out, ModelConfig(**MODEL), cfg(), OFF, progress=False)
    assert again["final"] == result["final"] and (out / WEIGHTS).stat().st_mtime_ns == mtime
    with pytest.raises(SemiresError, match="different config"):
        run_pretrain(out, ModelConfig(**MODEL), cfg(lr=1e-2), OFF, progress=False)


def test_a_killed_pretraining_resumes_to_the_same_weights(pretrained, tmp_path):
    from safetensors.torch import load_file

    out, _ = pretrained

    class Kill(Exception):
        pass

    def hook(step):
        if step == 3:
            raise Kill

    with pytest.raises(Kill):
        run_pretrain(tmp_path / "run", ModelConfig(**MODEL), cfg(), OFF, progress=False, step_hook=hook)
    assert (tmp_path / "run" / "last.pt").is_file() and not (tmp_path / "run" / WEIGHTS).exists()
    run_pretrain(tmp_path / "run", ModelConfig(**MODEL), cfg(), OFF, progress=False)
    a, b = load_file(out / WEIGHTS), load_file(tmp_path / "run" / WEIGHTS)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_pool_drawn_with_the_datasets_seed_is_refused(tmp_path):
    with pytest.raises(SemiresError, match="pretrain.seed"):
        run_pretrain(tmp_path, ModelConfig(**MODEL), cfg(seed=0), OFF, exclude_seeds=[0], progress=False)
    with pytest.raises(SemiresError, match="lavt_swin|conv backbone"):
        run_pretrain(tmp_path, ModelConfig(name="lavt_swin", random_init=True), cfg(), OFF, progress=False)


def test_the_pool_shares_no_image_with_the_res_dataset(pretrained, refshapes_tiny):
    out, _ = pretrained
    from semires.data.index import RefIndex

    index = RefIndex.load(refshapes_tiny["index"])
    res = {index.load_image(i).tobytes() for i in index.image_ids()}
    pool = CategoryPool(out / "pool", 64)
    assert len(pool) == 12 and pool.maps.max() >= 1
    from PIL import Image

    for path in sorted((out / "pool" / "images").iterdir()):
        assert np.asarray(Image.open(path).convert("RGB")).tobytes() not in res


def test_backbone_weights_of_another_shape_are_refused(pretrained):
    out, _ = pretrained
    with pytest.raises(SemiresError, match="channels"):
        build_model(ModelConfig(**{**MODEL, "channels": [8, 16, 16, 32]}, backbone_weights=str(out / WEIGHTS)))
    with pytest.raises(SemiresError, match="not found"):
        build_model(ModelConfig(**MODEL, backbone_weights=str(out / "missing.safetensors")))


def test_category_miou_skips_absent_categories_and_background():
    conf = np.zeros((4, 4), np.int64)
    conf[0, 0] = 100          # background: not scored
    conf[1, 1], conf[1, 2] = 3, 1   # category 1: IoU 3 / 4
    conf[2, 2] = 0            # category 2: predicted once (wrongly), IoU 0
    assert category_miou(conf) == pytest.approx(100 * (0.75 + 0.0) / 2)  # category 3 absent everywhere
