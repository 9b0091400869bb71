"""The GPU check: automl's training and extraction paths on a GPU against timm's own loops and published figures.

    python -m benchmarks.speed.gpu       # on a CUDA machine (5-6 minutes expected on one H100); docs/results/gpu-check.md
    python -m benchmarks.speed.gpu device=cpu models=[resnet18] image_size=32 batch_size=16 steps=5 images=64 \
        extract_images=64 e2e_trials=1 e2e_epochs=1 docs=false       # its CPU mode (the tests run a smaller one)

Everything is generated here, offline: the ``models`` with random weights (1000-class heads, written as a local
safetensors bank) and a task of ``images`` training JPEGs (4 classes: noise over a colour, and a square, a little
larger than ``image_size``). For each model, measured one after the other on the same device:

* **trial** — a trial's training steps through automl's own fit path (TaskDataModule's cached uint8 pixels,
  pinned and copied non-blocking, augmented on the device; FinetuneModule; make_trainer at
  ``finetune.precision=auto`` and ``finetune.channels_last=auto``), images/s over ``steps`` steps after
  ``warmup``, the device synchronised at both ends; validation left out;
* **timm loop** — timm's plain AMP training loop (``benchmark.py --bench train``: one ready batch on the device,
  autocast at the same precision, the same layout, AdamW, loss scaling for fp16) at the same batch size;
* the trial / timm ratio (goal >= 0.90), mean GPU utilisation during each (``torch.cuda.utilization`` with
  pynvml, else nvidia-smi, else n/a) and peak memory (``torch.cuda.max_memory_allocated``);
* **extraction** — the rank stage's ``extract_features`` over ``extract_images`` decoded images (checkpoint load,
  the model's resize and crop on the CPU, batched forward) against a raw ``forward_features`` +
  ``forward_head(pre_logits=True)`` loop over ready tensors on the device (goal >= 0.90);

then a short end-to-end ``python -m automl`` on the task with the whole bank (``e2e_trials`` trials of
``e2e_epochs`` epochs, refit, report) and its time per stage. Printed next to the anchors: timm's published RTX
3090 AMP training throughput (channels-last, img/s) and NVIDIA's A100 ResNet-50 AMP figure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import safetensors.torch
import timm
import torch
import yaml
from PIL import Image
from timm.optim import create_optimizer_v2
from torch import nn

from automl.bank import create_model, load_bank, resolve_data_config
from automl.finetune.data import TaskDataModule
from automl.finetune.fit import quiet_libraries
from automl.finetune.module import FinetuneModule, make_trainer, precision_for
from automl.images import load_image, load_task, normalize, pixel_transform
from automl.rank import extract_features
from automl.settings import BankSettings, FinetuneSettings, TaskSettings
from benchmarks._pages import write_page
from benchmarks._script import parse
from benchmarks.speed.extract import raw_forward
from benchmarks.speed.finetune import gpu_utilisation

# timm's published training throughput, RTX 3090, AMP, channels-last (img/s); NVIDIA's A100 ResNet-50 AMP
TIMM_RTX3090 = {"resnet50": 1218, "convnext_tiny": 819, "vit_small_patch16_224": 1058, "efficientnet_b0": 1752,
                "resnet18": 3482}
NVIDIA_A100_RESNET50 = 2470
CLASSES = 4
CPU_MODE = ("device=cpu models=[resnet18] image_size=32 batch_size=16 steps=5 images=64 extract_images=64 e2e_trials=1 "
            "e2e_epochs=1 docs=false")


@dataclass
class Settings:
    device: str = "cuda"
    models: list[str] = field(default_factory=lambda: ["resnet50", "convnext_tiny", "vit_small_patch16_224"])
    image_size: int = 224
    batch_size: int = 256  # the default batch size of timm's benchmark.py, which measured the anchors
    warmup: int = 5  # training steps before the timing starts (cuDNN autotuning, the allocator)
    steps: int = 30  # timed training steps
    images: int = 2048  # training images of the generated task (a trial's epochs cycle over them)
    extract_images: int = 1024  # images the extraction runs over
    end_to_end: bool = True
    e2e_trials: int = 3
    e2e_epochs: int = 3
    folder: str | None = None  # the generated task, bank and run (null: a temporary folder)
    docs: bool = True  # write docs/results/gpu-check.md


@dataclass
class Measured:
    """One model's figures (rates in images/s; memory in GiB; utilisation in percent, None: not measured)."""

    model: str
    layout: str
    precision: str
    trial: float
    timm: float
    trial_util: float | None
    timm_util: float | None
    trial_gib: float | None
    timm_gib: float | None
    extraction: float
    raw_forward: float


def main() -> None:
    settings = parse(Settings, __doc__)
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"the GPU check needs a CUDA GPU, and torch {torch.__version__} sees none here (CUDA build "
                         f"{torch.version.cuda or 'none'}); its CPU mode: python -m benchmarks.speed.gpu {CPU_MODE}")
    with contextlib.ExitStack() as stack:
        folder = Path(settings.folder or stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu-check-")))
        start = time.perf_counter()
        task_root = write_task(folder / "task", settings)
        bank_dir = write_bank(folder / "bank", settings.models)
        print(f"{describe(settings)}\ngenerated {settings.images} training images and {len(settings.models)} models "
              f"in {time.perf_counter() - start:.0f} s")
        task = load_task(TaskSettings(name="gpu-check", root=str(task_root), image_size=settings.image_size),
                         folder / "cache")
        bank = load_bank(BankSettings(name="gpu-check", dir=str(bank_dir)), folder / "cache")
        measured = []
        for entry in bank:
            measured.append(measure(entry, task, settings))
            print(row(measured[-1]))
        e2e = end_to_end(folder, task_root, bank_dir, settings) if settings.end_to_end else None
    page = report(settings, measured, e2e)
    print(f"\n{page}")
    if settings.docs:
        print(f"written: {write_page('gpu-check', 'The GPU check', page)}")


def describe(settings: Settings) -> str:
    device = torch.cuda.get_device_name(settings.device) if settings.device.startswith("cuda") else "CPU"
    return (f"{device}: {settings.image_size} px, batch {settings.batch_size}, {settings.steps} steps after "
            f"{settings.warmup}, precision {precision_for(settings.device)}; torch {torch.__version__}, "
            f"timm {timm.__version__}, {torch.get_num_threads()} torch threads")


# ---------------------------------------------------------------------------------------------- inputs
def write_task(root: Path, settings: Settings) -> Path:
    """``root/{train,val,test}/<class>/<i>.jpg``: noise over a colour and a bright square per class, a little
    larger than ``image_size``; train holds ``images`` images, val and test a batch's worth each."""
    rng = np.random.default_rng(0)
    side = round(settings.image_size * 8 / 7)
    counts = {"train": settings.images, "val": settings.batch_size, "test": settings.batch_size}
    for split, count in counts.items():
        for i in range(count):
            label = i % CLASSES
            pixels = rng.normal(60 + 40 * label, 30, size=(side, side, 3))
            corner = (side // 4) * (1 + label % 2)
            pixels[corner : corner + side // 3, corner : corner + side // 3, label % 3] += 120
            path = root / split / f"class{label}" / f"{i:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return root


def write_bank(folder: Path, models: list[str]) -> Path:
    """A bank of ``models`` with random weights and 1000-class heads: ``folder/<arch>.safetensors`` + ``bank.yaml``."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for seed, arch in enumerate(models):
        torch.manual_seed(seed)
        safetensors.torch.save_file(timm.create_model(arch, num_classes=1000).state_dict(),
                                    str(folder / f"{arch}.safetensors"))
        entries.append({"name": arch, "arch": arch, "weights": f"{arch}.safetensors", "num_classes": 1000,
                        "source": {"name": "random", "num_images": 0, "num_classes": 1000}})
    (folder / "bank.yaml").write_text(yaml.safe_dump({"name": "gpu-check", "models": entries}))
    return folder


# ------------------------------------------------------------------------------------------- training
class StepTimer(pl.Callback):
    """Images/s of training steps ``warmup`` .. ``warmup + steps - 1``, the device synchronised at both ends;
    stops the fit after them."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps = warmup, steps
        self.images, self.start, self.rate = 0, 0.0, math.nan

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            synchronize(module.device)
            self.start = time.perf_counter()
        if trainer.global_step >= self.warmup:
            self.images += len(batch[1])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == self.warmup + self.steps:
            synchronize(module.device)
            self.rate = self.images / (time.perf_counter() - self.start)
            trainer.should_stop = True


def trial_rate(entry, task, settings: Settings) -> tuple[float, str, str]:
    """Images/s of a trial's training steps, its layout and its precision."""
    pl.seed_everything(0, verbose=False)
    model = create_model(entry, num_classes=task.num_classes)
    data_config = resolve_data_config(entry, model, image_size=task.image_size)
    defaults = FinetuneSettings()
    datamodule = TaskDataModule(task, data_config, settings.batch_size, augment=defaults.augment,
                                pin_memory=settings.device.startswith("cuda"))
    per_epoch = math.ceil(len(task.splits["train"]) / settings.batch_size)
    hparams = dataclasses.replace(defaults.default_hparams, batch_size=settings.batch_size,
                                  epochs=math.ceil((settings.warmup + settings.steps) / per_epoch))
    module = FinetuneModule(model, task.num_classes, hparams, channels_last=defaults.channels_last)
    timer = StepTimer(settings.warmup, settings.steps)
    with quiet_libraries():
        trainer = make_trainer(hparams.epochs, settings.device, precision=defaults.precision, callbacks=[timer],
                               progress_bar=False, validate=False)
        trainer.fit(module, datamodule=datamodule)
    return timer.rate, "NHWC" if module.channels_last else "NCHW", str(trainer.precision)


def timm_rate(arch: str, num_classes: int, settings: Settings, precision: str, channels_last: bool) -> float:
    """Images/s of timm's plain AMP training loop on one ready batch (its ``benchmark.py --bench train``)."""
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True  # as timm's train.py
    device = torch.device(settings.device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = timm.create_model(arch, num_classes=num_classes).to(device, memory_format=layout).train()
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05)
    half = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=half == torch.float16)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(settings.batch_size, 3, settings.image_size, settings.image_size, device=device)
    x = x.contiguous(memory_format=layout)
    y = torch.randint(0, num_classes, (settings.batch_size,), device=device)
    for step in range(settings.warmup + settings.steps):
        if step == settings.warmup:
            synchronize(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=half or torch.float32, enabled=half is not None):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    synchronize(device)
    return settings.steps * settings.batch_size / (time.perf_counter() - start)


# ----------------------------------------------------------------------------------------- extraction
def extraction_rates(entry, task, settings: Settings) -> tuple[float, float]:
    """Images/s of the rank stage's extraction and of a raw forward loop on ready tensors on the device (the
    faster of two runs each: the first pays cuDNN's autotuning)."""
    paths = (task.splits["train"].paths * math.ceil(settings.extract_images / len(task.splits["train"])))
    images = [load_image(path) for path in paths[: settings.extract_images]]
    labels = np.arange(len(images)) % task.num_classes
    model = create_model(entry).eval().to(settings.device)
    config = resolve_data_config(entry, model, image_size=task.image_size)
    transform = pixel_transform(config)
    batches = [normalize(transform(images[i : i + settings.batch_size]).to(settings.device), config)
               for i in range(0, len(images), settings.batch_size)]

    def pipeline() -> None:
        extract_features(entry, images, labels, image_size=task.image_size, batch_size=settings.batch_size,
                         device=settings.device)

    def raw() -> None:
        raw_forward(model, batches)
        synchronize(torch.device(settings.device))

    return tuple(len(images) / min(timed(run) for _ in range(2)) for run in (pipeline, raw))


# -------------------------------------------------------------------------------------------- a model
def measure(entry, task, settings: Settings) -> Measured:
    (trial, layout, precision), trial_util, trial_gib = on_device(lambda: trial_rate(entry, task, settings),
                                                                  settings.device)
    timm_loop, timm_util, timm_gib = on_device(lambda: timm_rate(entry.arch, task.num_classes, settings, precision,
                                                                 layout == "NHWC"), settings.device)
    extraction, raw = extraction_rates(entry, task, settings)
    return Measured(entry.arch, layout, precision, trial, timm_loop, trial_util, timm_util, trial_gib, timm_gib,
                    extraction, raw)


def on_device(run: Callable, device: str):
    """``run()``'s result, the mean GPU utilisation meanwhile and its peak memory in GiB (None, None on a CPU)."""
    if not device.startswith("cuda"):
        return run(), None, None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    result, utilisation = utilisation_during(run)
    return result, utilisation, torch.cuda.max_memory_allocated(device) / 2**30


def utilisation_during(run: Callable):
    """``run()``'s result and the mean GPU utilisation (%) meanwhile: ``torch.cuda.utilization()`` sampled every
    0.2 s when pynvml is there, else nvidia-smi's samples (None without either)."""
    if importlib.util.find_spec("pynvml") is None:
        return gpu_utilisation(run)
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            samples.append(torch.cuda.utilization())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run()
    finally:
        stop.set()
        sampler.join()
    return result, statistics.mean(samples) if samples else None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------------- end to end
def end_to_end(folder: Path, task_root: Path, bank_dir: Path, settings: Settings) -> dict:
    """``python -m automl`` on the generated task with the whole bank: its exit status, wall time, the seconds of
    each stage, the trials counted and the exported model's test accuracy."""
    run_dir = folder / "run"
    epochs = settings.e2e_epochs
    args = [f"task.root={task_root}", "task.name=gpu-check", f"task.image_size={settings.image_size}",
            f"bank.dir={bank_dir}", "bank.build=null", f"device={settings.device}", f"cache_dir={folder / 'cache'}",
            f"storage=sqlite:///{folder / 'automl.db'}", f"finetune.artifacts_dir={folder / 'artifacts'}",
            f"hydra.run.dir={run_dir}", f"finetune.n_trials={settings.e2e_trials}",
            f"finetune.top_k={len(settings.models)}", f"finetune.max_epochs={epochs}",
            f"finetune.default_hparams.epochs={epochs}", f"finetune.first_rung={max(2, epochs)}",
            f"finetune.default_hparams.batch_size={settings.batch_size}", "finetune.progress_bar=false",
            f"probe.budget={min(500, settings.images)}"]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "automl", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
    record = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    best = run_dir / "best" / "config.json"
    rows = (run_dir / "finetune.csv").read_text().splitlines()[1:] if (run_dir / "finetune.csv").is_file() else []
    return {"status": done.returncode, "seconds": seconds, "stages": record.get("stage_seconds", {}),
            "trials": len(rows), "test_accuracy": json.loads(best.read_text())["test_accuracy"] if best.is_file() else None}


# --------------------------------------------------------------------------------------------- report
def row(m: Measured) -> str:
    return (f"{m.model}: trial {m.trial:,.0f} img/s, timm loop {m.timm:,.0f} img/s ({m.trial / m.timm:.2f}); "
            f"extraction {m.extraction:,.0f} img/s, raw forward {m.raw_forward:,.0f} ({m.extraction / m.raw_forward:.2f})")


def report(settings: Settings, measured: list[Measured], e2e: dict | None) -> str:
    """The page: the command's settings, one table of training, one of extraction, the anchors, the run."""
    def cell(value: float | None, spec: str = ".0f") -> str:
        return "n/a" if value is None else format(value, spec)

    lines = [describe(settings), "",
             "| model | layout | precision | trial img/s | timm loop img/s | trial / timm | GPU util trial / timm % "
             "| peak GiB trial / timm | timm RTX 3090 AMP img/s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for m in measured:
        lines.append(f"| {m.model} | {m.layout} | {m.precision} | {m.trial:,.0f} | {m.timm:,.0f} | {m.trial / m.timm:.2f} "
                     f"| {cell(m.trial_util)} / {cell(m.timm_util)} | {cell(m.trial_gib, '.1f')} / "
                     f"{cell(m.timm_gib, '.1f')} | {TIMM_RTX3090.get(m.model, '—')} |")
    lines += ["", f"Anchors: timm's RTX 3090 AMP channels-last training figures above; NVIDIA's A100 ResNet-50 AMP "
              f"training: {NVIDIA_A100_RESNET50} img/s. Goal for trial / timm: >= 0.90.", "",
              f"| model | extraction img/s ({settings.extract_images} images) | raw forward img/s | extraction / raw |",
              "|---|---:|---:|---:|"]
    lines += [f"| {m.model} | {m.extraction:,.0f} | {m.raw_forward:,.0f} | {m.extraction / m.raw_forward:.2f} |"
              for m in measured]
    if e2e is not None:
        stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in e2e["stages"].items())
        accuracy = "n/a" if e2e["test_accuracy"] is None else f"{e2e['test_accuracy']:.1f}%"
        lines += ["", f"End to end (`python -m automl`, {len(settings.models)} models, {settings.images} training "
                  f"images, {settings.e2e_trials} trials of {settings.e2e_epochs} epochs, refit, report): exit status "
                  f"{e2e['status']}, {e2e['seconds']:.0f} s ({stages}); {e2e['trials']} trials in finetune.csv, "
                  f"exported model's test accuracy {accuracy} (random weights: speed, not accuracy, is the point)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
