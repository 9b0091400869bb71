"""Images as a model sees them: decoded once into uint8 pixels at the model's input size, normalised per batch.

Every path into a model goes through :func:`pixel_transform` (timm's eval transform, without the
normalisation: resize the shorter side to ``size / crop_pct``, crop, uint8 [C, H, W]) and :func:`normalize`
(per batch, on the model's device): probe features, fine-tuning, the test evaluation and ``automl.deploy.predict``
all see the same pixels.

For fine-tuning, a task's split is decoded once into an array (:func:`split_pixels`), cached on disk by
the task's fingerprint and the input pipeline, and memory-mapped: every trial and epoch of every model
with the same input reads it instead of decoding the files again, and the pages read are the system's page
cache, shared by every process on the machine, not memory of the process. Training images are
kept whole (``crop_pct`` 1) so that random crops (:mod:`automl.finetune.augment`) can be drawn from them.

The cache is bounded (``finetune.pixel_cache_gb``): a split whose array would take ``cache_dir/pixels/`` over
the limit, or use more than half the free disk, is not decoded ahead; :class:`LazyPixels` stands in for its
array and decodes the images a batch asks for (in the DataLoader's worker processes), through the same
:func:`decode_pixels`, so both paths give the same bytes. Nothing is evicted: the folder holds what was cached
until it is deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from numpy.lib.format import open_memmap
from PIL import Image

from automl._fileio import atomic_path
from automl._progress import progress_bar
from automl.images.decode import load_image
from automl.settings import MAX_PIXELS

log = logging.getLogger(__name__)

CACHE_VERSION = 1
DECODE_CHUNK = 256  # images decoded and transformed per step
_PIPELINE_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode")
_streaming_logged: set[str] = set()  # the splits (cache digests) this process has said it decodes on the fly


def pixel_transform(config: Mapping[str, Any]) -> Callable[[Sequence[Image.Image]], torch.Tensor]:
    """B PIL RGB images → contiguous uint8 [B, C, H, W], resized and cropped as timm's eval transform does.

    Normalisation is left out (``use_prefetcher=True``): :func:`normalize` does it once per batch, as
    timm's PrefetchLoader does.
    """
    transform = timm.data.create_transform(**_transform_args(config), is_training=False, use_prefetcher=True)
    _, height, width = config["input_size"]
    # With crop_pct 1, images already at the input size pass resize and crop unchanged: skipping the
    # per-image PIL round trip matters when the model's forward costs only ~100 µs per image.
    unchanged = all(math.floor(side / config["crop_pct"]) == side for side in (height, width))

    def apply(images: Sequence[Image.Image]) -> torch.Tensor:
        if unchanged and all(image.size == (width, height) and image.mode == "RGB" for image in images):
            raw = torch.frombuffer(bytearray(b"".join(image.tobytes() for image in images)), dtype=torch.uint8)
            return raw.view(len(images), height, width, 3).permute(0, 3, 1, 2).contiguous()
        return torch.stack([torch.as_tensor(np.asarray(transform(image))) for image in images])

    return apply


def _transform_args(config: Mapping[str, Any]) -> dict[str, Any]:
    missing = {"input_size", "mean", "std", "interpolation", "crop_pct"} - set(config)
    if missing:
        raise ValueError(f"data config is missing {sorted(missing)} (got {sorted(config)})")
    return {"input_size": tuple(config["input_size"]), "mean": tuple(config["mean"]), "std": tuple(config["std"]),
            "interpolation": config["interpolation"], "crop_pct": config["crop_pct"],
            "crop_mode": config.get("crop_mode", "center")}


def normalize(pixels: torch.Tensor, config: Mapping[str, Any]) -> torch.Tensor:
    """uint8 (or 0..255 float) [B, C, H, W] → float32, normalised with the config's mean and std (0..1 units)."""
    # non_blocking: a blocking copy to a GPU would wait for the work queued there (a sync every batch)
    mean = torch.tensor(config["mean"]).to(pixels.device, non_blocking=True).view(1, -1, 1, 1) * 255
    std = torch.tensor(config["std"]).to(pixels.device, non_blocking=True).view(1, -1, 1, 1) * 255
    return pixels.float().sub_(mean).div_(std)


def training_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline of the training images: the whole image at the input size (random crops come later)."""
    return {**config, "crop_pct": 1.0, "crop_mode": "center"}


def decode_pixels(paths: Sequence[str | Path], transform: Callable[[Sequence[Image.Image]], torch.Tensor],
                  max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """uint8 [b, C, H, W]: the images at ``paths`` decoded (:func:`load_image`) and put through ``transform``
    (a :func:`pixel_transform`). The one decoding step of the cache, :class:`LazyPixels` and the predictors.

    Raises :class:`automl.images.decode.BadImageError` naming a file that cannot be decoded.
    """
    return transform([load_image(path, max_pixels) for path in paths])


def pixel_batches(paths: Sequence[str | Path], config: Mapping[str, Any], batch_size: int,
                  max_pixels: int = MAX_PIXELS) -> Iterator[torch.Tensor]:
    """uint8 [b, C, H, W] batches of the images at ``paths``, decoded as they are needed."""
    transform = pixel_transform(config)
    for start in range(0, len(paths), batch_size):
        yield decode_pixels(paths[start : start + batch_size], transform, max_pixels)


class LazyPixels:
    """uint8 [N, C, H, W] pixels of N image files through ``config``'s pipeline, decoded when they are read:
    what :func:`split_pixels` gives for a split it does not cache.

    Indexed with a sequence of indices it returns a new uint8 [b, C, H, W] array, the same bytes the cached
    array holds (:func:`decode_pixels`). It holds the paths and nothing per image besides. Picklable for
    DataLoader workers (each process builds its own transform).
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, paths: Sequence[str | Path], config: Mapping[str, Any]):
        _, height, width = config["input_size"]
        self.paths, self.config = tuple(paths), dict(config)
        self.shape = (len(self.paths), 3, height, width)
        self._transform: Callable[[Sequence[Image.Image]], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        if self._transform is None:
            self._transform = pixel_transform(self.config)
        return decode_pixels([self.paths[i] for i in indices], self._transform).numpy()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_transform": None}  # a closure over timm's transform does not pickle


def split_pixels(paths: Sequence[str | Path], config: Mapping[str, Any], *, fingerprint: str, split: str,
                 cache_dir: str | Path | None, limit_bytes: int | None = None) -> np.ndarray | LazyPixels:
    """uint8 [N, C, H, W] pixels of ``paths`` through ``config``'s pipeline, decoded once, or decoded when
    read (:class:`LazyPixels`) where the array would break ``limit_bytes``.

    With a ``cache_dir`` the array is stored in ``cache_dir/pixels/<key>.npy``, ``key`` a digest of the
    task's ``fingerprint``, the ``split`` and the pipeline; a second call with the same inputs decodes
    nothing. A cached array is returned memory-mapped (read-only).

    ``limit_bytes`` (None: no limit) bounds every file in ``cache_dir/pixels/`` together (without a
    ``cache_dir``, the one array in memory): a split not cached yet whose array would take the folder over
    it, or would fill more than half the free disk, gets :class:`LazyPixels` instead (said once per process
    in the log). A split already cached is read whatever the limit.
    """
    _, height, width = config["input_size"]
    shape = (len(paths), 3, height, width)
    key = {"version": CACHE_VERSION, "task": fingerprint, "split": split,
           **{name: config.get(name) for name in _PIPELINE_KEYS}}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=list).encode()).hexdigest()[:24]
    folder = None if cache_dir is None else Path(cache_dir) / "pixels"
    if folder is not None:
        cached = _read(folder / f"{digest}.npy", shape)
        if cached is not None:
            return cached
    needed, used = math.prod(shape), 0 if folder is None else cache_bytes(folder)
    refusal = _over_limit(needed, used, folder, limit_bytes)
    if refusal is not None:
        if digest not in _streaming_logged:
            _streaming_logged.add(digest)
            log.info("pixels: the %s split (%d images at %dx%d) is decoded on the fly by the loader's workers, "
                     "not cached: %s", split, len(paths), height, width, refusal)
        return LazyPixels(paths, config)
    if folder is None:
        return _decode(paths, config, np.empty(shape, dtype=np.uint8), split, "memory")
    path = folder / f"{digest}.npy"
    limit = "no limit" if limit_bytes is None else f"the limit of {_gb(limit_bytes)}"
    with atomic_path(path) as tmp:
        _decode(paths, config, open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape), split,
                f"the cache ({folder} now holds {_gb(used + needed)}, {limit})").flush()
    return _read(path, shape)


def cache_bytes(folder: Path) -> int:
    """Bytes of the files directly in ``folder`` (0 if it does not exist): what ``limit_bytes`` counts."""
    return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file()) if folder.is_dir() else 0


def _over_limit(needed: int, used: int, folder: Path | None, limit_bytes: int | None) -> str | None:
    """Why ``needed`` more bytes are not to be cached in ``folder`` (holding ``used``; None: in memory), or
    None if they may be."""
    if limit_bytes is not None and used + needed > limit_bytes:
        where = "in memory" if folder is None else f"with the {_gb(used)} already in {folder}"
        return (f"its {_gb(needed)} {where} would exceed the limit of {_gb(limit_bytes)} "
                "(finetune.pixel_cache_gb)")
    if folder is not None:
        free = shutil.disk_usage(_existing(folder)).free
        if needed > free // 2:
            return f"its {_gb(needed)} would fill more than half the {_gb(free)} free on the disk of {folder}"
    return None


def _existing(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists (the disk it will be on)."""
    return next(parent for parent in (folder, *folder.parents) if parent.exists())


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def _read(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array at ``path``, memory-mapped, or None if missing or of another shape."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if array.shape != shape or array.dtype != np.uint8:
        log.warning("pixels: %s holds %s %s, not %s uint8; decoding again", path, array.shape, array.dtype, shape)
        return None
    return array


def _decode(paths: Sequence[str | Path], config: Mapping[str, Any], out: np.ndarray, split: str, into: str
            ) -> np.ndarray:
    """``out`` (uint8 [N, C, H, W]) filled with the images at ``paths``, in chunks; logged with where it goes."""
    start = time.perf_counter()
    transform = pixel_transform(config)
    with progress_bar(transient=True, disable=len(paths) < 4 * DECODE_CHUNK) as progress:
        bar = progress.add_task(f"decoding {split} images", total=len(paths))
        for first in range(0, len(paths), DECODE_CHUNK):
            chunk = paths[first : first + DECODE_CHUNK]
            out[first : first + len(chunk)] = decode_pixels(chunk, transform).numpy()
            progress.advance(bar, len(chunk))
    log.info("pixels: decoded %d %s image(s) at %s in %.1f s into %s", len(paths), split,
             "x".join(map(str, out.shape[2:])), time.perf_counter() - start, into)
    return out
