"""Candidate storage: COCO RLE in deterministic shards, a checksummed manifest, and a fast loader.

Layout of ``out_dir`` (every file written atomically)::

    shards/shard-00003-of-00008.jsonl   one line per image, ascending id:
                                        {"image_id", "height", "width",
                                         "candidates": [{"rle", "score", "area", "bbox"}]}
    entries/shard-00003-of-00008.json   the shard's manifest entry (written last: its presence with a
                                        verifying sha256 means the shard is complete)
    failures/shard-00003-of-00008.json  unreadable images of the shard: [{"image_id", "file", "reason"}]
    timing/shard-00003-of-00008.json    run statistics (wall-clock, so not part of the manifest)
    manifest.json                       merged entries: shard files, sha256, per-image byte offsets
    failures.json, stats.json           merged failures and statistics

Image ``i`` belongs to shard ``shard_of(i, n)`` (a stable hash, so any machine computes the same
split). A shard is produced by one call of :func:`generate_shard` and may run as its own task; a
rerun skips a shard whose entry exists and whose file still matches its checksum, and redoes a
missing or damaged one. :func:`merge` gathers the entries into ``manifest.json``, which depends only
on the images and the generator's output, never on timing or on how many reruns it took.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from semires import io
from semires.candidates.base import CandidateGenerator
from semires.candidates.stats import merge_stats, shard_stats
from semires.data import masks as mask_codec
from semires.errors import DataError, SemiresError

FORMAT = "semires-candidates/1"
MANIFEST = "manifest.json"


def shard_of(image_id: int, num_shards: int) -> int:
    """Shard index in [0, num_shards) of an image id (blake2b of the decimal id; machine independent)."""
    digest = hashlib.blake2b(str(int(image_id)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def shard_ids(image_ids: Iterable[int], shard: int, num_shards: int) -> list[int]:
    """Sorted ids among ``image_ids`` that belong to ``shard``."""
    if not 0 <= shard < num_shards:
        raise SemiresError(f"shard {shard} is outside 0..{num_shards - 1}", None,
                           "pass --shard k with 0 <= k < --num-shards")
    return sorted({int(i) for i in image_ids if shard_of(int(i), num_shards) == shard})


def shard_name(shard: int, num_shards: int) -> str:
    return f"shard-{shard:05d}-of-{num_shards:05d}"


def fingerprint(generator: CandidateGenerator, ids: Sequence[int]) -> str:
    """sha256 of the generator description and the shard's image ids: a shard made under other settings
    or for other images is redone, never reused."""
    doc = json.dumps({"generator": generator.describe(), "ids": list(ids)}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()


def _entry_ok(out: Path, entry_path: Path, fp: str) -> bool:
    try:
        entry = json.loads(entry_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    shard_file = out / entry.get("file", "")
    return (entry.get("fingerprint") == fp and shard_file.is_file()
            and io.sha256_file(shard_file) == entry.get("sha256"))


def _record(image_id: int, h: int, w: int, cands) -> dict:
    rles = mask_codec.encode_many(cands.masks)
    return {"image_id": image_id, "height": h, "width": w,
            "candidates": [{"rle": r, "score": round(float(s), 6), "area": mask_codec.area(r),
                            "bbox": mask_codec.bbox(r)} for r, s in zip(rles, cands.scores)]}


def generate_shard(index, image_ids: Iterable[int], shard: int, num_shards: int, out_dir: str | Path,
                   generator: CandidateGenerator, allow_failures: bool = False, progress: bool = True) -> dict:
    """Generate and store the candidates of shard ``shard`` of ``num_shards``; returns its manifest entry.

    Args:
        index: a :class:`semires.data.index.RefIndex` (images are read through it).
        image_ids: ids of every image to process (all shards); this call keeps those of ``shard``.
        generator: any :class:`CandidateGenerator`; it runs once per image, whatever the refs.
        allow_failures: list unreadable images and go on; otherwise the shard is not written and
            :class:`SemiresError` reports every failure (listed in ``failures/<shard>.json``).
    Returns the entry dict (``skipped`` True when a complete, verified shard was found).
    """
    out = Path(out_dir)
    ids = shard_ids(image_ids, shard, num_shards)
    name = shard_name(shard, num_shards)
    entry_path, rel = out / "entries" / f"{name}.json", f"shards/{name}.jsonl"
    fp = fingerprint(generator, ids)
    if _entry_ok(out, entry_path, fp):
        return {**json.loads(entry_path.read_text()), "skipped": True}
    entry_path.unlink(missing_ok=True)  # a stale entry must not vouch for the file being rewritten
    # temps of a killed run (of any shard) go; a concurrent live run of this shard keeps its own
    io.clean_stale(out / "shards", force=True)
    failures, offsets, seconds, counts, areas = [], {}, [], [], []
    with io.atomic_path(out / rel) as tmp, open(tmp, "wb") as fh:
        for iid in tqdm(ids, desc=f"candidates {name} [{generator.name}]", unit="img", disable=not progress):
            try:
                image = index.load_image(iid)
            except DataError as exc:
                failures.append({"image_id": iid, "file": str(index.image_path(iid)), "reason": exc.what})
                continue
            t0 = time.perf_counter()
            cands = generator.generate(image)
            seconds.append(time.perf_counter() - t0)
            h, w = image.shape[:2]
            rec = _record(iid, h, w, cands)
            counts.append(len(cands))
            areas.extend(c["area"] / (h * w) for c in rec["candidates"])
            line = (json.dumps(rec, separators=(",", ":"), sort_keys=True) + "\n").encode()
            offsets[str(iid)] = [fh.tell(), len(line)]
            fh.write(line)
        fh.flush()
        io.write_json(out / "failures" / f"{name}.json", failures)
        if failures and not allow_failures:
            shown = "; ".join(f"image {f['image_id']} ({f['file']}): {f['reason']}" for f in failures[:3])
            raise DataError(f"{len(failures)} of {len(ids)} images of {name} could not be read, shard not "
                            f"written: {shown}{' ...' if len(failures) > 3 else ''}",
                            out / "failures" / f"{name}.json",
                            "replace the listed files, or set candidates.allow_failures: true to skip them")
    io.write_json(out / "timing" / f"{name}.json", shard_stats(counts, areas, seconds))
    entry = {"format": FORMAT, "shard": shard, "num_shards": num_shards, "file": rel,
             "sha256": io.sha256_file(out / rel), "images": len(offsets), "offsets": offsets,
             "failures": failures, "generator": generator.describe(), "fingerprint": fp}
    io.write_json(entry_path, entry)  # last: marks the shard complete
    return {**entry, "skipped": False}


def merge(out_dir: str | Path, num_shards: int, verify: bool = True) -> Path:
    """Merge the entries of all ``num_shards`` shards into ``manifest.json`` (plus ``failures.json`` and
    ``stats.json``); raises :class:`SemiresError` naming the missing or damaged shards."""
    out = Path(out_dir)
    entries, problems = [], []
    for k in range(num_shards):
        p = out / "entries" / f"{shard_name(k, num_shards)}.json"
        if not p.is_file():
            problems.append(f"{shard_name(k, num_shards)} missing")
            continue
        e = io.read_json(p)
        if verify and (not (out / e["file"]).is_file() or io.sha256_file(out / e["file"]) != e["sha256"]):
            problems.append(f"{e['file']} fails its checksum")
            continue
        entries.append(e)
    if problems:
        raise SemiresError(f"cannot merge: {'; '.join(problems)}", out,
                           "run `semires candidates generate` for those shards (a rerun redoes only them)")
    gens = {json.dumps(e["generator"], sort_keys=True) for e in entries}
    if len(gens) > 1:
        raise SemiresError("shards were made by different generator settings", out,
                           "regenerate all shards with one params.yaml")
    manifest = {"format": FORMAT, "num_shards": num_shards, "generator": entries[0]["generator"] if entries else {},
                "images": sum(e["images"] for e in entries),
                "shards": [{k: e[k] for k in ("shard", "file", "sha256", "images", "offsets")} for e in entries]}
    io.write_json(out / "failures.json", [f for e in entries for f in e["failures"]])
    timings = [io.read_json(p) for k in range(num_shards)
               if (p := out / "timing" / f"{shard_name(k, num_shards)}.json").is_file()]
    io.write_json(out / "stats.json", merge_stats(timings))
    return io.write_json(out / MANIFEST, manifest, indent=None)


class CandidateStore:
    """Read candidates from a merged store folder.

    ``masks(image_id, size)`` decodes an image's stack once and keeps recently used decoded stacks
    (LRU, at most ``cache_size`` stacks and ``cache_mb`` MiB of bool masks), so later epochs cost a
    dict lookup. A 128 px RefShapes image with ~180 candidates takes ~3 MiB decoded. Safe in DataLoader
    workers (files are opened per read, never shared across fork; each worker has its own cache).

    ``verify``: every shard file is checked against the manifest's sha256 when the store is opened (once
    per process and file version, see :func:`semires.io.verify_checksum`), so a damaged shard is an error
    naming it, never silently wrong masks.
    """

    def __init__(self, directory: str | Path, cache_size: int = 1024, verify: bool = True, cache_mb: float = 1024.0):
        self.dir = Path(directory)
        path = self.dir / MANIFEST
        if not path.is_file():
            raise DataError("candidate manifest not found", path,
                            "run `semires candidates generate` for every shard, then `semires candidates merge`")
        doc = io.read_json(path)
        if doc.get("format") != FORMAT:
            raise DataError(f"unknown candidate store format {doc.get('format')!r}", path,
                            "regenerate the candidates with this version of semires")
        self.generator = doc["generator"]
        self._where: dict[int, tuple[Path, int, int]] = {}
        for s in doc["shards"]:
            f = self.dir / s["file"]
            if verify:
                io.verify_checksum(f, s["sha256"], "candidate shard",
                                   f"rerun `semires candidates generate --shard {s['shard']}` (the candidates stage) "
                                   "for that shard, then `semires candidates merge`")
            for iid, (off, n) in s["offsets"].items():
                self._where[int(iid)] = (f, off, n)
        self.cache_size = cache_size
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: OrderedDict = OrderedDict()
        self._cached_bytes = 0

    @property
    def image_ids(self) -> list[int]:
        """Sorted ids of the images that have candidates."""
        return sorted(self._where)

    def __contains__(self, image_id: int) -> bool:
        return int(image_id) in self._where

    def __len__(self) -> int:
        return len(self._where)

    def record(self, image_id: int) -> dict:
        """The stored line of an image: ``{"image_id", "height", "width", "candidates": [...]}``."""
        try:
            f, off, n = self._where[int(image_id)]
        except KeyError:
            raise DataError(f"image {image_id} has no candidates in this store", self.dir / MANIFEST,
                            "generate candidates for the split that holds it") from None
        with open(f, "rb") as fh:
            fh.seek(off)
            return json.loads(fh.read(n))

    def scores(self, image_id: int) -> np.ndarray:
        """(K,) float32 candidate scores, in stored order."""
        return np.array([c["score"] for c in self.record(image_id)["candidates"]], dtype=np.float32)

    def masks(self, image_id: int, size: tuple[int, int] | int | None = None) -> torch.Tensor:
        """(K, h, w) torch.bool candidate masks, resized by nearest neighbour to ``size`` = (h, w) or an
        int side (the image's own size when None). K may be 0. The returned tensor is shared with the
        cache: do not modify it in place."""
        if isinstance(size, int):
            size = (size, size)
        key = (int(image_id), None if size is None else (int(size[0]), int(size[1])))
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        rec = self.record(image_id)
        hw = (rec["height"], rec["width"])
        m = mask_codec.decode_many([c["rle"] for c in rec["candidates"]], size=hw)
        m = torch.from_numpy(m if size is None or tuple(size) == hw else mask_codec.nearest_resize(m, tuple(size)))
        if self.cache_size > 0 and m.numel() <= self.cache_bytes:
            self._cache[key] = m
            self._cached_bytes += m.numel()
            while len(self._cache) > self.cache_size or self._cached_bytes > self.cache_bytes:
                self._cached_bytes -= self._cache.popitem(last=False)[1].numel()
        return m
