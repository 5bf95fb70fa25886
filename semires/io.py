"""Atomic file output: every artifact appears whole or not at all.

Writers create a temporary sibling (same directory, so ``os.replace`` is an atomic rename on
POSIX) and rename it into place only after the content is flushed. Directories are built in a
``.tmp-*`` sibling and renamed, or marked complete with a ``_SUCCESS`` file.

Temp names carry their writer: ``.tmp-<name>.p<pid>@<host>.<random>``. A process killed with SIGKILL
cannot remove its temps, so the first write into a folder in each process removes the temps and
``.old-*`` folders there whose writer is gone (:func:`clean_stale`): a process of this host that no
longer exists, or, for another host sharing the folder, a temp untouched for ``STALE_AFTER_S``. Temps of
live writers are never touched, so two runs writing the same output at once cannot break each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SUCCESS = "_SUCCESS"
STALE_AFTER_S = 6 * 3600.0  # temps of another host's writer older than this are taken for abandoned
_OWNER = re.compile(r"\.p(\d+)@([A-Za-z0-9_-]*)(?:\.|$)")
_cleaned: set[str] = set()
_cleaned_lock = threading.Lock()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40]


def owner_tag() -> str:
    """``p<pid>@<host>``: who writes a temp (see the module docstring)."""
    return f"p{os.getpid()}@{_host()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def is_stale(path: Path, now: float | None = None) -> bool:
    """True for a ``.tmp-*`` / ``.old-*`` entry whose writer is gone (see the module docstring).

    Entries without an owner tag (older versions) count as stale after ``STALE_AFTER_S``."""
    found = _OWNER.findall(path.name)
    try:
        age = (now or time.time()) - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if not found:
        return age > STALE_AFTER_S
    pid, host = found[-1]
    if host == _host():
        return int(pid) != os.getpid() and not _pid_alive(int(pid))
    return age > STALE_AFTER_S


def clean_stale(directory: str | Path, force: bool = False) -> list[Path]:
    """Remove the stale temps (``.tmp-*``) and half-swapped old folders (``.old-*``) in ``directory``;
    returns what was removed. Done once per folder and process unless ``force``."""
    directory = Path(directory)
    key = str(directory.resolve())
    with _cleaned_lock:
        if key in _cleaned and not force:
            return []
        _cleaned.add(key)
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith((".tmp-", ".old-")):
            continue
        p = Path(e.path)
        if not is_stale(p):
            continue
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    On an exception the temporary file is removed and ``path`` is left untouched.
    ``suffix`` keeps a file extension on the temp name for writers that look at it (PIL, numpy).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.{owner_tag()}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; published artifacts get the usual umask-derived mode.
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (sorted keys, so reruns give identical bytes) atomically."""
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file, raising :class:`semires.errors.DataError` naming the file on failure."""
    from semires.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path, "check the path or run the stage that writes it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", path, "regenerate the file") from exc


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; it replaces ``path`` on success.

    An existing ``path`` is removed only after the new content is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.{owner_tag()}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; a published one gets the usual mode
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{path.name}.{owner_tag()}.", dir=path.parent))
            os.rmdir(old)  # a unique name; os.replace needs it free
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def is_complete(directory: str | Path) -> bool:
    """True when ``directory`` carries the success marker written by :func:`mark_complete`."""
    return (Path(directory) / SUCCESS).is_file()


def mark_complete(directory: str | Path, info: dict | None = None) -> None:
    """Write the success marker (optionally with JSON ``info``) as the last step of a stage."""
    write_json(Path(directory) / SUCCESS, info or {})


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_verified: dict[tuple[str, int, int, str], bool] = {}


def verify_checksum(path: str | Path, sha256: str, what: str, rebuild: str) -> None:
    """Raise :class:`semires.errors.DataError` naming ``path`` and the command that rebuilds it (``rebuild``)
    unless the file exists and its sha256 is ``sha256``.

    The verdict is cached per process for the file's (path, size, mtime): a store opened again (a DataLoader
    worker, another epoch) is not hashed again, while a file rewritten in between is.
    """
    from semires.errors import DataError

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{what} not found", path, rebuild) from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, sha256)
    if key not in _verified:
        _verified[key] = sha256_file(path) == sha256
    if not _verified[key]:
        raise DataError(f"{what} is damaged (fails its checksum: its sha256 differs from the manifest's)", path, rebuild)
