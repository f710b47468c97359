"""Files that are never half-written: every write goes to a temporary file in the same folder, then `os.replace`
renames it, so a killed run leaves either the old file or the new one, never a torn one. Used by every output:
figures, JSON, pages, feature chunks, weights, network records.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error remove it."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = pathlib.Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return pathlib.Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Atomically write `obj` as indented JSON (numpy scalars and arrays converted)."""
    def default(o):
        if hasattr(o, "tolist"):
            return o.tolist()
        raise TypeError(f"cannot write {type(o).__name__} to JSON")
    return write_text(path, json.dumps(obj, indent=2, default=default) + "\n")


__all__ = ["atomic_path", "write_text", "write_json"]
