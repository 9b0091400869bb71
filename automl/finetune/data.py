"""The task's splits as a LightningDataModule of uint8 pixel batches, augmented on the training device.

Each split is decoded once per input pipeline (:func:`automl.images.pixels.split_pixels`, cached on disk and
shared by every trial), so an epoch only indexes an array. A split over the cache's limit
(``finetune.pixel_cache_gb``) is decoded on the fly instead, a batch at a time in the loader's worker
processes, into the same bytes. The loader hands out uint8 batches; after they reach the device,
:meth:`TaskDataModule.on_after_batch_transfer` augments the training batches
(:class:`automl.finetune.augment.BatchAugment`) and normalises the others, exactly as ``automl.deploy.predict``
does for an exported model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from automl.finetune.augment import BatchAugment
from automl.images.pixels import LazyPixels, normalize, split_pixels, training_config
from automl.images.tasks import Task
from automl.settings import AugmentSettings

MAX_STREAMING_WORKERS = 8  # one decodes ~200 photographs/s to 224 px on a CPU core (docs/results/pixel-paths.md)


def resolve_num_workers(setting: int | str, streaming: bool = False) -> int:
    """``auto`` → loader worker processes for this machine; an int is returned as it is.

    ``auto`` is 0 for a decoded split: the loader only indexes an array (augmentation runs on the batch,
    on the training device), which a worker process cannot make faster (bench/finetune.py). For a split
    decoded on the fly (``streaming``) it is one per core but the main process's, at least 1 and at most
    :data:`MAX_STREAMING_WORKERS`: the workers decode the next batches while the main process trains.
    """
    if setting != "auto":
        return int(setting)
    if not streaming:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus - 1, MAX_STREAMING_WORKERS))


class PixelBatches(torch.utils.data.Dataset):
    """``(uint8 [b, C, H, W], int64 [b])`` for a list of indices into a split (a batch at a time): its decoded
    array, or its :class:`~automl.images.pixels.LazyPixels` (then the images are decoded here, in the
    process that asks: a loader worker)."""

    def __init__(self, pixels: np.ndarray | LazyPixels, labels: np.ndarray):
        if len(pixels) != len(labels):
            raise ValueError(f"{len(pixels)} images but {len(labels)} labels")
        self.pixels, self.labels = pixels, torch.as_tensor(np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        order = np.sort(indices)  # memory-mapped arrays read fastest in file order; the batch is shuffled anyway
        return torch.from_numpy(np.ascontiguousarray(self.pixels[order])), self.labels[order]


class TaskDataModule(pl.LightningDataModule):
    """Loaders over ``task``'s splits for a model with ``data_config``.

    Args:
        task: the task (its ``splits`` are used as they are; decoded pixels are cached in ``task.cache_dir``).
        data_config: the model's input config (``bank.resolve_data_config``, image_size override applied).
        batch_size: training batch size (evaluation uses the same).
        num_workers: loader processes, or ``auto`` (:func:`resolve_num_workers`, per split).
        augment: the training augmentation.
        drop_last: drop the last incomplete training batch (when there is more than one batch).
        pin_memory: pin host memory (for a CUDA device).
        pixel_cache_gb: the decoded-pixel cache's limit in GB (``split_pixels``' ``limit_bytes``); None: no
            limit, 0: every split is decoded on the fly.
    """

    def __init__(self, task: Task, data_config: Mapping[str, Any], batch_size: int,
                 num_workers: int | str = "auto", augment: AugmentSettings | None = None,
                 drop_last: bool = False, pin_memory: bool = False, pixel_cache_gb: float | None = None):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.task = task
        self.data_config = dict(data_config)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.drop_last = drop_last and len(task.splits["train"]) > batch_size
        self.pin_memory = pin_memory
        self.augment = BatchAugment(augment or AugmentSettings(), self.data_config)
        self.limit_bytes = None if pixel_cache_gb is None else int(pixel_cache_gb * 1e9)

    def pixels(self, split: str) -> np.ndarray | LazyPixels:
        """uint8 [N, C, H, W] of a split: whole images for training, the eval crop otherwise; decoded, or
        decoded when read where the cache's limit leaves it out."""
        data = self.task.splits[split]
        if len(data) == 0:
            raise ValueError(f"task {self.task.name!r}: the {split} split is empty")
        config = training_config(self.data_config) if split == "train" else self.data_config
        return split_pixels(data.paths, config, fingerprint=self.task.fingerprint, split=split,
                            cache_dir=self.task.cache_dir, limit_bytes=self.limit_bytes)

    def _loader(self, split: str, shuffle: bool, drop_last: bool = False, batch_size: int | None = None
                ) -> DataLoader:
        pixels = self.pixels(split)
        dataset = PixelBatches(pixels, self.task.splits[split].labels)
        order = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        workers = resolve_num_workers(self.num_workers, streaming=isinstance(pixels, LazyPixels))
        # The loader's own generator gives its workers' seeds: a loader without one draws them from torch's
        # global generator (once per epoch without workers, once per fit with persistent ones), so the fit's
        # augmentation would depend on the workers; now only the sampler's shuffle draws from it.
        return DataLoader(dataset, batch_size=None,
                          sampler=BatchSampler(order, batch_size or self.batch_size, drop_last),
                          num_workers=workers, persistent_workers=workers > 0, generator=torch.Generator(),
                          pin_memory=self.pin_memory and torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[torch.Tensor]:
        """uint8 [b, C, H, W] batches of ``split``'s eval crop, in ``splits[split]`` order (decoded by the
        loader's workers where the split is not cached). Draws nothing from torch's global generator, so a fit
        evaluated between epochs trains as one that is not."""
        return (pixels for pixels, _ in self._loader(split, shuffle=False, batch_size=batch_size))

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int
                                ) -> tuple[torch.Tensor, torch.Tensor]:
        pixels, labels = batch
        training = self.trainer is not None and self.trainer.training
        return (self.augment(pixels) if training else normalize(pixels, self.data_config)), labels
