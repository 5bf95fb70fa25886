"""Supervised burn-in: outputs, resume after a kill (bit-exact), divergence guard, config checks."""

from __future__ import annotations

import pytest
import torch

from semires import io
from semires.engine.checkpoint import load_checkpoint, read_model_file
from semires.errors import SemiresError, TrainingDiverged
from semires.tracking import TrackingConfig
from semires.train.supervised import resolve_labeled, train_supervised

OFF = TrackingConfig(enabled=False)


class Killed(Exception):
    """Stands in for SIGKILL: raised from the step hook, after that step's checkpoint."""


def _cfgs(tiny_text, **kw):
    from res_fixtures import tiny_burn_in, tiny_model_cfg

    return tiny_model_cfg(tiny_text), tiny_burn_in(**kw)


def test_finished_run_has_all_outputs(trained_run):
    for name in ("config.json", "last.pt", "best.safetensors", "metrics.json", "overlays_val.png", "_SUCCESS"):
        assert (trained_run / name).is_file(), name
    m = io.read_json(trained_run / "metrics.json")
    assert m["steps"] == 3 * m["steps_per_epoch"] and len(m["history"]) == 3
    assert m["train_expressions"] == 20 and m["val_expressions"] == 4
    assert m["best"]["oIoU"] == max(h["oIoU"] for h in m["history"])
    assert all(0 <= h["mIoU"] <= 100 for h in m["history"])
    _, cfg, info = read_model_file(trained_run / "best.safetensors")
    assert info["epoch"] == m["best_epoch"] and info["image_size"] == 32 and cfg.name == "lavt_tiny"
    resolved = io.read_json(trained_run / "config.json")
    assert resolved["burn_in"]["class_weights"] == [0.9, 1.1] and resolved["data"]["labeled_images"] == "all"


def test_finished_run_is_not_redone(trained_run, tiny_text, mini_index):
    model_cfg, cfg = _cfgs(tiny_text, epochs=3)
    calls = []
    res = train_supervised(mini_index, None, trained_run, model_cfg, cfg, OFF, step_hook=calls.append,
                           progress=False)
    assert calls == [] and res == io.read_json(trained_run / "metrics.json")


def test_kill_and_rerun_resumes_to_the_same_result(tmp_path, tiny_text, mini_index):
    model_cfg, cfg = _cfgs(tiny_text, epochs=3, checkpoint_every=2, batch_size=3)
    full = train_supervised(mini_index, None, tmp_path / "full", model_cfg, cfg, OFF, progress=False)

    def kill_at_7(step):
        if step == 7:  # mid-epoch 2 (6 steps per epoch); last checkpoint at step 6
            raise Killed

    with pytest.raises(Killed):
        train_supervised(mini_index, None, tmp_path / "cut", model_cfg, cfg, OFF, step_hook=kill_at_7,
                         progress=False)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 6
    assert not io.is_complete(tmp_path / "cut")
    seen = []
    resumed = train_supervised(mini_index, None, tmp_path / "cut", model_cfg, cfg, OFF, step_hook=seen.append,
                               progress=False)
    assert seen[0] == 7 and seen[-1] == full["steps"]
    assert resumed["history"] == full["history"] and resumed["best"] == full["best"]
    a, _, _ = read_model_file(tmp_path / "full" / "best.safetensors")
    b, _, _ = read_model_file(tmp_path / "cut" / "best.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(la["model"][k], lb["model"][k]) for k in la["model"])


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path, tiny_text, mini_index):
    model_cfg, cfg = _cfgs(tiny_text, epochs=2, checkpoint_every=2)
    holder = {}

    def poison(step):
        if step == 2:  # after step 2's checkpoint: the weights go bad, the next loss is NaN
            model = holder["model"]
            with torch.no_grad():
                model.decoder.classifier.weight.fill_(float("nan"))

    import semires.train.supervised as sup

    real_build = sup.build_model

    def build_and_keep(cfg_):
        holder["model"] = real_build(cfg_)
        return holder["model"]

    sup.build_model = build_and_keep
    try:
        with pytest.raises(TrainingDiverged, match="step 3") as err:
            train_supervised(mini_index, None, tmp_path / "run", model_cfg, cfg, OFF, step_hook=poison,
                             progress=False)
    finally:
        sup.build_model = real_build
    assert "last.pt" in str(err.value)
    doc = load_checkpoint(tmp_path / "run" / "last.pt")
    assert doc["step"] == 2
    assert all(torch.isfinite(v).all() for v in doc["model"].values() if v.is_floating_point())
    assert not io.is_complete(tmp_path / "run")


def test_resume_with_a_changed_config_is_refused(tmp_path, tiny_text, mini_index):
    model_cfg, cfg = _cfgs(tiny_text, epochs=2, checkpoint_every=1)

    def stop(step):
        raise Killed

    with pytest.raises(Killed):
        train_supervised(mini_index, None, tmp_path / "run", model_cfg, cfg, OFF, step_hook=stop, progress=False)
    _, other = _cfgs(tiny_text, epochs=2, checkpoint_every=1, lr=5e-3)
    with pytest.raises(SemiresError, match=r"different config \(burn_in.lr\)"):
        train_supervised(mini_index, None, tmp_path / "run", model_cfg, other, OFF, progress=False)


def test_labeled_subset_trains_only_on_those_images(tmp_path, tiny_text, mini_index):
    from semires.data.index import RefIndex

    train_imgs = RefIndex.load(mini_index).image_ids("train")
    ids_file = tmp_path / "labeled.txt"
    ids_file.write_text(f"{train_imgs[0]}\n")
    labeled = resolve_labeled(ids_file)
    assert labeled == [train_imgs[0]] and resolve_labeled("all") is None
    model_cfg, cfg = _cfgs(tiny_text, epochs=1, steps_per_epoch=3)
    res = train_supervised(mini_index, labeled, tmp_path / "run", model_cfg, cfg, OFF, progress=False)
    assert res["train_expressions"] == 4 and res["steps"] == 3  # 2 refs x 2 sentences, wrapped into full batches


def test_category_maps_paint_every_annotation_with_its_class(tiny_text, mini_index):
    import numpy as np

    from semires.data.index import RefIndex
    from semires.engine.dataset import ExpressionDataset
    from semires.models import load_tokenizer
    from semires.models.category_head import category_lookup

    index = RefIndex.load(mini_index)
    lookup = category_lookup(index.cats)
    assert lookup == {1: 1, 2: 2}
    ds = ExpressionDataset.from_split(index, load_tokenizer(tiny_text), 32, 8, split="train", categories=lookup)
    item = ds[0]
    image_id = int(item["image_id"])
    cmap = item["categories"].numpy()
    assert cmap.shape == (32, 32) and cmap.dtype == np.int64
    anns = index.image_anns(image_id)
    assert len(anns) == 2
    painted = np.zeros_like(cmap)
    for aid in anns:
        m = ds.target(aid)
        assert (cmap[m] == lookup[index.anns[aid]["category_id"]]).all()
        painted[m] = 1
    assert (cmap[painted == 0] == 0).all() and painted.any()
    assert "categories" not in ExpressionDataset.from_split(index, load_tokenizer(tiny_text), 32, 8, split="train")[0]


def test_category_loss_trains_the_head_and_is_checked(tmp_path, tiny_text, mini_index):
    from res_fixtures import tiny_burn_in, tiny_model_cfg

    from semires.engine.checkpoint import load_model
    from semires.engine.runtime import seed_everything
    from semires.models import build_model

    model_cfg, cfg = tiny_model_cfg(tiny_text, categories=2), tiny_burn_in(epochs=1, category_weight=1.0)
    res = train_supervised(mini_index, None, tmp_path / "run", model_cfg, cfg, OFF, progress=False)
    assert res["steps"] > 0
    model, saved_cfg, _ = load_model(tmp_path / "run" / "last.pt")
    assert saved_cfg.categories == 2 and model.category_head is not None
    seed_everything(cfg.seed)  # as training does before it builds the model: the initial weights
    init = dict(build_model(model_cfg).category_head.named_parameters())
    moved = [n for n, p in model.category_head.named_parameters() if not torch.equal(p, init[n])]
    assert moved  # the auxiliary loss reached the head
    with pytest.raises(SemiresError, match="model.categories is 1"):
        train_supervised(mini_index, None, tmp_path / "few", tiny_model_cfg(tiny_text, categories=1), cfg, OFF,
                         progress=False)
    with pytest.raises(SemiresError, match="category_weight is 0"):
        train_supervised(mini_index, None, tmp_path / "off", model_cfg, tiny_burn_in(epochs=1, category_weight=0.0),
                         OFF, progress=False)


# the model of the 100 % benchmark run (subpixel head, directional context) is exported through the same path
@pytest.mark.parametrize("model_kw", [{}, {"detail_stride": 4, "subpixel_channels": 4, "context_stages": [1, 2]}])
def test_mlflow_run_gets_params_metrics_artifacts_and_model(tmp_path, tiny_text, mini_index, monkeypatch, model_kw):
    import mlflow
    from res_fixtures import tiny_model_cfg

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    parent = mlflow.MlflowClient(uri).create_run(
        mlflow.create_experiment("semires", (tmp_path / "art").as_uri())).info.run_id
    monkeypatch.setenv("SEMIRES_PARENT_RUN_ID", parent)
    _, cfg = _cfgs(tiny_text, epochs=1)
    train_supervised(mini_index, None, tmp_path / "run", tiny_model_cfg(tiny_text, **model_kw), cfg,
                     TrackingConfig(uri=uri, experiment="semires"), progress=False)
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("semires").experiment_id],
                              f"tags.mlflow.parentRunId = '{parent}'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["semires.stage"] == "burn_in"
    assert run.data.params["burn_in.lr"] == "0.001" and run.data.params["model.name"] == "lavt_tiny"
    assert "val.mIoU" in run.data.metrics and "train.loss" in run.data.metrics
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "config.json", "overlays_val.png"} <= arts
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert len(models) == 1
    info = mlflow.models.get_model_info(f"models:/{models[0].model_id}")
    assert [i["name"] for i in info.signature.inputs.to_dict()] == ["images", "input_ids", "attention_mask"]
    assert tuple(info.signature.outputs.inputs[0].shape) == (-1, 2, 32, 32)


def test_early_epochs_train_at_the_early_size_and_resume_there(tmp_path, tiny_text, mini_index, monkeypatch):
    import semires.train.supervised as sup

    sizes: list[tuple[int, int]] = []  # (training step, side of the images the model was given)
    build = sup.build_model

    def recording_build(cfg):
        model = build(cfg)
        model.register_forward_pre_hook(
            lambda m, args: sizes.append(args[0].shape[-1]) if m.training else None)
        return model

    monkeypatch.setattr(sup, "build_model", recording_build)
    model_cfg, cfg = _cfgs(tiny_text, epochs=3, batch_size=4, checkpoint_every=2, early_image_size=48,
                           early_epochs=2, image_size=64)
    full = train_supervised(mini_index, None, tmp_path / "full", model_cfg, cfg, OFF, progress=False)
    spe = full["steps_per_epoch"]
    assert sizes == [48] * (2 * spe) + [64] * spe
    _, _, info = read_model_file(tmp_path / "full" / "best.safetensors")
    assert info["image_size"] == 64  # validation and the checkpoint use image_size

    sizes.clear()
    kill = 2 * spe - 1  # inside the last early epoch, so the rerun must go on at the early size

    def hook(step):
        if step == kill:
            raise Killed

    with pytest.raises(Killed):
        train_supervised(mini_index, None, tmp_path / "cut", model_cfg, cfg, OFF, step_hook=hook, progress=False)
    sizes.clear()
    resumed = train_supervised(mini_index, None, tmp_path / "cut", model_cfg, cfg, OFF, progress=False)
    done = load_checkpoint(tmp_path / "cut" / "last.pt")["step"]
    assert done == full["steps"] and resumed["history"] == full["history"]
    resumed_from = (kill // 2) * 2  # the last checkpoint before the kill (checkpoint_every=2)
    assert sizes == [48] * (2 * spe - resumed_from) + [64] * spe


def test_channels_last_trains_on_nhwc_batches_and_resumes_bit_exactly(tmp_path, tiny_text, mini_index, monkeypatch):
    import semires.train.supervised as sup

    layouts: list[bool] = []  # per training step: image batch and first conv's weight both channels-last
    build = sup.build_model

    def recording_build(cfg):
        model = build(cfg)
        conv = model.backbone.stem[0]
        model.register_forward_pre_hook(lambda m, args: layouts.append(
            args[0].is_contiguous(memory_format=torch.channels_last)
            and conv.weight.is_contiguous(memory_format=torch.channels_last)) if m.training else None)
        return model

    monkeypatch.setattr(sup, "build_model", recording_build)
    model_cfg, cfg = _cfgs(tiny_text, epochs=2, batch_size=4, checkpoint_every=2, channels_last=True)
    full = train_supervised(mini_index, None, tmp_path / "full", model_cfg, cfg, OFF, progress=False)
    assert layouts and all(layouts) and len(layouts) == full["steps"]

    def kill_at_3(step):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        train_supervised(mini_index, None, tmp_path / "cut", model_cfg, cfg, OFF, step_hook=kill_at_3, progress=False)
    resumed = train_supervised(mini_index, None, tmp_path / "cut", model_cfg, cfg, OFF, progress=False)
    assert resumed["history"] == full["history"]
    a, _, _ = read_model_file(tmp_path / "full" / "best.safetensors")
    b, _, _ = read_model_file(tmp_path / "cut" / "best.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_overlays_are_drawn_once_at_the_end_from_the_best_weights(tmp_path, tiny_text, mini_index, monkeypatch):
    import semires.train.supervised as sup

    drawn = []
    draw = sup.draw_predictions

    def recording_draw(model, dataset, n, path, title=None, **kw):
        drawn.append(({k: v.clone() for k, v in model.trainable_state_dict().items()}, title))
        return draw(model, dataset, n, path, title, **kw)

    monkeypatch.setattr(sup, "draw_predictions", recording_draw)
    model_cfg, cfg = _cfgs(tiny_text, epochs=3)
    res = train_supervised(mini_index, None, tmp_path / "run", model_cfg, cfg, OFF, progress=False)
    assert len(drawn) == 1 and (tmp_path / "run" / "overlays_val.png").is_file()
    best, _, _ = read_model_file(tmp_path / "run" / "best.safetensors")
    weights, title = drawn[0]
    assert all(torch.equal(weights[k], best[k]) for k in best)
    assert title.startswith(f"val epoch {res['best_epoch']}:")


def test_a_batch_indexed_at_once_equals_the_collated_items(tiny_text, mini_index):
    import numpy as np
    from torch.utils.data import BatchSampler, DataLoader, Subset, default_collate

    from semires.data.index import RefIndex
    from semires.engine.dataset import ExpressionDataset, batch_loader
    from semires.models import load_tokenizer
    from semires.models.category_head import category_lookup

    index = RefIndex.load(mini_index)
    ds = ExpressionDataset.from_split(index, load_tokenizer(tiny_text), 32, 8, split="train",
                                      categories=category_lookup(index.cats))
    rows = [3, 0, 3, len(ds) - 1]  # any order, repeats allowed
    batch = ds[rows]
    items = default_collate([ds[i] for i in rows])
    assert batch.keys() == items.keys()
    for key, value in items.items():
        assert batch[key].dtype == value.dtype and batch[key].shape == value.shape, key
        assert torch.equal(batch[key], value), key  # bit-identical: same arithmetic, batched
    assert batch["image"].is_contiguous() and batch["index"].tolist() == rows
    assert ds[np.int64(2)]["index"].ndim == 0  # a scalar index of any integer type is one item
    # the loader asks for whole batches (also through a Subset) and gives what per-item loading gives
    sub = Subset(ds, [1, 2, 4, 5, 6])
    fast = list(batch_loader(sub, BatchSampler(range(len(sub)), 2, drop_last=False)))
    slow = list(DataLoader(sub, batch_size=2))
    assert [b["index"].tolist() for b in fast] == [[1, 2], [4, 5], [6]]
    for a, b in zip(fast, slow, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in b)


def test_training_keeps_the_heap_frozen_and_gives_it_back(tmp_path, tiny_text, mini_index):
    import gc
    import weakref

    from semires.engine.runtime import frozen_heap

    class Node:
        pass

    seen = []
    with frozen_heap():
        frozen = gc.get_freeze_count()
        cycle = Node()
        cycle.self = cycle  # garbage made inside is still collected
        ref = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert frozen > 0 and ref() is None
    assert gc.get_freeze_count() == 0

    def hook(step):
        seen.append(gc.get_freeze_count())
        if step == 2:
            raise Killed

    with pytest.raises(Killed):
        train_supervised(mini_index, None, tmp_path / "run", *_cfgs(tiny_text, epochs=1), OFF, step_hook=hook,
                         progress=False)
    assert seen and all(n > 0 for n in seen) and gc.get_freeze_count() == 0  # also after a kill
