"""The task scan: every image is read and decoded once before any work, and its content hashed from the
same bytes, so corrupt files are found up front and the task's fingerprint covers what the pixels are.
The scan also keeps each image's size and mode, for the run's data summary.

Results are cached per task (one JSON file per image source under ``cache_dir/scans/``), keyed by each
file's size and mtime: a rescan reads only new or changed files, and the cache holds only the task's
current files, so it never grows past the task.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from automl._fileio import atomic_write_text
from automl.images._portable import is_image_file
from automl.images.decode import BadImageError, decode_image

log = logging.getLogger(__name__)

CACHE_VERSION = 4
PARALLEL_MIN_FILES = 2000  # below this a process pool costs more than it saves


class ImageScan(NamedTuple):
    width: int  # pixels, after EXIF orientation (as a model sees it)
    height: int
    mode: str  # the file's PIL mode before conversion to RGB (L, P, RGBA, I;16, ...)
    digest: str  # sha1 of the file's bytes

    @property
    def side(self) -> int:
        """min(width, height) in pixels."""
        return min(self.width, self.height)


def scan_images(paths: Sequence[Path], cache_file: Path, max_pixels: int, workers: int | None = None
                ) -> dict[Path, ImageScan | str]:
    """path → its :class:`ImageScan`, or the reason it cannot be used (unreadable, not an image, too large).

    Args:
        paths: the task's image files.
        cache_file: this task's scan cache (created or rewritten when something was scanned or dropped).
        max_pixels: larger images are bad images (``task.max_image_pixels``).
        workers: decoding processes; None picks for this machine (:func:`scan_workers`).
    """
    start = time.perf_counter()
    cached = _read_cache(cache_file, max_pixels)
    stats = {path: _stat(path) for path in paths}
    results: dict[Path, ImageScan | str] = {}
    todo = []
    for path in paths:
        entry = cached.get(str(path))
        if entry is not None and entry[0] == stats[path]:
            results[path] = entry[1] if isinstance(entry[1], str) else ImageScan(*entry[1])
        else:
            todo.append(path)
    if todo:
        workers = scan_workers(len(todo)) if workers is None else workers
        log.info("scanning %d image(s) (%d unchanged since the last scan) with %d process(es)", len(todo),
                 len(paths) - len(todo), max(1, workers))
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                scanned = list(pool.map(_scan_one, todo, [max_pixels] * len(todo), chunksize=256))
        else:
            scanned = [_scan_one(path, max_pixels) for path in todo]
        results.update(zip(todo, scanned, strict=True))
    if todo or len(cached) != len(paths):
        entries = {str(path): [stats[path], list(result) if isinstance(result, ImageScan) else result]
                   for path, result in results.items()}
        atomic_write_text(cache_file, json.dumps({"version": CACHE_VERSION, "max_pixels": max_pixels,
                                                  "images": entries}))
    log.info("scanned %d image(s) in %.1f s: %d read now, %d unusable", len(paths), time.perf_counter() - start,
             len(todo), sum(isinstance(r, str) for r in results.values()))
    return results


def scan_workers(files: int) -> int:
    """Decoding processes for ``files`` images on this machine: 1 for small tasks or one core, else one
    per core but the main process's, and at least 2 (on 2 cores two beat one: bench/scan.py)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if files < PARALLEL_MIN_FILES or cpus < 2 else max(2, cpus - 1)


def _scan_one(path: Path, max_pixels: int) -> ImageScan | str:
    if not is_image_file(path):
        return f"not an image file extension ({path.suffix or 'none'})"
    try:
        data = path.read_bytes()
        width, height = decode_image(data, path, max_pixels).size
        with Image.open(io.BytesIO(data)) as image:  # the header again, for the mode decoding replaced
            mode = image.mode
        return ImageScan(width, height, mode, hashlib.sha1(data).hexdigest())
    except OSError as exc:
        return f"not a readable image ({type(exc).__name__}: {exc})"
    except BadImageError as exc:
        return str(exc).removeprefix(f"{path}: ")


def _stat(path: Path) -> list[int]:
    try:
        stat = path.stat()
    except OSError:
        return [-1, -1]
    return [stat.st_size, stat.st_mtime_ns]


def _read_cache(cache_file: Path, max_pixels: int) -> dict[str, list]:
    try:
        data = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or data.get("max_pixels") != max_pixels:
        return {}
    return data.get("images") or {}
