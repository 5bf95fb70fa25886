"""The one error type that semires raises for bad input, so that every CLI prints it the same way."""

from __future__ import annotations

from pathlib import Path


class SemiresError(Exception):
    """Bad input or a failed check, with the file it concerns and how to fix it.

    ``str(err)`` is one line: ``<file>: <what is wrong>[ (fix: <hint>)]`` so a CLI can print it as is.
    """

    def __init__(self, what: str, path: str | Path | None = None, fix: str | None = None):
        self.what = what
        self.path = None if path is None else str(path)
        self.fix = fix
        msg = what if self.path is None else f"{self.path}: {what}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)


class DataError(SemiresError):
    """A dataset file is missing, unreadable or inconsistent."""


class CheckFailed(SemiresError):
    """A data-quality gate failed; ``report`` holds the readable per-expectation report."""

    def __init__(self, what: str, report: str, path: str | Path | None = None, fix: str | None = None):
        super().__init__(what, path, fix)
        self.report = report


class UnsafePickleError(DataError):
    """A pickle asked to import or call something; it was refused and nothing ran."""


class TrainingDiverged(SemiresError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
