"""Stage ``candidates`` (one shard): class-agnostic "everything" masks of the shard's images, then its gate.

    python -m components.candidates --index data/index.json --shard 0 --out data/candidates \
        --report reports/checks/candidates-0.txt --metrics metrics/candidates/shard-0.json

Images are those of ``candidates.split`` (every image when null); image ``i`` belongs to shard
``shard_of(i, candidates.num_shards)``. The shard is written into the store folder ``--out``
(``shards/``, ``entries/``...); ``candidates_merge`` joins the shards. A shard whose entry exists
and verifies is not redone, so a retried task resumes where the killed one stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from components import _stage
from semires.checks import ChecksConfig, check_candidates, shard_records

APP = _stage.app(__doc__)


@APP.command()
def main(index: Path = _stage.INDEX,
         shard: int = typer.Option(..., min=0, help="shard number, 0 <= shard < candidates.num_shards"),
         out: Path = typer.Option(..., help="candidate store folder"),
         report: Path = _stage.REPORT,
         metrics: Path = _stage.METRICS,
         params: Path = _stage.PARAMS) -> None:
    from semires.candidates.config import CandidatesConfig
    from semires.candidates.registry import build_generator
    from semires.candidates.stats import flat_metrics, merge_stats
    from semires.candidates.store import generate_shard, shard_ids
    from semires.data.index import RefIndex
    from semires.io import read_json

    p = _stage.params(params)
    cfg, checks = _stage.cfg(p, "candidates", CandidatesConfig), _stage.cfg(p, "checks", ChecksConfig).candidates
    idx = RefIndex.load(index)
    images = idx.image_ids(cfg.split)
    with _stage.stage("candidates", p, {"candidates": cfg, "checks.candidates": checks}, metrics) as st:
        st.tracker.set_tags({"semires.shard": f"{shard}/{cfg.num_shards}"})
        entry = generate_shard(idx, images, shard, cfg.num_shards, out, build_generator(cfg), cfg.allow_failures)
        result = check_candidates(shard_records(out / entry["file"]), index, shard_ids(images, shard, cfg.num_shards),
                                  out / entry["file"], report_path=report, cfg=checks,
                                  failed_images=[f["image_id"] for f in entry["failures"]])
        st.log_artifact(report, "checks")
        timing = out / "timing" / Path(entry["file"]).with_suffix(".json").name
        stats = flat_metrics(merge_stats([read_json(timing)])) if timing.is_file() else {}
        st.log_metrics({"images": entry["images"], "failures": len(entry["failures"]),
                        "reused": int(entry.get("skipped", False)), **stats})
        typer.echo(f"candidates shard {shard}/{cfg.num_shards}: {entry['images']} images"
                   f"{' (verified, kept)' if entry.get('skipped') else ''}; {result}")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
