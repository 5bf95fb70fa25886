"""``semires pipeline``: local services, pipeline runs in MLflow, the cross-run table, data gates."""

from __future__ import annotations

from pathlib import Path

import typer

from semires.config import load_params, section

app = typer.Typer(help="Pipeline: local S3 + MLflow services, pipeline runs, run comparison, data checks.",
                  no_args_is_help=True)
services_app = typer.Typer(help="Local S3 (moto) and MLflow servers for the pipeline.", no_args_is_help=True)
check_app = typer.Typer(help="Run a data-quality gate (great_expectations); non-zero exit on failure.",
                        no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(check_app, name="check")

STATE = typer.Option(Path(".services"), "--state-dir", help="pid files, logs, SQLite store, env.sh")
PARAMS = typer.Option(Path("params.yaml"), "--params", help="params file")


@services_app.command("up")
def services_up(state_dir: Path = STATE,
                print_env: bool = typer.Option(False, "--print-env", help="print `export` lines only (for eval)"),
                ) -> None:
    """Start (or reuse) moto S3 and the MLflow server; idempotent."""
    from semires import services

    svc = services.up(state_dir)
    if print_env:
        typer.echo(svc.shell_exports(), nl=False)
        return
    typer.echo(f"S3 (moto):  {svc.s3_url}  bucket {svc.bucket}\nMLflow UI:  {svc.mlflow_url}\n"
               f"environment: source {svc.state_dir / 'env.sh'}")


@services_app.command("down")
def services_down(state_dir: Path = STATE) -> None:
    """Stop the services that `up` started (by their pid files)."""
    from semires import services

    stopped = services.down(state_dir)
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@services_app.command("status")
def services_status(state_dir: Path = STATE) -> None:
    """Print the services' addresses; exit 1 when they are not running."""
    from semires import services

    svc = services.current(state_dir)
    if svc is None:
        typer.echo("services are not running (start them with `semires pipeline services up`)")
        raise typer.Exit(1)
    typer.echo(f"S3 (moto):  {svc.s3_url}\nMLflow UI:  {svc.mlflow_url}")


def _tracking(params: Path):
    from semires.tracking import TrackingConfig

    return section(load_params(params), "mlflow", TrackingConfig)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    from semires.errors import SemiresError

    bad = [s for s in items if "=" not in s]
    if bad:
        raise SemiresError(f"{what} {bad[0]!r} is not KEY=VALUE", None, f"write e.g. --{what} key=value")
    return dict(s.split("=", 1) for s in items)


@app.command("start-run")
def start_run(params: Path = PARAMS, name: str | None = typer.Option(None, help="run name"),
              set_: list[str] = typer.Option([], "--set", help="extra summary param KEY=VALUE"),
              tag: list[str] = typer.Option([], "--tag", help="tag KEY=VALUE on the run")) -> None:
    """Create the parent MLflow run of a pipeline execution; prints its id (nothing when tracking is off)."""
    from semires.pipeline import pipeline_summary
    from semires.runs import start_pipeline_run

    summary = {**pipeline_summary(load_params(params)), **_pairs(set_, "set")}
    run_id = start_pipeline_run(_tracking(params), summary, run_name=name, tags=_pairs(tag, "tag"))
    typer.echo(run_id or "")


@app.command("end-run")
def end_run(run_id: str | None = typer.Argument(None, help="the pipeline run (or find it with --tag)"),
            tag: str | None = typer.Option(None, help="find the pipeline run by its tag KEY=VALUE"),
            status: str = typer.Option("FINISHED", help="FINISHED | FAILED | KILLED | auto (FINISHED when its "
                                                        "report stage finished)"),
            params: Path = PARAMS) -> None:
    """Mark a pipeline run finished (or failed)."""
    from semires.errors import SemiresError
    from semires.runs import end_pipeline_run, find_pipeline_run, find_stage_run, run_status

    cfg = _tracking(params)
    if run_id is None and tag:
        run_id = find_pipeline_run(cfg, *_pairs([tag], "tag").popitem())
    if not run_id:
        raise SemiresError("no pipeline run to end", None, "pass its id, or --tag of a run that exists")
    if status == "auto":
        report = find_stage_run(cfg, "report", run_id)
        status = "FINISHED" if report and run_status(cfg, report) == "FINISHED" else "FAILED"
    end_pipeline_run(cfg, run_id, status)
    typer.echo(f"{run_id}: {status}")


@app.command()
def compare(params: Path = PARAMS, max_runs: int = typer.Option(50, help="newest runs to list"),
            out: Path | None = typer.Option(None, help="also write the table (Markdown) here")) -> None:
    """Table of pipeline runs: label ratio, strategy, mIoU / oIoU per split (from MLflow)."""
    from semires import io
    from semires.runs import compare as compare_runs
    from semires.runs import format_table

    table = format_table(compare_runs(_tracking(params), max_runs=max_runs))
    typer.echo(table)
    if out:
        io.write_text(out, table + "\n")


@check_app.command("data")
def check_data(index: Path = typer.Option(..., help="index JSON"),
               split: list[Path] = typer.Option([], "--split", help="split folder(s)"),
               report: Path | None = typer.Option(None, help="report file"), params: Path = PARAMS) -> None:
    """Index and label-split gate."""
    from semires.checks import ChecksConfig, check_index_and_splits

    cfg = section(load_params(params), "checks", ChecksConfig)
    typer.echo(str(check_index_and_splits(index, split, report_path=report, cfg=cfg.data)))



@check_app.command("pseudo-labels")
def check_pseudo(pseudo: Path = typer.Option(..., help="pseudo-label folder"),
                 index: Path | None = typer.Option(None, help="index JSON (labels must be for its refs)"),
                 split: Path | None = typer.Option(None, help="split folder (labels must lie on its unlabeled images)"),
                 report: Path | None = typer.Option(None, help="report file"), params: Path = PARAMS) -> None:
    """Pseudo-label gate: one label per expression, unlabeled images only, the teacher did not collapse."""
    from semires.checks import ChecksConfig, check_pseudo_labels
    from semires.data.splits import load_split

    cfg = section(load_params(params), "checks", ChecksConfig)
    unlabeled = load_split(split).unlabeled if split else None
    typer.echo(str(check_pseudo_labels(pseudo, index, unlabeled, report_path=report, cfg=cfg.labels)))


@check_app.command("refined")
def check_refined_labels(refined: Path = typer.Option(..., help="refined-label folder"),
                         report: Path | None = typer.Option(None, help="report file"), params: Path = PARAMS) -> None:
    """Refined-label gate: match rate and refined/pseudo area ratios in range."""
    from semires.checks import ChecksConfig, check_refined

    cfg = section(load_params(params), "checks", ChecksConfig)
    typer.echo(str(check_refined(refined, report_path=report, cfg=cfg.labels)))
