"""The ``semires`` command: one typer app with a sub-app per subsystem.

Every :class:`semires.errors.SemiresError` is printed as one line on stderr with exit code 2, so
scripts, DVC and Airflow see a clean failure instead of a traceback.
"""

from __future__ import annotations

import sys

import typer

from semires.cli import candidates as candidates_cli
from semires.cli import data as data_cli
from semires.cli import pipeline as pipeline_cli
from semires.cli import semi as semi_cli
from semires.cli import train as train_cli
from semires.errors import CheckFailed, SemiresError

app = typer.Typer(help="semires: semi-supervised referring expression segmentation (SemiRES).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(data_cli.app, name="data")
app.add_typer(train_cli.app, name="train")
app.command("evaluate")(train_cli.evaluate)
app.add_typer(candidates_cli.app, name="candidates")
app.add_typer(semi_cli.app, name="semi")
app.add_typer(pipeline_cli.app, name="pipeline")
app.command("compare")(pipeline_cli.compare)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the process exit code."""
    return run_app(app, argv)


def run_app(typer_app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run any typer app (the CLI, a pipeline component) with this error handling; returns the exit code."""
    try:
        typer_app(args=argv, standalone_mode=False)
    except CheckFailed as err:
        print(f"error: {err}", file=sys.stderr)
        print(err.report, file=sys.stderr)
        return 2
    except SemiresError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except typer.Exit as exc:  # raised by --help and explicit exits
        return int(exc.exit_code or 0)
    except Exception as exc:  # click usage errors carry their own exit code
        import click
        from typer._click import exceptions as typer_click  # typer >= 0.2x raises its vendored click's errors

        if isinstance(exc, (click.ClickException, typer_click.ClickException)):
            exc.show()
            return exc.exit_code
        if isinstance(exc, (click.exceptions.Abort, typer_click.Abort)):
            return 130
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
