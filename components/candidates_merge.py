"""Stage ``candidates_merge``: join the candidate shards into one store (``manifest.json``).

    python -m components.candidates_merge --out data/candidates --metrics metrics/candidates.json

With ``--part DIR`` (repeatable; Kubeflow, where each shard step has its own output folder) the
parts are first copied into ``--out``. Merging fails, naming them, when shards are missing or fail
their checksum; its output depends only on the shards, never on how many retries they took.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import typer

from components import _stage

APP = _stage.app(__doc__)


def copy_parts(parts: list[Path], out: Path) -> None:
    """Copy each part folder's files into ``out``; the same relative file twice must be identical."""
    from semires.errors import SemiresError
    from semires.io import sha256_file

    for part in parts:
        for f in sorted(q for q in part.rglob("*") if q.is_file()):
            dest = out / f.relative_to(part)
            if dest.exists():
                if sha256_file(dest) != sha256_file(f):
                    raise SemiresError(f"{f.relative_to(part)} differs between candidate parts", f,
                                       "each shard must write only its own files; rerun the shard steps")
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)


@APP.command()
def main(out: Path = typer.Option(..., help="candidate store folder (the shards are in it, or come with --part)"),
         part: list[Path] = typer.Option([], help="a shard step's output folder to copy in first"),
         metrics: Path = _stage.METRICS,
         params: Path = _stage.PARAMS) -> None:
    from semires.candidates.config import CandidatesConfig
    from semires.candidates.stats import flat_metrics
    from semires.candidates.store import merge
    from semires.io import read_json

    p = _stage.params(params)
    cfg = _stage.cfg(p, "candidates", CandidatesConfig)
    with _stage.stage("candidates_merge", p, {"candidates.num_shards": cfg.num_shards}, metrics) as st:
        copy_parts(part, out)
        manifest = merge(out, cfg.num_shards)
        for name in ("stats.json", "failures.json"):
            st.log_artifact(out / name, "candidates")
        doc, failures = read_json(manifest), read_json(out / "failures.json")
        st.log_metrics({"images": doc["images"], "shards": doc["num_shards"], "failures": len(failures),
                        **flat_metrics(read_json(out / "stats.json"))})
        typer.echo(f"candidate store {out}: {doc['images']} images in {doc['num_shards']} shards")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
