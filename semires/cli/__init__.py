"""The ``semires`` command: one typer app with a sub-app per subsystem.

:func:`run_app` is the one error path of the CLI and of every pipeline component: bad input is one
line on stderr with exit code 2, interrupts exit 130 (SIGINT) or 143 (SIGTERM), bugs keep their
traceback (exit 1), so scripts, DVC and Airflow see a clean failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

import typer

from semires.cli import candidates as candidates_cli
from semires.cli import data as data_cli
from semires.cli import pipeline as pipeline_cli
from semires.cli import semi as semi_cli
from semires.cli import train as train_cli
from semires.errors import CheckFailed

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
    """Run any typer app (the CLI, a pipeline component) with semires' one error path; returns the exit code.

    - bad input (:class:`SemiresError`, pydantic validation errors, file-system errors naming a file) and
      command-line usage errors: one line ``error: ...`` on stderr, exit 2 (a failed data gate adds its report);
    - SIGINT / Ctrl-C (KeyboardInterrupt, typer's Abort): exit 130; SIGTERM: exit 143. Both unwind the stack,
      so atomic writers remove their temp files;
    - an explicit ``typer.Exit(code)`` (``services status`` with a service down ...): that code;
    - anything else is a bug: the traceback is kept and the exit code is 1 (the exception propagates).

    ``SEMIRES_DEBUG=1`` re-raises user errors too, with their traceback.
    """
    with _sigterm_raises():
        try:
            rv = typer_app(args=argv, standalone_mode=False)
        except BaseException as exc:  # classified below; bugs are re-raised
            code = _exit_code(exc)
            if code is None:
                raise
            return code
    # In non-standalone mode typer returns the code of a typer.Exit (and 130 for Ctrl-C) instead of raising.
    code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    if code == 130:
        _close_progress_bars()
        print("error: interrupted", file=sys.stderr)
    return code


def _exit_code(exc: BaseException) -> int | None:
    """The exit code for ``exc`` after printing its one line, or None when it is a bug (keep the traceback)."""
    from semires.errors import Interrupted, user_error_message

    _close_progress_bars()

    if isinstance(exc, (typer.Exit, SystemExit)):
        code = exc.exit_code if isinstance(exc, typer.Exit) else exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    if isinstance(exc, Interrupted):
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, (KeyboardInterrupt, typer.Abort)) or type(exc).__name__ == "Abort":
        print("error: interrupted", file=sys.stderr)
        return 130
    usage = _usage_error(exc)
    if usage is not None:
        return usage
    msg = user_error_message(exc)
    if msg is None or os.environ.get("SEMIRES_DEBUG"):
        return None
    print(f"error: {msg}", file=sys.stderr)
    if isinstance(exc, CheckFailed):
        print(exc.report, file=sys.stderr)
    return 2


def _close_progress_bars() -> None:
    """End open tqdm bars, so that the error line starts a line of its own."""
    tqdm_mod = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm_mod, "tqdm", None), "_instances", None) or []):
        with contextlib.suppress(Exception):
            bar.close()


def _usage_error(exc: BaseException) -> int | None:
    """Command-line usage errors (unknown option, bad value ...) of typer's vendored click or click itself."""
    from typer._click import exceptions as typer_click

    kinds: tuple[type, ...] = (typer_click.ClickException,)
    with contextlib.suppress(ImportError):
        import click

        kinds += (click.ClickException,)
    if not isinstance(exc, kinds):
        return None
    msg = " ".join(exc.format_message().split())
    if msg:  # empty for a group called without a command: its help is already printed
        print(f"error: {msg}{' (fix: see --help)' if getattr(exc, 'exit_code', 1) == 2 else ''}", file=sys.stderr)
    return int(getattr(exc, "exit_code", 1) or 1)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`semires.errors.Interrupted` (when nothing else handles
    it): ``finally`` blocks run, temp files go, and the exit code is 143 instead of a silent kill."""
    from semires.errors import Interrupted

    def handler(signum, frame):
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
