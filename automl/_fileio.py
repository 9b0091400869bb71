"""Files: atomic writes and copies (a reader, or a crash, never sees a half-written file) and CSV tables read as rows."""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# mkstemp creates 0600 files; finished outputs get the permissions a plain open() would give them.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename.

    The temporary file keeps ``path``'s suffix so writers that infer the format from it (numpy,
    safetensors, matplotlib) behave. On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_copy(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy ``source`` to ``destination`` byte for byte (a CSV keeps its line endings), replacing it in one rename."""
    with atomic_path(destination) as tmp:
        shutil.copyfile(source, tmp)
    return Path(destination)


def absolute_path(path: str | os.PathLike) -> Path:
    """``path`` with ``~`` expanded, made absolute and resolved."""
    return Path(path).expanduser().resolve()


def read_csv_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of the CSV file at ``path`` (header first), each a dict of column -> text."""
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, streamed; cached in-process while its (path, size, mtime) is unchanged."""
    stat = os.stat(path)
    return _file_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
