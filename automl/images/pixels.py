"""Images as a model sees them: decoded once into uint8 pixels at the model's input size, normalised per batch.

Every path into a model goes through :func:`pixel_transform` (timm's eval transform, without the
normalisation: resize the shorter side to ``size / crop_pct``, crop, uint8 [C, H, W]) and :func:`normalize`
(per batch, on the model's device): probe features, fine-tuning, the test evaluation and ``automl.deploy.predict``
all see the same pixels.

For fine-tuning, a task's split is decoded once into an array (:func:`split_pixels`), cached on disk by
the task's fingerprint and the input pipeline, and memory-mapped when it is large: every trial and epoch
of every model with the same input reads it instead of decoding the files again. Training images are
kept whole (``crop_pct`` 1) so that random crops (:mod:`automl.finetune.augment`) can be drawn from them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
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

log = logging.getLogger(__name__)

CACHE_VERSION = 1
IN_MEMORY_BYTES = 1 << 30  # smaller decoded splits are read into memory, larger ones memory-mapped
DECODE_CHUNK = 256  # images decoded and transformed per step
_PIPELINE_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode")


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


def pixel_batches(paths: Sequence[str | Path], config: Mapping[str, Any], batch_size: int,
                  max_pixels: int | None = None) -> Iterator[torch.Tensor]:
    """uint8 [b, C, H, W] batches of the images at ``paths``, decoded as they are needed.

    Raises :class:`automl.images.decode.BadImageError` naming a file that cannot be decoded.
    """
    transform = pixel_transform(config)
    extra = {} if max_pixels is None else {"max_pixels": max_pixels}
    for start in range(0, len(paths), batch_size):
        yield transform([load_image(path, **extra) for path in paths[start : start + batch_size]])


def split_pixels(paths: Sequence[str | Path], config: Mapping[str, Any], *, fingerprint: str, split: str,
                 cache_dir: str | Path | None) -> np.ndarray:
    """uint8 [N, C, H, W] pixels of ``paths`` through ``config``'s pipeline, decoded once.

    With a ``cache_dir`` the array is stored in ``cache_dir/pixels/<key>.npy``, ``key`` a digest of the
    task's ``fingerprint``, the ``split`` and the pipeline; a second call with the same inputs decodes
    nothing. Arrays above :data:`IN_MEMORY_BYTES` are returned memory-mapped.
    """
    _, height, width = config["input_size"]
    shape = (len(paths), 3, height, width)
    if cache_dir is None:
        return _decode(paths, config, np.empty(shape, dtype=np.uint8), split)
    key = {"version": CACHE_VERSION, "task": fingerprint, "split": split,
           **{name: config.get(name) for name in _PIPELINE_KEYS}}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=list).encode()).hexdigest()[:24]
    path = Path(cache_dir) / "pixels" / f"{digest}.npy"
    cached = _read(path, shape)
    if cached is not None:
        return cached
    with atomic_path(path) as tmp:
        _decode(paths, config, open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape), split).flush()
    return _read(path, shape)


def _read(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array at ``path`` (memory-mapped when large), or None if missing or of another shape."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if array.shape != shape or array.dtype != np.uint8:
        log.warning("pixels: %s holds %s %s, not %s uint8; decoding again", path, array.shape, array.dtype, shape)
        return None
    return array if array.nbytes > IN_MEMORY_BYTES else np.array(array)  # read into writable memory


def _decode(paths: Sequence[str | Path], config: Mapping[str, Any], out: np.ndarray, split: str) -> np.ndarray:
    start = time.perf_counter()
    transform = pixel_transform(config)
    with progress_bar(transient=True, disable=len(paths) < 4 * DECODE_CHUNK) as progress:
        bar = progress.add_task(f"decoding {split} images", total=len(paths))
        for first in range(0, len(paths), DECODE_CHUNK):
            chunk = paths[first : first + DECODE_CHUNK]
            out[first : first + len(chunk)] = transform([load_image(path) for path in chunk]).numpy()
            progress.advance(bar, len(chunk))
    log.info("decoded %d %s image(s) at %s in %.1f s", len(paths), split, "x".join(map(str, out.shape[2:])),
             time.perf_counter() - start)
    return out
