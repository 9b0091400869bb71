"""The task's train/val/test splits as a LightningDataModule, with timm's transforms for one model.

Images are decoded by :func:`automl.images.load_image` and transformed with the model's data config
(input size, mean/std, interpolation, crop; the task's ``image_size`` override already applied):
random crops etc. from timm's ``create_transform(is_training=True)`` for training, the deterministic
eval transform for val/test, which is exactly what ``automl.predict`` applies to an exported model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from timm.data import create_transform
from torch.utils.data import DataLoader

from automl.images import ImageDataset
from automl.settings import AugmentSettings
from automl.tasks import Task


def _transform_args(data_config: Mapping[str, Any]) -> dict[str, Any]:
    missing = {"input_size", "mean", "std", "interpolation", "crop_pct"} - set(data_config)
    if missing:
        raise ValueError(f"data config is missing {sorted(missing)} (got {sorted(data_config)})")
    return {
        "input_size": tuple(data_config["input_size"]),
        "mean": tuple(data_config["mean"]),
        "std": tuple(data_config["std"]),
        "interpolation": data_config["interpolation"],
        "crop_pct": data_config["crop_pct"],
        "crop_mode": data_config.get("crop_mode", "center"),
    }


def eval_transform(data_config: Mapping[str, Any]):
    """PIL RGB image → [3, H, W] float tensor: resize, center crop (``crop_pct``/``crop_mode``), normalize."""
    return create_transform(is_training=False, **_transform_args(data_config))


def train_transform(data_config: Mapping[str, Any], augment: AugmentSettings):
    """timm's training transform (random resized crop, flips, jitter ... per ``augment``) at the model's input."""
    augment = {**dataclasses.asdict(augment), "scale": tuple(augment.scale), "ratio": tuple(augment.ratio)}
    args = _transform_args(data_config)
    args.pop("crop_pct")  # eval-only (random crops take scale/ratio instead)
    args.pop("crop_mode")
    return create_transform(is_training=True, **args, **augment)


def resolve_num_workers(setting: int | str) -> int:
    """``auto`` → loader worker processes for this machine; an int is checked and returned.

    ``auto`` = min(4, CPUs - 2), at least 0: on 2 cores bench/finetune.py measured the in-process
    loader fastest, as a loader process competes with the training threads for the two cores. Workers
    pay off once there are cores to spare for decoding and augmentation.
    """
    if setting == "auto":
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(0, min(4, cpus - 2))
    return int(setting)


class TaskDataModule(pl.LightningDataModule):
    """Loaders over ``task``'s splits for a model with ``data_config``.

    Args:
        task: the task (its ``splits`` are used as they are).
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
        self.train_transform = train_transform(data_config, augment or AugmentSettings())
        self.eval_transform = eval_transform(data_config)

    def dataset(self, split: str) -> ImageDataset:
        data = self.task.splits[split]
        if len(data) == 0:
            raise ValueError(f"task {self.task.name!r}: the {split} split is empty")
        transform = self.train_transform if split == "train" else self.eval_transform
        return ImageDataset(data.paths, data.labels, transform)

    def _loader(self, split: str, shuffle: bool, drop_last: bool = False) -> DataLoader:
        return DataLoader(
            self.dataset(split), batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)
