"""The task's splits as a LightningDataModule of uint8 pixel batches, augmented on the training device.

Each split is decoded once per input pipeline (:func:`automl.images.pixels.split_pixels`, cached on disk and
shared by every trial), so an epoch only indexes an array. The loader hands out uint8 batches; after
they reach the device, :meth:`TaskDataModule.on_after_batch_transfer` augments the training batches
(:class:`automl.finetune.augment.BatchAugment`) and normalises the others, exactly as ``automl.deploy.predict``
does for an exported model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from automl.finetune.augment import BatchAugment
from automl.images.pixels import normalize, split_pixels, training_config
from automl.images.tasks import Task
from automl.settings import AugmentSettings


def resolve_num_workers(setting: int | str) -> int:
    """``auto`` → loader worker processes for this machine; an int is returned as it is.

    ``auto`` is 0: the loader only indexes decoded arrays (augmentation runs on the batch, on the
    training device), which a worker process cannot make faster (bench/finetune.py).
    """
    return 0 if setting == "auto" else int(setting)


class PixelBatches(torch.utils.data.Dataset):
    """``(uint8 [b, C, H, W], int64 [b])`` for a list of indices into a decoded split (a batch at a time)."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray):
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
        num_workers: loader processes, or ``auto`` (:func:`resolve_num_workers`).
        augment: the training augmentation.
        drop_last: drop the last incomplete training batch (when there is more than one batch).
        pin_memory: pin host memory (for a CUDA device).
    """

    def __init__(self, task: Task, data_config: Mapping[str, Any], batch_size: int,
                 num_workers: int | str = "auto", augment: AugmentSettings | None = None,
                 drop_last: bool = False, pin_memory: bool = False):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.task = task
        self.data_config = dict(data_config)
        self.batch_size = batch_size
        self.num_workers = resolve_num_workers(num_workers)
        self.drop_last = drop_last and len(task.splits["train"]) > batch_size
        self.pin_memory = pin_memory
        self.augment = BatchAugment(augment or AugmentSettings(), self.data_config)

    def pixels(self, split: str) -> np.ndarray:
        """uint8 [N, C, H, W] of a split: whole images for training, the eval crop otherwise."""
        data = self.task.splits[split]
        if len(data) == 0:
            raise ValueError(f"task {self.task.name!r}: the {split} split is empty")
        config = training_config(self.data_config) if split == "train" else self.data_config
        return split_pixels(data.paths, config, fingerprint=self.task.fingerprint, split=split,
                            cache_dir=self.task.cache_dir)

    def _loader(self, split: str, shuffle: bool, drop_last: bool = False) -> DataLoader:
        dataset = PixelBatches(self.pixels(split), self.task.splits[split].labels)
        order = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        return DataLoader(dataset, batch_size=None, sampler=BatchSampler(order, self.batch_size, drop_last),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=self.pin_memory and torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int
                                ) -> tuple[torch.Tensor, torch.Tensor]:
        pixels, labels = batch
        training = self.trainer is not None and self.trainer.training
        return (self.augment(pixels) if training else normalize(pixels, self.data_config)), labels
