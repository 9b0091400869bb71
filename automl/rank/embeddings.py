"""Probe-set features of every bank model: batched extraction and a content-addressed disk cache.

For each model: the penultimate (pre-logits) features of every probe image and, when the checkpoint has
a classifier, its softmax over the source classes. Every model sees the images through its own input
pipeline (timm's eval transform built from the entry's data config, or the task's ``image_size``).

Cache: ``cache_dir/features/<key>.npz`` with ``key`` = sha256 of everything the result depends on
(weights digest, arch, kwargs, data config, image size, task fingerprint, probe indices, timm version).
A second run with the same inputs computes nothing; a corrupt cache file is recomputed with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn

from automl._fileio import atomic_path
from automl._progress import progress_bar
from automl.bank import Bank, BankEntry, BankError, create_model, resolve_data_config
from automl.bank.weights import verified_digest
from automl.errors import AutomlError
from automl.images.decode import load_image
from automl.images.pixels import normalize, pixel_transform

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the stored arrays change meaning


class FeatureError(AutomlError):
    """A model's forward pass failed or produced NaN/inf; the message names the model."""


@dataclass(frozen=True, eq=False)  # arrays: identity, not element-wise, equality
class Features:
    """What one model saw on the probe set.

    features: [N, D] float32 pre-logits features.
    probs: [N, Cs] float32 softmax over the checkpoint's Cs source classes; None for headless checkpoints.
    labels: [N] int64 target-task class of each probe image.
    """

    features: np.ndarray
    probs: np.ndarray | None
    labels: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.labels.ndim != 1 or self.labels.dtype != np.int64:
            raise ValueError(f"labels must be [N] int64, got {self.labels.shape} {self.labels.dtype}")
        if self.features.shape[:1] != (n,) or self.features.ndim != 2 or self.features.dtype != np.float32:
            raise ValueError(f"features must be [{n}, D] float32, got {self.features.shape} {self.features.dtype}")
        if self.probs is not None and (self.probs.ndim != 2 or self.probs.shape[0] != n
                                       or self.probs.dtype != np.float32):
            raise ValueError(f"probs must be [{n}, Cs] float32, got {self.probs.shape} {self.probs.dtype}")


def extract_features(
    entry: BankEntry,
    images: Sequence[Image.Image],
    labels: Sequence[int] | np.ndarray,
    *,
    image_size: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Features:
    """Run ``entry``'s checkpoint over decoded RGB ``images`` (no cache).

    Args:
        entry: the bank entry; its checkpoint head (if any) gives ``probs``.
        images: N decoded RGB images, any size (each model's transform resizes them).
        labels: [N] target class indices, stored alongside.
        image_size: the task's input-side override in pixels, or None for the checkpoint's own size.

    Raises:
        BankError: the checkpoint cannot be loaded. FeatureError: forward failed or gave NaN/inf.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) == 0 or labels.shape != (len(images),):
        raise ValueError(f"need N > 0 images and [N] labels, got {len(images)} images and labels {labels.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = create_model(entry).eval().to(device)
    config = resolve_data_config(entry, model, image_size)
    features, probs = _forward(entry, model, config, images, batch_size, device)
    for name, values in (("features", features), ("probs", probs)):
        if values is not None and not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).any(axis=1).sum())
            raise FeatureError(f"{entry.label}: {bad} of {len(values)} probe images gave NaN/inf {name} "
                               f"(input {config['input_size']}, mean {config['mean']}, std {config['std']})")
    return Features(features=features, probs=probs, labels=labels)


def _forward(entry: BankEntry, model: nn.Module, config: dict[str, Any], images: Sequence[Image.Image],
             batch_size: int, device: str | torch.device) -> tuple[np.ndarray, np.ndarray | None]:
    pixels = pixel_transform(config)
    features, probs = [], []
    checked, head = False, None  # head: the classifier that maps pre-logits to logits, checked on batch 1
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = normalize(pixels(images[start : start + batch_size]).to(device), config)
                tokens = model.forward_features(x)
                pre_logits = model.forward_head(tokens, pre_logits=True)
                features.append(pre_logits.float().cpu())
                if entry.num_classes > 0:
                    if not checked:
                        checked, head = True, _classifier_of_pre_logits(model, tokens, pre_logits)
                    logits = head(pre_logits) if head is not None else model.forward_head(tokens)
                    probs.append(logits.float().softmax(dim=-1).cpu())
    except RuntimeError as exc:  # shape errors, e.g. a fixed-size model given another image_size
        raise FeatureError(f"{entry.label}: forward pass failed on input {config['input_size']}: {exc}") from exc
    stacked = torch.cat(features)
    if stacked.ndim != 2:
        raise FeatureError(f"{entry.label}: forward_head(pre_logits=True) gave shape {list(stacked.shape)}, "
                           "expected [N, D]; set a global_pool in the entry's kwargs")
    return stacked.numpy(), torch.cat(probs).numpy() if probs else None


def _classifier_of_pre_logits(model: nn.Module, tokens: torch.Tensor, pre_logits: torch.Tensor) -> nn.Module | None:
    """The module that turns this model's pre-logits into its logits, or None.

    timm's pre-logits are the input of ``get_classifier()``, so applying it saves pooling the tokens a
    second time for the probabilities. Checked against ``forward_head`` on the first batch: a model where
    it does not hold (extra head stages) gets None and the full head.
    """
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, nn.Module):
        return None
    try:
        same = torch.allclose(head(pre_logits), model.forward_head(tokens), rtol=1e-4, atol=1e-5)
    except RuntimeError:  # shapes that do not fit: the head has more stages
        return None
    return head if same else None


# ------------------------------------------------------------------------------------------------ cache
def feature_key(entry: BankEntry, task_fingerprint: str, probe_indices: np.ndarray, image_size: int | None) -> str:
    """Hex sha256 of everything an entry's probe features depend on (names don't matter: content does)."""
    probe = np.ascontiguousarray(probe_indices, dtype="<i8")
    payload = {
        "version": CACHE_VERSION,
        "timm": timm.__version__,  # default data configs and architectures may change between versions
        "weights": verified_digest(entry),
        "arch": entry.arch,
        "kwargs": entry.kwargs,
        "num_classes": entry.num_classes,
        "data_config": entry.data_config,
        "image_size": image_size,
        "task": task_fingerprint,
        "probe": hashlib.sha256(probe.tobytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()


def extract_bank(
    bank: Bank,
    task: Any,
    probe_indices: np.ndarray,
    cache_dir: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> dict[str, Features | Exception]:
    """Probe features of every bank model on ``task``'s training split, through the disk cache.

    Args:
        bank: the models.
        task: an :class:`automl.images.tasks.Task` (uses ``splits["train"]``, ``fingerprint``, ``image_size``).
        probe_indices: [M] int indices into the training split (see :func:`automl.rank.probe.sample_probe`).
        cache_dir: features live in ``cache_dir/features/``.

    Returns:
        ``{entry name: Features}``, in bank order; a model that cannot be loaded or gives NaN/inf maps to
        its :class:`BankError` / :class:`FeatureError` so the caller can report it and go on.
    """
    train = task.splits["train"]
    probe = np.asarray(probe_indices)
    if probe.ndim != 1 or probe.size == 0 or not np.issubdtype(probe.dtype, np.integer):
        raise ValueError(f"probe_indices must be a non-empty 1-D integer array, got {probe.shape} {probe.dtype}")
    if probe.min() < 0 or probe.max() >= len(train.paths) or len(np.unique(probe)) != len(probe):
        raise ValueError(f"probe_indices must be distinct indices into the {len(train.paths)} training images")
    labels = np.asarray(train.labels)[probe].astype(np.int64)
    folder = Path(cache_dir) / "features"
    images: list[Image.Image] | None = None  # decoded once, and only if some model misses the cache
    results: dict[str, Features | Exception] = {}
    with progress_bar() as progress:
        bar = progress.add_task("features", total=len(bank))
        for entry in bank:
            progress.update(bar, description=f"features: {entry.name}")
            tick = time.perf_counter()
            try:
                path = folder / f"{feature_key(entry, task.fingerprint, probe, task.image_size)}.npz"
                features, how = _read_cache(path, labels), "cached"
                if features is None:
                    if images is None:
                        images = [load_image(train.paths[i]) for i in probe]
                    features, how = extract_features(entry, images, labels, image_size=task.image_size,
                                                     batch_size=batch_size, device=device), "extracted"
                    _write_cache(path, features)
                log.log(logging.INFO if how == "extracted" else logging.DEBUG, "features: %s %s in %.2fs (%d x %d)",
                        entry.name, how, time.perf_counter() - tick, *features.features.shape)
                results[entry.name] = features
            except (BankError, FeatureError) as exc:
                log.debug("features: %s failed: %s", entry.name, exc)  # the caller reports it
                results[entry.name] = exc
            progress.advance(bar)
    return results


def _read_cache(path: Path, labels: np.ndarray) -> Features | None:
    """The cached features at ``path``, or None if missing, unreadable or not for these labels."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            probs = data["probs"] if "probs" in data.files else None
            features = Features(features=data["features"], probs=probs, labels=data["labels"])
        if not np.array_equal(features.labels, labels):
            raise ValueError("stored labels differ from the probe set's")
    except Exception as exc:  # zip, npy-format and shape errors all mean: recompute
        log.warning("features: cache file %s is unreadable (%s: %s); recomputing", path, type(exc).__name__, exc)
        return None
    return features


def _write_cache(path: Path, features: Features) -> None:
    arrays = {"features": features.features, "labels": features.labels}
    if features.probs is not None:
        arrays["probs"] = features.probs
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
