"""Training throughput of a finetune trial versus a plain PyTorch loop on the same model and data.

The trial path is what the search runs (FinetuneModule + TaskDataModule + make_trainer, progress bar
on); the plain path is a hand-written loop over the same DataLoader with the same optimizer and
schedule. Both are timed over their training batches only (validation excluded), per epoch, the first
epoch of every fit dropped (worker start-up, allocator warm-up); the two alternate so that load from
other processes hits both alike. Printed: median images/second per loader-worker count, and the ratio
(goal: the trial reaches >= 90% of the plain loop).

    python bench/finetune.py [--arch test_resnet] [--epochs 4] [--rounds 2] [--workers 0 1 2] [--threads N]
                             [--no-progress-bar]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import timm
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automl.config import compose, resolve
from automl.finetune.data import TaskDataModule
from automl.finetune.fit import quiet_libraries
from automl.finetune.module import FinetuneModule, build_optimizer, make_trainer
from automl.settings import Hparams
from automl.tasks import load_task

DATA_CONFIG = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
               "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}


class EpochTimer(pl.Callback):
    """Images/second of each training epoch: from epoch start to the end of its last batch."""

    def __init__(self):
        self.rates: list[float] = []

    def on_train_epoch_start(self, trainer, module):
        self.start, self.images, self.end = time.perf_counter(), 0, None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.images += len(batch[1])
        self.end = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.rates.append(self.images / (self.end - self.start))


def trial_rates(task, hparams: Hparams, arch: str, workers: int, progress_bar: bool) -> list[float]:
    pl.seed_everything(0, verbose=False)
    model = timm.create_model(arch, num_classes=task.num_classes)
    datamodule = TaskDataModule(task, DATA_CONFIG, hparams.batch_size, num_workers=workers)
    timer = EpochTimer()
    with quiet_libraries():  # as the search runs its trials
        trainer = make_trainer(hparams.epochs, "cpu", callbacks=[timer], progress_bar=progress_bar)
        trainer.fit(FinetuneModule(model, task.num_classes, hparams), datamodule=datamodule)
    return timer.rates[1:]


def plain_rates(task, hparams: Hparams, arch: str, workers: int) -> list[float]:
    pl.seed_everything(0, verbose=False)
    model = timm.create_model(arch, num_classes=task.num_classes).train()
    loader = TaskDataModule(task, DATA_CONFIG, hparams.batch_size, num_workers=workers).train_dataloader()
    optimizer, scheduler = build_optimizer(model, hparams, total_steps=hparams.epochs * len(loader))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hparams.label_smoothing)
    rates = []
    for _ in range(hparams.epochs):
        start, images = time.perf_counter(), 0
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            images += len(y)
        rates.append(images / (time.perf_counter() - start))
    return rates[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="test_resnet")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=True,
                        help="the trial's progress bar (finetune.progress_bar, on by default)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    settings = resolve(compose([]))
    task = load_task(settings.task, settings.cache_dir)  # builtin digits: 1257 training images, 10 classes
    hparams = dataclasses.replace(settings.finetune.default_hparams, epochs=args.epochs, batch_size=args.batch_size)
    print(f"{args.arch} on {task.name} ({len(task.splits['train'])} train images, 32 px), batch {args.batch_size}, "
          f"{args.epochs} epochs x {args.rounds} rounds, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs")
    rows = []
    for workers in args.workers:
        trial, plain = [], []
        for _ in range(args.rounds):
            trial += trial_rates(task, hparams, args.arch, workers, args.progress_bar)
            plain += plain_rates(task, hparams, args.arch, workers)
        rows.append((workers, statistics.median(trial), statistics.median(plain)))
    print(f"\n{'workers':>7}  {'trial img/s':>11}  {'plain img/s':>11}  {'trial/plain':>11}")
    for workers, trial, plain in rows:
        print(f"{workers:>7}  {trial:>11.0f}  {plain:>11.0f}  {trial / plain:>11.3f}")
    best = max(rows, key=lambda row: row[1])
    print(f"\nfastest trial setting: num_workers={best[0]} ({best[1]:.0f} img/s); "
          f"overhead vs plain there: {100 * (1 - best[1] / best[2]):.1f}% (goal <= 10%)")


if __name__ == "__main__":
    main()
