"""At the size users work: real timm architectures at 224 px on a task of real photographs of mixed sizes.

    python -m benchmarks.speed.realistic [images=2400] [models=[resnet18,...]] [probe=500] [batch_size=32]
                                         [train_batches=6] [repeats=2] [docs=true]

Built once and cached under ``folder``: a task of ``images`` crops (150-600 px, JPEG and PNG, a third of them
grey) of the sample photographs that ship with scikit-image, scikit-learn and matplotlib, one class per
photograph, and a bank of the ``models`` with random weights and 1000-class heads written as local
safetensors (transfer quality is not the point: speed is). Measured in one run, each pair back to back:

* **decode + resize**: the pixel cache's path (decode, any mode to RGB, resize and crop to 224 px; what every
  trial reads) against a plain PIL loop doing the same (``Image.open``, ``convert``, ``resize``, ``crop``);
* **extraction**, per model: the rank stage's ``extract_features`` on the decoded probe images (checkpoint
  load, the model's own resize and crop, normalisation, batched pre-logits and head) against timm's raw
  ``forward_features`` + ``forward_head`` loop over ready normalised tensors of the same batch size
  (goal: >= 90%);
* **training step**, per model: a trial's fit (the cached pixels, batch augmentation, FinetuneModule under
  Lightning) against a plain PyTorch loop on the same uint8 pixels already in memory with the same
  augmentation, optimizer, batch size and precision (goal: >= 90%); images/s of both, epochs after the
  first, validation excluded;
* **time to the first training step** of a fit, with an empty pixel cache (the splits decoded first) and
  with a warm one; the pixel cache's size on disk; the process's peak resident memory.

Writes docs/results/realistic.md.
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import safetensors.torch
import timm
import torch
import yaml
from PIL import Image

from automl.bank import create_model, load_bank, resolve_data_config
from automl.finetune import fit_once
from automl.finetune.augment import BatchAugment
from automl.finetune.data import TaskDataModule
from automl.finetune.fit import quiet_libraries
from automl.finetune.module import FinetuneModule, make_trainer
from automl.images import load_image, load_task, pixel_transform, split_pixels
from automl.rank import extract_features
from automl.settings import BankSettings, FinetuneSettings, Hparams, TaskSettings
from benchmarks._pages import write_page
from benchmarks._script import parse
from benchmarks.speed.extract import paired_ratio, raw_forward, timed
from benchmarks.speed.finetune import EpochTimer, plain_loop

MODELS = ["resnet18", "mobilenetv3_large_100", "efficientnet_b0", "convnext_atto", "vit_tiny_patch16_224"]


@dataclass
class Settings:
    images: int = 2400  # photographs in the task (train/val/test carved 70/15/15)
    models: list[str] = field(default_factory=lambda: list(MODELS))
    probe: int = 500  # images per extraction timing (the rank stage's default probe budget)
    batch_size: int = 32
    train_batches: int = 6  # training batches per timed epoch
    epochs: int = 3  # per training timing; the first (warm-up) is dropped
    repeats: int = 2
    threads: int | None = None  # torch intra-op threads (null: torch's default)
    folder: str = "outputs/cache/bench/realistic"
    docs: bool = True  # write docs/results/realistic.md


# ------------------------------------------------------------------------------------------------ data
def sample_photographs() -> dict[str, np.ndarray]:
    """The real photographs that ship inside scikit-image, scikit-learn and matplotlib, as RGB arrays."""
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {name: getattr(skimage.data, name)() for name in (
        "astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel", "hubble_deep_field",
        "immunohistochemistry", "moon", "retina", "rocket")}
    photos.update(zip(("china", "flower"), load_sample_images().images, strict=True))
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        photos["grace_hopper"] = np.asarray(Image.open(handle).convert("RGB"))
    return {name: np.stack([p] * 3, axis=-1) if p.ndim == 2 else p[..., :3] for name, p in photos.items()}


def build_task(folder: Path, count: int, seed: int = 0) -> Path:
    """``folder/<photograph>/<i>.{jpg,png}``: ``count`` random crops, 150-600 px on their longer side after a
    random rescale, JPEG or PNG, a third of them grey; made once (a ``complete`` file marks it)."""
    done = folder / "complete"
    if done.is_file() and int(done.read_text()) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    photos = sample_photographs()
    names = sorted(photos)
    for index in range(count):
        name = names[index % len(names)]
        photo = photos[name]
        height, width = photo.shape[:2]
        side = int(rng.integers(min(height, width) // 3, min(height, width) + 1))  # a square-ish region
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        crop = Image.fromarray(photo[top:top + side, left:left + min(width - left, int(side * rng.uniform(0.75, 1.33)))])
        shorter = int(rng.integers(150, 451))  # then both sides within 150-600 px
        scale = min(shorter / min(crop.size), 600 / max(crop.size))
        crop = crop.resize((max(150, round(crop.size[0] * scale)), max(150, round(crop.size[1] * scale))),
                           Image.BICUBIC)
        if rng.random() < 1 / 3:
            crop = crop.convert("L")
        path = folder / name / f"{index:05d}.{'jpg' if rng.random() < 0.5 else 'png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        crop.save(path, quality=90) if path.suffix == ".jpg" else crop.save(path)
    done.write_text(str(count))
    return folder


def build_bank(folder: Path, models: list[str]) -> Path:
    """``folder/bank.yaml`` and one safetensors checkpoint per model: random weights, 1000-class heads."""
    entries = []
    for seed, arch in enumerate(models):
        path = folder / f"{arch}.safetensors"
        if not path.is_file():
            torch.manual_seed(seed)
            folder.mkdir(parents=True, exist_ok=True)
            safetensors.torch.save_file(timm.create_model(arch, num_classes=1000).state_dict(), str(path))
        entries.append({"name": arch, "arch": arch, "weights": path.name, "num_classes": 1000,
                        "source": {"name": "random", "num_images": 0, "num_classes": 1000}})
    (folder / "bank.yaml").write_text(yaml.safe_dump({"name": "realistic", "models": entries}))
    return folder


# ---------------------------------------------------------------------------------------- measurements
def decode_rates(paths: list[Path], config: dict, repeats: int) -> tuple[float, float, float]:
    """Images/s of automl's decode + resize + crop (no cache) and of a plain PIL loop doing the same, and
    their paired ratio."""
    _, height, width = config["input_size"]
    short = int(height / config["crop_pct"])

    def plain() -> None:
        for path in paths:
            with Image.open(path) as image:
                image = image.convert("RGB")
                scale = short / min(image.size)
                image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BICUBIC)
                left, top = (image.size[0] - width) // 2, (image.size[1] - height) // 2
                np.asarray(image.crop((left, top, left + width, top + height)))

    ours, theirs = [], []
    for _ in range(repeats):  # alternating, so that load from other processes hits both alike
        ours.append(timed(lambda: split_pixels(paths, config, fingerprint="", split="bench", cache_dir=None)))
        theirs.append(timed(plain))
    return len(paths) / statistics.median(ours), len(paths) / statistics.median(theirs), paired_ratio(theirs, ours)


def extraction(entry, images: list[Image.Image], labels: np.ndarray, batch_size: int, repeats: int
               ) -> tuple[float, float, float]:
    """Images/s of the rank stage's extraction and of timm's raw loop on ready tensors, and their paired
    ratio (median of back-to-back runs)."""
    model = create_model(entry).eval()
    config = resolve_data_config(entry, model)
    ready = pixel_transform(config)(images).float().div(255)
    mean, std = torch.tensor(config["mean"]).view(1, 3, 1, 1), torch.tensor(config["std"]).view(1, 3, 1, 1)
    batches = list(((ready - mean) / std).split(batch_size))
    ours, raw = [], []
    for _ in range(repeats):
        ours.append(timed(lambda: extract_features(entry, images, labels, batch_size=batch_size)))
        raw.append(timed(lambda: raw_forward(model, batches)))
    return len(images) / statistics.median(ours), len(images) / statistics.median(raw), paired_ratio(raw, ours)


def training(entry, task, settings: Settings, finetune: FinetuneSettings) -> tuple[float, float]:
    """Images/s of a trial's training (its epochs after the first, validation excluded) and of the plain
    loop on the same pixels, augmentation, optimizer, batch size and precision."""
    hparams = Hparams(batch_size=settings.batch_size, epochs=settings.epochs)
    pl.seed_everything(0, verbose=False)
    model = create_model(entry, num_classes=task.num_classes)
    config = resolve_data_config(entry, model)
    datamodule = TaskDataModule(task, config, hparams.batch_size, num_workers=0, augment=finetune.augment)
    timer = EpochTimer()
    with quiet_libraries():
        trainer = make_trainer(hparams.epochs, "cpu", callbacks=[timer], progress_bar=False,
                               limit_train_batches=settings.train_batches, validate=False)
        module = FinetuneModule(model, task.num_classes, hparams, channels_last=finetune.channels_last)
        trainer.fit(module, datamodule=datamodule)
    pixels = torch.from_numpy(np.asarray(datamodule.pixels("train")[: settings.train_batches * hparams.batch_size]))
    labels = torch.as_tensor(task.splits["train"].labels[: len(pixels)])
    augment = BatchAugment(finetune.augment, config)  # as TaskDataModule builds it

    def batches():
        for index in torch.randperm(len(labels)).split(hparams.batch_size):
            yield augment(pixels[index]), labels[index]

    pl.seed_everything(0, verbose=False)
    raw = plain_loop(create_model(entry, num_classes=task.num_classes), batches, hparams, settings.train_batches,
                     "cpu", module.channels_last)  # the layout the trial chose
    return statistics.median(timer.rates[1:]), statistics.median(raw)


def first_step_seconds(entry, task, finetune: FinetuneSettings, batch_size: int) -> float:
    """Seconds from calling ``fit_once`` to the end of its first training step."""
    class FirstStepDone(Exception):
        pass

    class FirstStep(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            raise FirstStepDone

    start = time.perf_counter()
    with contextlib.suppress(FirstStepDone):
        fit_once(entry, task, Hparams(batch_size=batch_size, epochs=1), finetune, callbacks=[FirstStep()],
                 progress_bar=False)
    return time.perf_counter() - start


def folder_megabytes(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6


def main() -> None:
    settings = parse(Settings, __doc__)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    root = Path(settings.folder)
    photos = build_task(root / f"photos-{settings.images}", settings.images)
    bank = load_bank(BankSettings(name="realistic", dir=str(build_bank(root / "bank", settings.models))), root)
    cache = root / "cache"
    shutil.rmtree(cache / "pixels", ignore_errors=True)
    task = load_task(TaskSettings(root=str(photos)), cache)
    finetune = FinetuneSettings(progress_bar=False, num_workers=0)
    train = task.splits["train"]
    sizes = [min(Image.open(p).size) for p in train.paths[:400]]
    lines = [f"Task: {len(train)} train / {len(task.splits['val'])} val / {len(task.splits['test'])} test "
             f"photographs, {task.num_classes} classes, shorter side {min(sizes)}-{max(sizes)} px (median "
             f"{int(np.median(sizes))}); batch size {settings.batch_size}; torch threads {torch.get_num_threads()}; "
             "fp32 on the CPU."]

    entries = list(bank)
    first_config = resolve_data_config(entries[0], create_model(entries[0]))
    ours, plain, ratio = decode_rates(list(train.paths[:200]), first_config, settings.repeats)
    rows = [["decode + resize to 224 (images/s)", f"{ours:.0f}", f"{plain:.0f}", f"{ratio:.2f}"]]

    probe = list(train.paths[: settings.probe])
    images = [load_image(path) for path in probe]
    labels = np.asarray(train.labels[: settings.probe], dtype=np.int64)
    cold = first_step_seconds(entries[0], task, finetune, settings.batch_size)
    warm = first_step_seconds(entries[0], task, finetune, settings.batch_size)
    for entry in entries:
        ext_ours, ext_raw, ratio = extraction(entry, images, labels, settings.batch_size, settings.repeats)
        rows.append([f"{entry.arch}: extraction (images/s)", f"{ext_ours:.1f}", f"{ext_raw:.1f}", f"{ratio:.2f}"])
        trial, raw = training(entry, task, settings, finetune)
        rows.append([f"{entry.arch}: training step (images/s)", f"{trial:.1f}", f"{raw:.1f}", f"{trial / raw:.2f}"])
        print(rows[-2], rows[-1], flush=True)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = "\n".join(["| what | automl | plain loop | ratio |", "|---|---:|---:|---:|",
                       *(f"| {' | '.join(row)} |" for row in rows)])
    extra = (f"- time to the first training step of a fit ({entries[0].arch}): {cold:.1f} s with an empty pixel "
             f"cache (train, val and test decoded first), {warm:.1f} s with a warm one\n"
             f"- pixel cache on disk: {folder_megabytes(cache / 'pixels'):.0f} MB for {len(train) + len(task.splits['val']) + len(task.splits['test'])} "
             f"images at 224 px\n- peak resident memory of this process: {peak:.0f} MB")
    body = "\n\n".join([*lines, table, extra])
    print(body)
    if settings.docs:
        print(write_page("realistic", "At the size users work: 224-pixel models on real photographs", body))


if __name__ == "__main__":
    main()
