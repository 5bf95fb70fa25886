"""Stage ``split``: labeled / unlabeled train image ids per label ratio, then the data gate.

    python -m components.split --index data/index.json --out data/splits \
        --report reports/checks/split.txt --metrics metrics/split.json

Writes ``<out>/<ratio_name>/{labeled,unlabeled}.txt, split.json`` for every ``split.ratios``
(each folder atomically) and gates the index with every split folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from components import _stage
from semires.checks import ChecksConfig, check_index_and_splits

APP = _stage.app(__doc__)


@APP.command()
def main(index: Path = _stage.INDEX,
         out: Path = typer.Option(..., help="folder for the per-ratio split folders"),
         report: Path = _stage.REPORT,
         metrics: Path = _stage.METRICS,
         params: Path = _stage.PARAMS) -> None:
    from semires.data.index import RefIndex
    from semires.data.splits import make_splits, ratio_name
    from semires.io import read_json

    p = _stage.params(params)
    cfg, checks = p.split, _stage.cfg(p, "checks", ChecksConfig)
    with _stage.stage("split", p, {"split": cfg, "checks.data": checks.data}, metrics, outputs=[out]) as st:
        written = make_splits(RefIndex.load(index), cfg.ratios, cfg.seed, out)
        result = check_index_and_splits(index, list(written.values()), report_path=report, cfg=checks.data)
        st.log_artifact(report, "checks")
        for ratio, folder in written.items():
            meta = read_json(folder / "split.json")
            st.log_metrics({f"{ratio_name(ratio)}.{k}": v for k, v in meta.items() if k.endswith(("_images", "_refs"))})
        typer.echo(f"splits {', '.join(ratio_name(r) for r in written)} in {out}; {result}")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
