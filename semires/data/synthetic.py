"""RefShapes: a procedural referring-expression segmentation benchmark in RefCOCO's REFER layout.

Each image holds 3-8 shaded shapes (8 categories with irregular outlines, 7 named colours,
3 size classes) over a textured background, painted in z-order so objects occlude each other;
an object's mask is its visible part. Each ref has 2-3 expressions built from attributes and
spatial relations, each checked to select exactly its target among all objects of the image
(:mod:`semires.data.expressions`). Written exactly as RefCOCO ships::

    <out>/images/refshapes_<index>.png
    <out>/instances.json    COCO images / annotations / categories; an annotation's "segmentation" is
                            the visible part as COCO polygons, as RefCOCO stores its objects (pixel-
                            boundary rings, holes joined in, see :mod:`semires.data.polygons`: they
                            rasterise through pycocotools to exactly the drawn mask, which generation
                            checks object by object); each annotation also carries "refshapes": shape,
                            color, size, cx, cy, radius, angle, full_area (the unoccluded area)
    <out>/refs(unc).p       pickle (protocol 2) of REFER ref dicts
    <out>/refshapes.json    spec, seed, counts and a checksum of all other files (written last)

Splits are by image, as in RefCOCO (unc): train and val hold refs to every category; **testA**
images hold at least two ``curved`` shapes and refs only to curved shapes (blob, ring, heart,
crescent), **testB** the same for ``angular`` shapes (star, cross, gear, triangle) - the analogue
of RefCOCO's people / other objects.

Generation is deterministic: image ``i`` draws everything from ``default_rng([seed, 1, i])``,
split assignment from ``default_rng([seed, 0])``, so the worker count never changes the bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import multiprocessing as mp
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from semires import io
from semires.data import masks as mask_codec
from semires.data import phrasing
from semires.data.expressions import World, choose, unique_meanings
from semires.data.polygons import mask_to_polygons
from semires.data.preview import render_preview  # noqa: F401  (public API: generate + render_preview)
from semires.data.scenes import compose
from semires.data.shapes import GROUP_OF, GROUPS, SHAPES
from semires.errors import DataError, SemiresError

FORMAT = "refshapes/2"  # 2: polygon segmentations, as RefCOCO (1: compressed RLE; the reader takes both)
GENERATOR_VERSION = 2  # bump whenever the same spec and seed would give different bytes
# the modules whose code decides the bytes; their digest is stored too, so a dataset drawn by an
# edited generator is redrawn even where nobody bumped GENERATOR_VERSION
_GENERATOR_MODULES = ("synthetic.py", "scenes.py", "shapes.py", "expressions.py", "phrasing.py", "masks.py",
                      "polygons.py")
SPLITS = ("train", "val", "testA", "testB")
SPLIT_GROUP = {"testA": "curved", "testB": "angular"}
META = "refshapes.json"
SCENE_TRIES = 25  # scenes drawn per image before giving up (all but hopeless specs need 1-2)


@dataclass(frozen=True)
class SynthSpec:
    """Size and difficulty of a RefShapes dataset.

    Attributes:
        num_images: images to generate (>= 4, so that every split gets one).
        image_size: square image side in pixels (>= 48).
        min_objects, max_objects: objects per image, drawn uniformly (3 <= min <= max).
        occlusion: probability in [0, 1] that an object is placed overlapping an earlier one.
        min_visible: fraction in (0, 1] of its area every object keeps visible.
        texture_strength: background contrast in [0, 1] (0 = flat colour).
        min_sentences, max_sentences: expressions per ref (2 <= min <= max).
        max_refs_per_image: cap on refs per image (None: every object with enough expressions).
        split_fractions: image fractions of (train, val, testA, testB); sum 1.
        supersample: anti-aliasing samples per pixel side.
    """

    num_images: int
    image_size: int
    min_objects: int = 3
    max_objects: int = 8
    occlusion: float = 0.35
    min_visible: float = 0.6
    texture_strength: float = 1.0
    min_sentences: int = 2
    max_sentences: int = 3
    max_refs_per_image: int | None = None
    split_fractions: tuple[float, float, float, float] = (0.7, 0.1, 0.1, 0.1)
    supersample: int = 2

    def __post_init__(self):
        problems = []
        if self.num_images < len(SPLITS):
            problems.append(f"num_images={self.num_images} < {len(SPLITS)}")
        if self.image_size < 48:
            problems.append(f"image_size={self.image_size} < 48")
        if not 3 <= self.min_objects <= self.max_objects <= 12:
            problems.append(f"objects {self.min_objects}..{self.max_objects} not within 3..12")
        if not (0 <= self.occlusion <= 1 and 0 < self.min_visible <= 1 and 0 <= self.texture_strength <= 1):
            problems.append("occlusion, texture_strength must be in [0, 1] and min_visible in (0, 1]")
        if not 2 <= self.min_sentences <= self.max_sentences:
            problems.append(f"sentences {self.min_sentences}..{self.max_sentences} need 2 <= min <= max")
        if len(self.split_fractions) != 4 or min(self.split_fractions) <= 0 or \
                abs(sum(self.split_fractions) - 1) > 1e-6:
            problems.append(f"split_fractions {self.split_fractions} must be 4 positive numbers summing to 1")
        if problems:
            raise SemiresError("invalid RefShapes spec: " + "; ".join(problems), None,
                               "see SynthSpec in semires/data/synthetic.py for the valid ranges")

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


PRESETS: dict[str, SynthSpec] = {
    "tiny": SynthSpec(num_images=24, image_size=64, max_objects=6),
    "default": SynthSpec(num_images=1500, image_size=128),
    # RefCOCO's 1 % label budget in absolute terms: 4 % of its 4,250 train images are 170 images with
    # ~1,200 expressions (RefCOCO 1 %: 169 images, 1,222 expressions); the rest is the unlabeled pool.
    "headline": SynthSpec(num_images=5000, image_size=128, max_refs_per_image=3,
                          split_fractions=(0.85, 0.05, 0.05, 0.05)),
    # RefCOCO (unc): 19,994 images, 50,000 refs, 142,209 expressions; 85 / 7.5 / 3.75 / 3.75 % of images.
    "large": SynthSpec(num_images=20000, image_size=256, max_refs_per_image=3,
                       split_fractions=(0.85, 0.075, 0.0375, 0.0375)),
}


def make_spec(preset: str | SynthSpec = "default", num_images: int | None = None,
              image_size: int | None = None) -> SynthSpec:
    """A preset's spec (or the given spec) with optional overrides of image count and size."""
    if isinstance(preset, str) and preset not in PRESETS:
        raise SemiresError(f"unknown RefShapes preset {preset!r}", None, f"use one of {', '.join(PRESETS)}")
    changes = {k: v for k, v in (("num_images", num_images), ("image_size", image_size)) if v is not None}
    return dataclasses.replace(PRESETS[preset] if isinstance(preset, str) else preset, **changes)


def assign_splits(spec: SynthSpec, seed: int) -> list[str]:
    """Split name of every image index: exact counts from the fractions, seeded order."""
    n = spec.num_images
    counts = [max(1, math.floor(f * n + 0.5)) for f in spec.split_fractions[1:]]
    names = ["train"] * (n - sum(counts)) + [s for s, c in zip(SPLITS[1:], counts) for _ in range(c)]
    order = np.random.default_rng([seed, 0]).permutation(n)
    return [names[i] for i in order]


def build_scene(spec: SynthSpec, seed: int, index: int, split: str):
    """Draw image ``index``: returns (image (S, S, 3) uint8, objects in z order, refs).

    ``refs`` is a list of ``(object index, [(sent, raw), ...])``; every sentence selects exactly
    that object. testA / testB images get >= 2 objects of their group and refs only to those.
    """
    rng = np.random.default_rng([seed, 1, index])
    group = SPLIT_GROUP.get(split)
    for _ in range(SCENE_TRIES):
        n = int(rng.integers(spec.min_objects, spec.max_objects + 1))
        required = tuple(rng.choice(GROUPS[group], 2).tolist()) if group else ()
        img, objs = compose(rng, spec.image_size, n, spec.occlusion, spec.min_visible, spec.texture_strength,
                            required, spec.supersample)
        in_group = [group is None or GROUP_OF[o.facts.shape] == group for o in objs]
        if len(objs) < spec.min_objects or sum(in_group) < 2:
            continue
        world = World([o.facts for o in objs], spec.image_size)
        uniq = unique_meanings(world)
        eligible = [i for i in sorted(uniq) if in_group[i] and len(uniq[i]) >= spec.min_sentences]
        if not eligible:
            continue
        if spec.max_refs_per_image is not None and len(eligible) > spec.max_refs_per_image:
            eligible = sorted(rng.choice(eligible, spec.max_refs_per_image, replace=False).tolist())
        refs = []
        for i in eligible:
            k = int(rng.integers(spec.min_sentences, spec.max_sentences + 1))
            raws = [phrasing.styled(phrasing.realize(m, rng), rng) for m in choose(world, uniq[i], k, rng)]
            refs.append((i, [(phrasing.normalize(raw), raw) for raw in raws]))
        return img, objs, refs
    raise SemiresError(f"image {index}: no scene with >= {spec.min_objects} objects and a ref in "
                       f"{SCENE_TRIES} draws", None, "use fewer objects or a larger image_size")


def _work(task: tuple) -> dict:
    """Pool worker: draw image ``index``, write its PNG, return its annotations as plain data."""
    spec, seed, index, split, image_dir = task
    img, objs, refs = build_scene(spec, seed, index, split)
    file_name = f"refshapes_{index:06d}.png"
    Image.fromarray(img).save(Path(image_dir) / file_name, compress_level=3)
    rles = mask_codec.encode_many(np.stack([o.visible for o in objs]))
    objects = [{**dataclasses.asdict(o.facts), "angle": round(o.angle, 4), "full_area": int(o.full.sum()), "rle": rle,
                "polygons": _polygons(o.visible, rle, index)} for o, rle in zip(objs, rles)]
    return {"index": index, "split": split, "file_name": file_name, "objects": objects,
            "refs": [{"obj": i, "sentences": s} for i, s in refs]}


def _polygons(mask: np.ndarray, rle: dict, index: int) -> list[list[int]]:
    """``mask`` as COCO polygons, checked to rasterise (pycocotools, as COCO's ``annToRLE``) to ``rle`` exactly."""
    polygons = mask_to_polygons(mask)
    h, w = mask.shape
    if not polygons or mask_codec.segmentation_to_rle(polygons, h, w)["counts"] != rle["counts"]:
        raise SemiresError(f"image {index}: an object's polygons do not rasterise to its mask", None,
                           "report this as a bug in semires.data.polygons")
    return polygons


def _assemble(results: list[dict], size: int) -> tuple[dict, list[dict], dict]:
    """COCO instances, REFER refs and per-split counts from the workers' results (in index order)."""
    cat_id = {s: k + 1 for k, s in enumerate(SHAPES)}
    images, anns, refs = [], [], []
    counts = {s: {"images": 0, "refs": 0, "expressions": 0, "objects": 0, "occluded": 0} for s in SPLITS}
    sent_id = 0
    for r in results:
        image_id = r["index"] + 1
        images.append({"id": image_id, "file_name": r["file_name"], "height": size, "width": size})
        c = counts[r["split"]]
        c["images"] += 1
        ann_ids = []
        for o in r["objects"]:
            ann_id = len(anns) + 1
            ann_ids.append(ann_id)
            rle = o["rle"]
            facts = {k: o[k] for k in ("shape", "color", "size", "cx", "cy", "radius", "angle", "full_area")}
            anns.append({"id": ann_id, "image_id": image_id, "category_id": cat_id[o["shape"]],
                         "segmentation": o["polygons"],
                         "area": float(mask_codec.area(rle)), "bbox": mask_codec.bbox(rle), "iscrowd": 0,
                         "refshapes": facts})
            c["objects"] += 1
            c["occluded"] += int(mask_codec.area(rle) < o["full_area"])
        for ref in r["refs"]:
            ann_id = ann_ids[ref["obj"]]
            sentences = []
            for sent, raw in ref["sentences"]:
                sentences.append({"sent_id": sent_id, "sent": sent, "raw": raw, "tokens": sent.split()})
                sent_id += 1
            refs.append({"ref_id": len(refs), "ann_id": ann_id, "image_id": image_id,
                         "category_id": cat_id[r["objects"][ref["obj"]]["shape"]], "split": r["split"],
                         # REFER names a ref's file after its image and annotation (COCO_..._<ann_id>.jpg)
                         "file_name": f"{Path(r['file_name']).stem}_{ann_id}.png",
                         "sent_ids": [s["sent_id"] for s in sentences], "sentences": sentences})
            c["refs"] += 1
            c["expressions"] += len(sentences)
    instances = {"info": {"description": "RefShapes: procedural referring expression segmentation",
                          "version": FORMAT},
                 "images": images, "annotations": anns,
                 "categories": [{"id": cat_id[s], "name": s, "supercategory": GROUP_OF[s]} for s in SHAPES]}
    return instances, refs, counts


def dataset_checksum(root: Path) -> tuple[str, int]:
    """SHA-256 over the sorted (relative path, file SHA-256) of every file but the metadata."""
    h, n = hashlib.sha256(), 0
    for p in sorted(q for q in root.rglob("*") if q.is_file() and q.name != META):
        h.update(f"{p.relative_to(root).as_posix()} {io.sha256_file(p)}\n".encode())
        n += 1
    return h.hexdigest(), n


def generator_digest() -> str:
    """sha256 (hex, 16 chars) of the generator modules' source: changes with any edit to them."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in _GENERATOR_MODULES:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    return h.hexdigest()[:16]


def _is_current(out: Path, meta_wanted: dict) -> bool:
    meta_path = out / META
    if not meta_path.is_file():
        if out.exists() and any(out.iterdir()):
            raise DataError("the folder exists but is not a RefShapes dataset (no refshapes.json)", out,
                            "choose another output folder or remove this one")
        return False
    meta = io.read_json(meta_path)
    if any(meta.get(k) != v for k, v in meta_wanted.items()):
        return False
    return dataset_checksum(out) == (meta.get("checksum"), meta.get("files"))


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Start processes inside this block with SIGINT ignored from their first instruction: an ignored
    disposition survives spawn's exec, and Python then installs no KeyboardInterrupt handler, so a
    Ctrl-C to the process group cannot interrupt a worker while it is still importing (before
    ``_ignore_sigint`` runs as its initializer). The parent's own handler is back once the block ends;
    outside the main thread (where handlers cannot be set) the initializer alone applies."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def generate(out_dir: str | Path, preset: str = "default", seed: int = 0, num_images: int | None = None,
             image_size: int | None = None, workers: int | None = None, progress: bool = True,
             spec: SynthSpec | None = None) -> Path:
    """Generate RefShapes into ``out_dir`` (REFER layout, see the module docstring); returns ``out_dir``.

    ``spec`` replaces the preset entirely when given (then ``num_images``/``image_size`` still
    override it). A complete dataset of the same spec, seed, generator version and generator code
    (:func:`generator_digest`) is verified by checksum and kept as is; anything else is rebuilt in
    a temporary folder beside ``out_dir`` and swapped in at the end, so ``out_dir`` never holds a
    partial dataset.
    Images are drawn by ``workers`` processes (default ``min(2, cpu count)``).
    """
    out = Path(out_dir)
    label = preset if spec is None else "custom"
    spec = make_spec(preset if spec is None else spec, num_images, image_size)
    wanted = {"format": FORMAT, "generator": GENERATOR_VERSION, "code": generator_digest(), "seed": int(seed),
              "spec": spec.to_json()}
    if _is_current(out, wanted):
        return out
    workers = max(1, workers if workers is not None else min(2, os.cpu_count() or 1))
    splits = assign_splits(spec, seed)
    with io.atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        tasks = [(spec, int(seed), i, splits[i], str(tmp / "images")) for i in range(spec.num_images)]
        bar = {"total": len(tasks), "desc": f"refshapes ({label})", "unit": "img", "disable": not progress}
        if workers == 1:
            results = [_work(t) for t in tqdm(tasks, **bar)]
        else:
            # spawn: never fork a parent that may hold torch / OpenMP threads
            # workers ignore Ctrl-C: the parent alone reports it (one line) and stops the pool
            with _children_ignore_sigint():
                pool = mp.get_context("spawn").Pool(workers, initializer=_ignore_sigint)
            with pool:
                results = list(tqdm(pool.imap(_work, tasks, chunksize=8), **bar))
        instances, refs, counts = _assemble(results, spec.image_size)
        io.write_json(tmp / "instances.json", instances, indent=None)
        # pickle memoises by object identity, which differs between pool and inline runs; a JSON
        # round trip gives identity that follows content only, so the bytes never depend on workers
        io.write_bytes(tmp / "refs(unc).p", pickle.dumps(json.loads(json.dumps(refs)), protocol=2))
        checksum, n_files = dataset_checksum(tmp)
        io.write_json(tmp / META, {**wanted, "preset": label, "counts": counts, "checksum": checksum,
                                   "files": n_files})
    return out


def prepare(work: str | Path, preset: str = "default", seed: int = 0, progress: bool = True) -> tuple[Path, Path]:
    """RefShapes ``preset`` in ``<work>/refshapes`` and its index ``<work>/index.json``, drawn (or
    redrawn, when the folder holds another spec or an older generator's output) and indexed as
    needed; returns (refer_dir, index_path). What benchmarks call, so that a reused work folder
    never measures data the current code would not draw."""
    from semires.data.index import build_index

    work = Path(work)
    refer = generate(work / "refshapes", preset=preset, seed=seed, progress=progress)
    index = work / "index.json"
    if not index.is_file() or index.stat().st_mtime_ns < (refer / META).stat().st_mtime_ns:
        build_index(refer, refer / "images", index, dataset="refshapes", progress=progress)
    return refer, index
