"""RefShapes: deterministic, REFER-exact, and every expression names exactly its target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from semires.data import expressions as ex
from semires.data import masks as mask_codec
from semires.data.index import RefIndex, build_index
from semires.data.phrasing import normalize, parse
from semires.data.refer import Refer
from semires.data.shapes import GROUPS
from semires.data.synthetic import (
    PRESETS,
    SPLITS,
    SynthSpec,
    assign_splits,
    build_scene,
    generate,
    make_spec,
    render_preview,
)
from semires.errors import DataError, SemiresError

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("rs") / "tiny", preset="tiny", seed=0, progress=False)


@pytest.fixture(scope="module")
def refer(tiny) -> Refer:
    return Refer.load(tiny, "unc")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_whatever_the_worker_count(tiny, tmp_path):
    again = generate(tmp_path / "again", preset="tiny", seed=0, workers=1, progress=False)
    first, second = _files(tiny), _files(again)
    assert sorted(first) == sorted(second) and len(first) == TINY.num_images + 3
    assert all(first[k] == second[k] for k in first)
    other = _files(generate(tmp_path / "seed1", preset="tiny", seed=1, workers=1, progress=False))
    assert other["instances.json"] != first["instances.json"]
    assert sum(other[k] != first[k] for k in first if k.startswith("images/")) == TINY.num_images


def test_refer_layout_and_counts(tiny, refer):
    images = sorted(p.name for p in (tiny / "images").iterdir())
    assert images == sorted(im["file_name"] for im in refer.imgs.values())
    per_image: dict[int, int] = {}
    for ann in refer.anns.values():
        per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
    assert set(per_image) == set(refer.imgs)
    assert all(TINY.min_objects <= c <= TINY.max_objects <= 8 for c in per_image.values())
    assert refer.splits() == list(SPLITS)
    for ref in refer.refs.values():
        sents = ref["sentences"]
        assert TINY.min_sentences <= len(sents) <= TINY.max_sentences
        assert len({s["sent"] for s in sents}) == len(sents)
        assert ref["sent_ids"] == [s["sent_id"] for s in sents]
        assert all(s["tokens"] == s["sent"].split() and s["sent"] == normalize(s["raw"]) for s in sents)
        assert ref["category_id"] == refer.anns[ref["ann_id"]]["category_id"]
    meta = json.loads((tiny / "refshapes.json").read_text())
    assert sum(c["refs"] for c in meta["counts"].values()) == len(refer.refs)


def test_test_splits_follow_the_shape_groups(refer):
    cats = {c: name for c, name in refer.cats.items()}
    groups = {s: set() for s in SPLITS}
    for ref in refer.refs.values():
        groups[ref["split"]].add(cats[ref["category_id"]])
    assert groups["testA"] and groups["testA"] <= set(GROUPS["curved"])
    assert groups["testB"] and groups["testB"] <= set(GROUPS["angular"])
    assert groups["train"] & set(GROUPS["curved"]) and groups["train"] & set(GROUPS["angular"])
    split_of_image = {}
    for ref in refer.refs.values():  # splits are by image
        assert split_of_image.setdefault(ref["image_id"], ref["split"]) == ref["split"]


def _selects(m: ex.Meaning, objs: list[dict], size: int, r: ex.Reading) -> list[int]:
    """Independent evaluation of the documented semantics under reading ``r``; indices selected."""
    def fits(d, o):
        return all(v is None or o[k] == v for k, v in (("shape", d.shape), ("color", d.color), ("size", d.size)))

    def unique(d):
        hits = [i for i, o in enumerate(objs) if fits(d, o)]
        return hits[0] if len(hits) == 1 else None

    cand = [i for i, o in enumerate(objs) if fits(m.target, o)]
    if m.kind == "attr":
        return cand
    if m.kind == "superlative":
        score = {"leftmost": lambda o: -o["cx"], "rightmost": lambda o: o["cx"], "topmost": lambda o: -o["cy"],
                 "bottommost": lambda o: o["cy"], "largest": lambda o: o["radius"],
                 "smallest": lambda o: -o["radius"]}[m.op]
        win = [i for i in cand if all(
            (objs[i]["radius"] > ex.SIZE_RATIO * objs[j]["radius"] if m.op == "largest" else
             objs[j]["radius"] > ex.SIZE_RATIO * objs[i]["radius"] if m.op == "smallest" else
             score(objs[i]) - score(objs[j]) > ex.SUP_MARGIN * size) for j in cand if j != i)]
        return win if len(cand) >= 2 else []
    anchors = [unique(d) for d in m.anchors]
    if None in anchors or len(set(anchors)) < len(anchors):
        return []
    if m.kind == "relation":
        a = objs[anchors[0]]
        out = []
        for i in cand:
            t = objs[i]
            dx, dy = t["cx"] - a["cx"], t["cy"] - a["cy"]
            along, across = {"left_of": (-dx, dy), "right_of": (dx, dy), "above": (-dy, dx), "below": (dy, dx)}[m.op]
            if i != anchors[0] and along > r.gap * (t["radius"] + a["radius"]) and abs(across) <= r.cone * along:
                out.append(i)
        return out
    a, b = (np.array([objs[k]["cx"], objs[k]["cy"]]) for k in anchors)
    out = []
    for i in cand:
        p = np.array([objs[i]["cx"], objs[i]["cy"]])
        frac = np.dot(p - a, b - a) / np.dot(b - a, b - a)
        dist = abs((b - a)[0] * (p - a)[1] - (b - a)[1] * (p - a)[0]) / np.linalg.norm(b - a)
        if i not in anchors and r.span <= frac <= 1 - r.span and dist <= r.width * np.linalg.norm(b - a):
            out.append(i)
    return out


def _refers_to(m: ex.Meaning, objs: list[dict], size: int) -> list[int]:
    """The strict reading's selection if the loose reading selects nothing more, else []."""
    strict = _selects(m, objs, size, ex.STRICT)
    return strict if _selects(m, objs, size, ex.LOOSE) == strict else []


def test_every_expression_selects_exactly_its_target(refer):
    kinds = set()
    for image_id, refs in refer.img_to_refs.items():
        anns = sorted((a for a in refer.anns.values() if a["image_id"] == image_id), key=lambda a: a["id"])
        objs = [a["refshapes"] for a in anns]
        for ref in refs:
            target = [a["id"] for a in anns].index(ref["ann_id"])
            for s in ref["sentences"]:
                m = parse(s["sent"])
                assert parse(s["raw"]) == m
                assert _refers_to(m, objs, refer.imgs[image_id]["width"]) == [target], s["sent"]
                kinds.add(m.kind)
    assert kinds == set(ex.KINDS)


def test_coco_masks_equal_the_readers_masks(tiny, refer, tmp_path):
    coco = COCO(str(tiny / "instances.json"))
    index = RefIndex.load(build_index(tiny, tiny / "images", tmp_path / "index.json", progress=False))
    for rid, ref in refer.refs.items():
        img = refer.imgs[ref["image_id"]]
        expected = coco.annToMask(coco.anns[ref["ann_id"]]).astype(bool)
        assert expected.shape == (img["height"], img["width"]) and expected.any()
        assert np.array_equal(refer.ref_mask(rid), expected)
        assert np.array_equal(index.ref_mask(rid), expected)
        ann = coco.anns[ref["ann_id"]]
        assert ann["area"] == expected.sum()
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
    assert index.load_image(next(iter(index.images))).shape == (TINY.image_size, TINY.image_size, 3)


def test_objects_occlude_each_other_and_stay_visible_enough(refer):
    occluded = 0
    for image_id in refer.imgs:
        anns = [a for a in refer.anns.values() if a["image_id"] == image_id]
        dense = mask_codec.decode_many([refer.ann_rle(a["id"]) for a in anns])
        assert dense.sum(0).max() <= 1  # visible parts never overlap
        for a in anns:
            assert a["area"] >= TINY.min_visible * a["refshapes"]["full_area"]
            occluded += a["area"] < a["refshapes"]["full_area"]
    assert occluded > 0


def test_complete_output_is_kept_and_damage_is_rebuilt(tiny, tmp_path):
    out = generate(tmp_path / "rs", preset="tiny", seed=0, workers=1, progress=False)
    stamp = (out / "instances.json").stat().st_mtime_ns
    assert generate(out, preset="tiny", seed=0, workers=1, progress=False) == out
    assert (out / "instances.json").stat().st_mtime_ns == stamp
    damaged = next((out / "images").iterdir())
    damaged.write_bytes(b"not a png")
    generate(out, preset="tiny", seed=0, workers=1, progress=False)
    assert damaged.read_bytes() == (tiny / "images" / damaged.name).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(DataError, match="not a RefShapes dataset"):
        generate(foreign, preset="tiny", progress=False)
    assert (foreign / "keep.txt").read_text() == "user data"


def test_an_edited_generator_redraws_and_prepare_reindexes(tmp_path, monkeypatch):
    from semires.data import synthetic

    refer, index = synthetic.prepare(tmp_path, preset="tiny", progress=False)
    meta = json.loads((refer / "refshapes.json").read_text())
    assert meta["code"] == synthetic.generator_digest() and len(meta["code"]) == 16
    stamp = (refer / "instances.json").stat().st_mtime_ns, index.stat().st_mtime_ns
    assert synthetic.prepare(tmp_path, preset="tiny", progress=False) == (refer, index)
    assert ((refer / "instances.json").stat().st_mtime_ns, index.stat().st_mtime_ns) == stamp
    # same spec, seed and GENERATOR_VERSION, but other generator code: drawn again, indexed again
    monkeypatch.setattr(synthetic, "generator_digest", lambda: "0" * 16)
    synthetic.prepare(tmp_path, preset="tiny", progress=False)
    assert json.loads((refer / "refshapes.json").read_text())["code"] == "0" * 16
    assert (refer / "instances.json").stat().st_mtime_ns > stamp[0] and index.stat().st_mtime_ns > stamp[1]
    assert RefIndex.load(index).image_ids()


def test_spec_checks_and_split_counts():
    with pytest.raises(SemiresError, match="num_images"):
        SynthSpec(num_images=2, image_size=64)
    with pytest.raises(SemiresError, match="sentences"):
        SynthSpec(num_images=10, image_size=64, min_sentences=1)
    with pytest.raises(SemiresError, match="preset"):
        make_spec("huge")
    spec = make_spec("default", num_images=100)
    splits = assign_splits(spec, seed=3)
    assert [splits.count(s) for s in SPLITS] == [70, 10, 10, 10]
    assert splits == assign_splits(spec, seed=3) != assign_splits(spec, seed=4)


def test_large_preset_scenes_are_capped_and_grouped():
    large = PRESETS["large"]
    assert large.num_images == 20000 and large.max_refs_per_image == 3
    for index, split in ((0, "testA"), (1, "testB"), (2, "train")):
        img, objs, refs = build_scene(large, 0, index, split)
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8
        assert 1 <= len(refs) <= 3 and large.min_objects <= len(objs) <= large.max_objects
        if split in ("testA", "testB"):
            group = GROUPS["curved" if split == "testA" else "angular"]
            assert all(objs[i].facts.shape in group for i, _ in refs)


def test_parse_reads_every_template():
    d = ex.Descriptor
    assert parse("The small red star.") == ex.Meaning("attr", d("small", "red", "star"))
    assert parse("the leftmost one") == ex.Meaning("superlative", d(), "leftmost")
    assert parse("green plus sign furthest down") == ex.Meaning("superlative", d(None, "green", "cross"), "bottommost")
    assert parse("the cog to the left of the violet moon") == ex.Meaning(
        "relation", d(shape="gear"), "left_of", (d(None, "purple", "crescent"),))
    assert parse("the object in between the ring and the big heart") == ex.Meaning(
        "between", d(), None, (d(shape="ring"), d("large", None, "heart")))
    for bad in ("the one", "the star left of", "the star between the ring", "a purple dinosaur"):
        with pytest.raises(ValueError):
            parse(bad)


def test_render_preview_draws_a_grid(tiny, tmp_path):
    png = render_preview(tiny, tmp_path / "grid.png", n=4, seed=0)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 4 * TINY.image_size


def test_world_matches_independent_semantics_on_random_layouts():
    rng = np.random.default_rng(0)
    for _ in range(30):
        facts = [ex.Facts(str(rng.choice(["star", "ring"])), str(rng.choice(["red", "blue"])),
                          str(rng.choice(["small", "large"])), float(rng.uniform(10, 118)),
                          float(rng.uniform(10, 118)), float(rng.uniform(8, 23))) for _ in range(6)]
        world = ex.World(facts, 128)
        objs = [vars(f) for f in facts]
        for target, meanings in ex.unique_meanings(world).items():
            for m in meanings:
                assert _refers_to(m, objs, 128) == [target]
                assert world.selects(m) == target


def _sigint_disposition(queue) -> None:
    import signal

    queue.put(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)


def test_pool_workers_ignore_ctrl_c_from_their_first_instruction():
    """A Ctrl-C to the process group while a worker is still importing must not print a traceback:
    workers started inside the block inherit SIGINT ignored across spawn's exec (no initializer here)."""
    import multiprocessing as mp
    import signal

    from semires.data.synthetic import _children_ignore_sigint

    ctx = mp.get_context("spawn")
    before = signal.getsignal(signal.SIGINT)
    queue = ctx.Queue()
    with _children_ignore_sigint():
        proc = ctx.Process(target=_sigint_disposition, args=(queue,))
        proc.start()
    assert signal.getsignal(signal.SIGINT) is before  # the parent's handler is back
    assert queue.get(timeout=60) is True
    proc.join(60)
