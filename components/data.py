"""Stage ``data``: RefShapes generation (when ``data.dataset`` is refshapes), the index, its gate.

    python -m components.data --refer-dir data/refshapes --image-dir data/refshapes/images \
        --index data/index.json --report reports/checks/data.txt --metrics metrics/data.json

A user's REFER folder (RefCOCO, RefCOCO+, G-Ref) is indexed as is; nothing is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from components import _stage
from semires.checks import ChecksConfig, check_index_and_splits

APP = _stage.app(__doc__)


@APP.command()
def main(refer_dir: Path = typer.Option(..., help="REFER folder (generated here for RefShapes)"),
         image_dir: Path = typer.Option(..., help="folder with the images"),
         index: Path = typer.Option(..., help="index JSON to write"),
         report: Path = _stage.REPORT,
         metrics: Path = _stage.METRICS,
         params: Path = _stage.PARAMS) -> None:
    from semires.data.index import RefIndex, build_index

    p = _stage.params(params)
    data, checks = p.data, _stage.cfg(p, "checks", ChecksConfig)
    with _stage.stage("data", p, {"data": data, "checks.data": checks.data}, metrics, outputs=[index]) as st:
        if data.dataset == "refshapes":
            from semires.data.synthetic import generate

            s = data.synth
            generate(refer_dir, preset=s.preset, seed=s.seed, num_images=s.num_images, image_size=s.image_size)
        build_index(refer_dir, image_dir, index, split_by=data.split_by, dataset=data.dataset,
                    check_images=data.check_images)
        result = check_index_and_splits(index, [], report_path=report, cfg=checks.data)
        st.log_artifact(report, "checks")
        idx = RefIndex.load(index)
        st.log_metrics({"images": len(idx.images), "refs": len(idx.refs),
                        "expressions": sum(len(r["sentences"]) for r in idx.refs.values()),
                        **{f"refs_{s}": len(idx.ref_ids(s)) for s in idx.splits()},
                        "checks_expectations": len(result.outcomes)})
        typer.echo(f"index {index}: {len(idx.images)} images, {len(idx.refs)} refs; {result}")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
