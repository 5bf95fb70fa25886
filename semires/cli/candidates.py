"""``semires candidates``: generate "everything" candidates per shard, merge shards, measure recall."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="SAM 'everything' candidates: generate (one shard per task), merge, recall, render.",
                  no_args_is_help=True)

Params = Annotated[Path, typer.Option(help="params file (section 'candidates')")]
StoreDir = Annotated[Path | None, typer.Option("--out", help="store folder (default: candidates.out_dir)")]
Shards = Annotated[int | None, typer.Option(help="total shards (default: candidates.num_shards)")]
Index = Annotated[Path, typer.Option(help="index JSON (semires data index)")]
Store = Annotated[Path, typer.Option(help="merged candidate store folder")]


def _config(params: Path):
    from semires.candidates.config import CandidatesConfig
    from semires.config import load_params, section

    return section(load_params(params), "candidates", CandidatesConfig)


@app.command()
def generate(index: Index,
             shard: Annotated[int, typer.Option(help="which shard to generate, 0 <= shard < num-shards")] = 0,
             num_shards: Shards = None, out: StoreDir = None,
             split: Annotated[str | None, typer.Option(help="only this split (default: candidates.split)")] = None,
             allow_failures: Annotated[bool | None, typer.Option(
                 "--allow-failures/--no-allow-failures", help="skip unreadable images (default: params)")] = None,
             params: Params = Path("params.yaml")) -> None:
    """Generate candidates for ONE shard of the index's images (rerun-safe: finished shards are skipped)."""
    from semires.candidates.registry import build_generator
    from semires.candidates.store import generate_shard
    from semires.data.index import RefIndex

    cfg = _config(params)
    n = num_shards or cfg.num_shards
    ix = RefIndex.load(index)
    if cfg.generator == "embedded":
        typer.echo("candidates: using the EMBEDDED generator, a weight-free stand-in for SAM "
                   "(set candidates.generator: sam and candidates.sam.checkpoint for real SAM masks)", err=True)
    gen = build_generator(cfg)
    entry = generate_shard(ix, ix.image_ids(split or cfg.split), shard, n, out or Path(cfg.out_dir), gen,
                           allow_failures=cfg.allow_failures if allow_failures is None else allow_failures)
    state = "already complete, skipped" if entry["skipped"] else "written"
    typer.echo(f"shard {shard}/{n}: {entry['images']} images {state} with {gen.name}; "
               f"{len(entry['failures'])} unreadable image(s) listed in failures/; entry {entry['file']}")


@app.command()
def merge(out: StoreDir = None, num_shards: Shards = None, params: Params = Path("params.yaml")) -> None:
    """Verify every shard's checksum and write manifest.json, failures.json and stats.json."""
    from semires import io
    from semires.candidates.store import merge as merge_store

    cfg = _config(params)
    out_dir = out or Path(cfg.out_dir)
    path = merge_store(out_dir, num_shards or cfg.num_shards)
    stats = io.read_json(out_dir / "stats.json")
    typer.echo(f"manifest {path}: {stats['images']} images, "
               f"{stats['candidates_per_image']['mean']:.1f} candidates/image, "
               f"{stats['seconds_per_image']['mean'] * 1000:.0f} ms/image")


@app.command()
def recall(index: Index, candidates: Store,
           split: Annotated[str | None, typer.Option(help="only images of this split")] = None,
           out: Annotated[Path | None, typer.Option(help="also write the result as JSON here")] = None) -> None:
    """Share of ground-truth objects that some candidate covers at IoU >= 0.5 / 0.75 / 0.8 / 0.9."""
    from semires import io
    from semires.candidates.recall import store_recall
    from semires.candidates.store import CandidateStore
    from semires.data.index import RefIndex

    ix = RefIndex.load(index)
    store = CandidateStore(candidates)
    res = store_recall(store, ix, ix.image_ids(split) if split else None)
    res["generator"] = store.generator.get("name")
    if out:
        io.write_json(out, res)
    typer.echo(json.dumps(res, indent=1))


@app.command()
def render(index: Index, candidates: Store, out: Annotated[Path, typer.Option(help="PNG to write")],
           num: Annotated[int, typer.Option(help="how many images (the first ids)")] = 6) -> None:
    """PNG of candidates overlaid on a few images."""
    from semires.candidates.stats import render_candidates
    from semires.candidates.store import CandidateStore
    from semires.data.index import RefIndex

    ix = RefIndex.load(index)
    store = CandidateStore(candidates)
    ids = store.image_ids[:num]
    render_candidates([ix.load_image(i) for i in ids], [store.masks(i).numpy() for i in ids], out,
                      captions=[f"image {i}" for i in ids], title=store.generator.get("name"))
    typer.echo(f"wrote {out}")
