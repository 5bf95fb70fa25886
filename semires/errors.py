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


class NonFiniteError(SemiresError):
    """Probabilities (or a loss) that must be finite hold NaN or infinite values: never quantised or used."""


class TrainingDiverged(SemiresError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Interrupted(BaseException):
    """The process was asked to stop (SIGTERM); a BaseException so that ``except Exception`` cannot swallow it,
    while ``finally`` blocks (which remove temp files) still run. ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int):
        import signal

        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")


_USER_ERRNOS = {"ENOENT", "EACCES", "EPERM", "EISDIR", "ENOTDIR", "ENOSPC", "EROFS", "EDQUOT", "ENAMETOOLONG",
                "EEXIST", "ENOTEMPTY", "ELOOP", "EMFILE"}


_UNREACHABLE = ("Max retries exceeded", "Connection refused", "Failed to establish a new connection",
                "Read timed out", "Name or service not known")


def user_error_message(exc: BaseException) -> str | None:
    """One line (``<file or field>: <what is wrong> (fix: ...)``) for an exception that means bad input or
    a bad environment rather than a bug, else None (the caller then keeps the traceback).

    Covers :class:`SemiresError`, pydantic validation errors (the fields and what they accept), and
    file-system errors that name a file (not found, permission denied, disk full ...).
    """
    import errno

    if isinstance(exc, SemiresError):
        return str(exc)
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or exc.title}: {e['msg']}" for e in exc.errors())
        return f"invalid {exc.title}: {fields} (fix: correct the named field)"
    text = str(exc)
    if type(exc).__name__ == "MlflowException" and any(k in text for k in _UNREACHABLE):
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)[:300]
        return (f"MLflow tracking server unreachable ({first}) (fix: start it with `semires pipeline services up`, "
                "or set mlflow.enabled: false in params.yaml)")
    if isinstance(exc, OSError) and errno.errorcode.get(exc.errno or -1) in _USER_ERRNOS:
        where = exc.filename if exc.filename is not None else "file system"
        fix = {"ENOSPC": "free disk space and rerun", "EDQUOT": "free disk space and rerun",
               "EACCES": "check the file's permissions", "EPERM": "check the file's permissions",
               "EROFS": "write to a writable folder"}.get(errno.errorcode[exc.errno], "check the path")
        return f"{where}: {exc.strerror or exc} (fix: {fix})"
    return None
