"""Training throughput of a finetune trial against the same model trained on ready tensors.

* **trial** — what the search runs: TaskDataModule (decoded pixels, cached) + batch augmentation on the
  training device + FinetuneModule + make_trainer (progress bar as set);
* **raw** — a plain PyTorch loop over the same images already in memory as one uint8 tensor, with the
  same batch size, the same augmentation (BatchAugment), optimizer and schedule: the model's own speed;
* **raw NCHW** — when the trial trains in NHWC (``finetune.channels_last``), the raw loop again in the contiguous layout: what
  the NHWC layout itself gains;
* **per-image PIL** — for reference, the path trials took before: every image decoded from its file and
  transformed by timm's PIL pipeline in every epoch (same model and optimizer).

All are timed over training batches only (validation excluded), per epoch, the first epoch of every fit
dropped (allocator warm-up); they alternate so that load from other processes hits them alike. Printed:
median images/second, the trial/raw ratio (goal >= 0.90), the time to decode the splits once, and on a
GPU its utilisation during the trial.

    python -m benchmarks.speed.finetune [arch=test_resnet] [epochs=4] [rounds=2] [batch_size=64] [threads=N]
                             [device=cpu] [progress_bar=true] [task=digits] [channels_last=null]
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import timm
import torch
from torch import nn

from automl.finetune.augment import BatchAugment
from automl.finetune.data import TaskDataModule
from automl.finetune.fit import quiet_libraries
from automl.finetune.module import FinetuneModule, build_optimizer, make_trainer, uses_channels_last
from automl.images.decode import load_image
from automl.images.pixels import training_config
from automl.images.tasks import load_task
from automl.settings import AugmentSettings, compose, resolve
from benchmarks._script import parse

DATA_CONFIG = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
               "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}


@dataclass
class Settings:
    arch: str = "test_resnet"
    task: str = "digits"  # a builtin task
    epochs: int = 4
    rounds: int = 2
    batch_size: int = 64
    threads: int | None = None  # torch intra-op threads (null: torch's default)
    device: str = "cpu"
    progress_bar: bool = True
    channels_last: bool | None = None  # null: what finetune.channels_last's default chooses for the arch


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


def trial_rates(task, settings: Settings, hparams, augment: AugmentSettings) -> list[float]:
    pl.seed_everything(0, verbose=False)
    model = timm.create_model(settings.arch, num_classes=task.num_classes)
    datamodule = TaskDataModule(task, DATA_CONFIG, hparams.batch_size, num_workers=0, augment=augment,
                                pin_memory=settings.device.startswith("cuda"))
    timer = EpochTimer()
    with quiet_libraries():  # as the search runs its trials
        trainer = make_trainer(hparams.epochs, settings.device, callbacks=[timer], progress_bar=settings.progress_bar)
        module = FinetuneModule(model, task.num_classes, hparams, channels_last=settings.channels_last)
        trainer.fit(module, datamodule=datamodule)
    return timer.rates[1:]


def plain_loop(model: nn.Module, batches, hparams, steps_per_epoch: int, device: str, channels_last: bool
               ) -> list[float]:
    """One plain training loop; ``batches()`` yields (float images on the device, labels) per epoch."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=layout).train()
    optimizer, scheduler = build_optimizer(model, hparams, total_steps=hparams.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hparams.label_smoothing)
    rates = []
    for _ in range(hparams.epochs):
        start, images = time.perf_counter(), 0
        for x, y in batches():
            loss = loss_fn(model(x.contiguous(memory_format=layout)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            images += len(y)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        rates.append(images / (time.perf_counter() - start))
    return rates[1:]


def raw_rates(task, settings: Settings, hparams, augment: AugmentSettings, pixels: np.ndarray,
              channels_last: bool) -> list[float]:
    pl.seed_everything(0, verbose=False)
    device = settings.device
    x_all = torch.from_numpy(pixels).to(device)
    y_all = torch.as_tensor(task.splits["train"].labels, device=device)
    augmenter = BatchAugment(augment, DATA_CONFIG)

    def batches():
        order = torch.randperm(len(y_all), device=device)
        for index in order.split(hparams.batch_size):
            yield augmenter(x_all[index]), y_all[index]

    model = timm.create_model(settings.arch, num_classes=task.num_classes)
    return plain_loop(model, batches, hparams, -(-len(y_all) // hparams.batch_size), device, channels_last)


def pil_rates(task, settings: Settings, hparams, augment: AugmentSettings) -> list[float]:
    pl.seed_everything(0, verbose=False)
    transform = timm.data.create_transform(
        input_size=DATA_CONFIG["input_size"], is_training=True, mean=DATA_CONFIG["mean"], std=DATA_CONFIG["std"],
        interpolation="bilinear", scale=tuple(augment.scale), ratio=tuple(augment.ratio), hflip=augment.hflip)
    paths, labels = task.splits["train"].paths, torch.as_tensor(task.splits["train"].labels)

    def batches():
        order = torch.randperm(len(paths))
        for index in order.split(hparams.batch_size):
            x = torch.stack([transform(load_image(paths[i])) for i in index.tolist()])
            yield x.to(settings.device), labels[index].to(settings.device)

    model = timm.create_model(settings.arch, num_classes=task.num_classes)
    return plain_loop(model, batches, hparams, -(-len(paths) // hparams.batch_size), settings.device,
                      settings.channels_last)


def gpu_utilisation(run) -> tuple[object, float | None]:
    """``run()``'s result and the mean GPU utilisation (%) nvidia-smi saw meanwhile (None without it)."""
    if not shutil.which("nvidia-smi"):
        return run(), None
    sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                "-lms", "200"], stdout=subprocess.PIPE, text=True)
    try:
        result = run()
    finally:
        sampler.terminate()
    samples = [float(line.split(",")[0]) for line in sampler.communicate()[0].split() if line.strip()]
    return result, (statistics.mean(samples) if samples else None)


def main() -> None:
    settings = parse(Settings, __doc__)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    with tempfile.TemporaryDirectory() as cache:
        run = resolve(compose([f"task={settings.task}", f"cache_dir={cache}"]))
        if settings.channels_last is None:
            settings.channels_last = uses_channels_last(timm.create_model(settings.arch), run.finetune.channels_last)
        task = load_task(run.task, cache)
        hparams = dataclasses.replace(run.finetune.default_hparams, epochs=settings.epochs,
                                      batch_size=settings.batch_size, label_smoothing=0.0)
        augment = run.finetune.augment
        start = time.perf_counter()
        datamodule = TaskDataModule(task, DATA_CONFIG, hparams.batch_size, augment=augment)
        pixels = datamodule.pixels("train")
        datamodule.pixels("val")
        decode = time.perf_counter() - start
        start = time.perf_counter()
        datamodule.pixels("train")
        warm = time.perf_counter() - start
        assert np.array_equal(pixels, split_again(task, cache)), "the cache must hold what decoding gives"
        print(f"{settings.arch} on {task.name} ({len(task.splits['train'])} train images, 32 px), batch "
              f"{hparams.batch_size}, {hparams.epochs} epochs x {settings.rounds} rounds, {settings.device}, "
              f"torch threads {torch.get_num_threads()}; augment {dataclasses.asdict(augment)}")
        print(f"decoding train + val once: {decode:.2f} s; reading the cached train split again: {warm * 1e3:.1f} ms")
        rates: dict[str, list[float]] = {"trial": [], "raw tensors": [], "raw NCHW": [], "per-image PIL": []}
        utilisation = []
        for _ in range(settings.rounds):
            trial, used = gpu_utilisation(lambda: trial_rates(task, settings, hparams, augment))
            rates["trial"] += trial
            utilisation += [used] if used is not None else []
            rates["raw tensors"] += raw_rates(task, settings, hparams, augment, pixels, settings.channels_last)
            if settings.channels_last:
                rates["raw NCHW"] += raw_rates(task, settings, hparams, augment, pixels, channels_last=False)
            rates["per-image PIL"] += pil_rates(task, settings, hparams, augment)
    medians = {name: statistics.median(values) for name, values in rates.items() if values}
    trial_median, raw_median, pil_median = medians["trial"], medians["raw tensors"], medians["per-image PIL"]
    print(f"\n{'path':<16} {'img/s (median)':>14}  {'/ raw':>6}")
    for name, value in medians.items():
        print(f"{name:<16} {value:>14.0f}  {value / raw_median:>6.3f}")
    print(f"\ntrial / raw = {trial_median / raw_median:.3f} (goal >= 0.90); trial / per-image PIL = "
          f"{trial_median / pil_median:.2f}x")
    if utilisation:
        print(f"GPU utilisation during the trials: {statistics.mean(utilisation):.0f}%")


def split_again(task, cache: str) -> np.ndarray:
    """The train split decoded without the cache (what the cache must hold)."""
    from automl.images.pixels import split_pixels

    return split_pixels(task.splits["train"].paths, training_config(DATA_CONFIG), fingerprint=task.fingerprint,
                        split="train", cache_dir=None)


if __name__ == "__main__":
    main()
