"""A restricted unpickler for the REFER ``refs(<splitBy>).p`` files.

Those pickles are downloaded from third parties. Plain :mod:`pickle` executes whatever a
pickle's ``__reduce__`` names (``os.system`` included), so we admit only what the format needs:
dicts, lists, tuples, strings, bytes, numbers, booleans and None. These are built by pickle
opcodes without importing anything; any opcode that imports a global (``GLOBAL``,
``STACK_GLOBAL``) or asks for a persistent id is refused before it can run.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from semires.errors import DataError, UnsafePickleError

_SAFE_BUILTINS = {("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "set")}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh, source: str):
        super().__init__(fh, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str):
        # Sets are the only callables a plain-data pickle may need; everything else is code.
        if (module, name) in _SAFE_BUILTINS:
            return set if name == "set" else frozenset
        raise UnsafePickleError(
            f"refused to load: the pickle asks for '{module}.{name}', but only plain data "
            "(dict, list, tuple, str, numbers) is allowed",
            self._source,
            "use the official REFER refs file; never load pickles from untrusted sources",
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(
            "refused to load: the pickle uses persistent ids", self._source,
            "use the official REFER refs file",
        )


def safe_load_bytes(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` admitting only plain containers and scalars.

    Raises :class:`UnsafePickleError` for anything that would import or call code and
    :class:`DataError` for a truncated or malformed pickle.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # pickle raises many types for damaged input
        raise DataError(f"not a readable pickle ({type(exc).__name__}: {exc})", source,
                        "download the refs file again") from exc


def safe_load(path: str | Path) -> Any:
    """Read and restrictedly unpickle the file at ``path`` (see :func:`safe_load_bytes`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path, "check data.root and data.split_by in params.yaml")
    return safe_load_bytes(path.read_bytes(), str(path))
