"""``semires data``: generate RefShapes, index a REFER folder, split labels, check data."""

from __future__ import annotations

from pathlib import Path

import typer

from semires.config import load_params

app = typer.Typer(help="Datasets: RefShapes generation, REFER indexing, label splits, data checks.",
                  no_args_is_help=True)


@app.command()
def synth(out: Path = typer.Option(..., help="output folder (REFER layout)"),
          preset: str = typer.Option("default", help="tiny | default | large"),
          seed: int = typer.Option(0), num_images: int | None = typer.Option(None),
          image_size: int | None = typer.Option(None), workers: int | None = typer.Option(None)) -> None:
    """Generate the RefShapes benchmark in the REFER layout."""
    from semires.data.synthetic import generate

    path = generate(out, preset=preset, seed=seed, num_images=num_images, image_size=image_size, workers=workers)
    typer.echo(f"RefShapes written to {path}")


@app.command()
def index(refer_dir: Path = typer.Option(..., help="folder with instances.json and refs(<split_by>).p"),
          image_dir: Path = typer.Option(..., help="folder with the images"),
          out: Path = typer.Option(..., help="index JSON to write"),
          split_by: str = typer.Option("unc", help="unc | umd | google"),
          dataset: str = typer.Option("refshapes"),
          check_images: bool = typer.Option(True, help="decode every image once")) -> None:
    """Convert a REFER folder (RefCOCO/RefCOCO+/G-Ref/RefShapes) to the pipeline's index."""
    from semires.data.index import RefIndex, build_index

    path = build_index(refer_dir, image_dir, out, split_by=split_by, dataset=dataset, check_images=check_images)
    idx = RefIndex.load(path)
    n_sent = sum(len(r["sentences"]) for r in idx.refs.values())
    typer.echo(f"index {path}: {len(idx.images)} images, {len(idx.refs)} refs, {n_sent} expressions, "
               f"splits {', '.join(idx.splits())}")


@app.command()
def split(index_path: Path = typer.Option(..., "--index", help="index JSON"),
          out: Path = typer.Option(..., help="folder for the per-ratio split folders"),
          ratios: str | None = typer.Option(None, help="comma-separated fractions, e.g. 0.01,0.05"),
          seed: int | None = typer.Option(None),
          params: Path = typer.Option(Path("params.yaml"), help="params file (split section)")) -> None:
    """Write labeled/unlabeled image-id lists of train for each ratio."""
    from semires.data.index import RefIndex
    from semires.data.splits import make_splits

    cfg = load_params(params).split
    rs = _ratios(ratios) if ratios else cfg.ratios
    idx = RefIndex.load(index_path)
    if not idx.image_ids("train"):
        from semires.errors import DataError

        raise DataError("the index has no 'train' refs, so there is nothing to split", index_path,
                        "index a dataset with a train split (refs with split: train)")
    written = make_splits(idx, rs, cfg.seed if seed is None else seed, out)
    for r, p in written.items():
        typer.echo(f"{r:g}: {p}")


def _ratios(text: str) -> list[float]:
    """``--ratios 0.01,0.05`` -> [0.01, 0.05]; each must be a fraction in (0, 1]."""
    from semires.errors import SemiresError

    out = []
    for item in text.split(","):
        try:
            r = float(item)
        except ValueError:
            raise SemiresError(f"--ratios: {item.strip()!r} is not a number", None,
                               "pass comma-separated fractions, e.g. --ratios 0.01,0.05") from None
        if not 0.0 < r <= 1.0:
            raise SemiresError(f"--ratios: {item.strip()} is not a labeled fraction in (0, 1]", None,
                               "pass fractions, e.g. --ratios 0.01,0.05 for 1 % and 5 %")
        out.append(r)
    return out


@app.command()
def check(index_path: Path = typer.Option(..., "--index", help="index JSON"),
          splits: list[Path] = typer.Option([], "--split", help="split folder(s) to check with the index"),
          report: Path | None = typer.Option(None, help="where to write the readable report")) -> None:
    """Run the great_expectations data gate on the index (and splits); non-zero exit on failure."""
    from semires.checks import check_index_and_splits

    result = check_index_and_splits(index_path, splits, report_path=report)
    typer.echo(str(result))


@app.command()
def preview(refer_dir: Path = typer.Option(..., help="REFER folder or index JSON"),
            out: Path = typer.Option(Path("docs/refshapes_grid.png")), n: int = typer.Option(8),
            seed: int = typer.Option(0)) -> None:
    """Save a picture grid of samples with their expressions and masks."""
    from semires.data.synthetic import render_preview

    typer.echo(f"wrote {render_preview(refer_dir, out, n=n, seed=seed)}")
