"""Synthetic banks: tiny timm models pretrained from scratch on the offline synthetic *source* datasets.

A bank is a plan of :class:`Pretraining` specs (architecture, source, epochs, and the ways a checkpoint can
be worse than it looks: few epochs, noisy labels, a fraction of the data, no training at all, no head).
:func:`build_bank` is seeded and deterministic, resumable (a finished ``<name>.safetensors`` whose recipe
matches is kept), and atomic (temp file + rename; ``bank.yaml`` is written last). A checkpoint keeps its
source-class head unless it is headless; its safetensors metadata records the held-out source accuracy.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import timm
import torch
import torch.nn.functional as F
import yaml
from rich.console import Console
from rich.table import Table
from sklearn.model_selection import train_test_split

from automl._fileio import atomic_path, atomic_write_text
from automl._progress import progress_bar
from automl.bank.manifest import MANIFEST, read_bank
from automl.bank.weights import file_sha256
from automl.images import synthetic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Arch:
    arch: str  # timm architecture
    kwargs: dict[str, Any]  # extra timm.create_model kwargs, written to the manifest
    lr: float  # peak AdamW learning rate


# timm's tiny test models: BatchNorm (resnet, efficientnet), normalizer-free (nfnet), LayerNorm (convnext,
# mambaout), BatchNorm/SE hybrids (byobnet) and transformers (vit, vit2, at a lower learning rate as usual);
# the meta-benchmark's ``fresh`` bank adds GroupNorm (effnet_gn), another ConvNeXt, a conv-attention hybrid
# (coatnet) and relative-position attention (vit_relpos), and its ``blind`` bank LayerNorm and EvoNorm
# efficientnets, another ConvNeXt and another vit; its ``mobile`` bank four real mobile families rather than
# test models (LCNet, MobileNetV3, EdgeNeXt, LeViT). LayerNorm ConvNeXts need ~3x the epochs of the
# BatchNorm families to leave chance level from scratch.
ARCHS: dict[str, _Arch] = {
    "resnet": _Arch("test_resnet", {}, 5e-3),
    "effnet": _Arch("test_efficientnet", {}, 5e-3),
    "nfnet": _Arch("test_nfnet", {}, 5e-3),
    "vit": _Arch("test_vit", {"img_size": 32, "patch_size": 8}, 3e-3),  # 4x4 tokens; patch 4 costs 4x the time
    "convnext": _Arch("test_convnext", {}, 5e-3),
    "byobnet": _Arch("test_byobnet", {}, 5e-3),
    "mambaout": _Arch("test_mambaout", {}, 5e-3),
    "vit2": _Arch("test_vit2", {"img_size": 32, "patch_size": 8}, 3e-3),
    "effnet_gn": _Arch("test_efficientnet_gn", {}, 5e-3),
    "convnext3": _Arch("test_convnext3", {}, 5e-3),
    "coatnet": _Arch("test_coatnet", {"img_size": 32}, 3e-3),
    "vit_relpos": _Arch("test_vit_relpos", {"img_size": 32, "patch_size": 8}, 3e-3),
    "effnet_ln": _Arch("test_efficientnet_ln", {}, 5e-3),
    "effnet_evos": _Arch("test_efficientnet_evos", {}, 5e-3),
    "convnext2": _Arch("test_convnext2", {}, 5e-3),
    "vit3": _Arch("test_vit3", {"img_size": 32, "patch_size": 8}, 3e-3),
    "lcnet": _Arch("lcnet_035", {}, 5e-3),
    "mobilenet": _Arch("mobilenetv3_small_050", {}, 5e-3),
    "edgenext": _Arch("edgenext_xx_small", {}, 5e-3),
    "levit": _Arch("levit_128s", {"img_size": 32}, 3e-3),
}
IMAGE_SIZE = synthetic.SIZE  # pixels: the models' input is the synthetic sources' own size
HOLDOUT = 0.2  # fraction of each source kept out of pretraining to measure its accuracy
EPOCHS = 20
BATCH_SIZE = 128
WEIGHT_DECAY = 0.05
LABEL_SMOOTHING = 0.1
PAD = 4  # random-translation augmentation: pad by PAD pixels, crop back to IMAGE_SIZE
_METADATA_KEY = "automl_demo_bank"  # safetensors metadata: the recipe and the source results


@dataclass(frozen=True)
class Pretraining:
    """One checkpoint of a synthetic bank: architecture ``arch`` (a key of :data:`ARCHS`) pretrained on
    the synthetic source ``source``."""

    name: str
    arch: str
    source: str
    epochs: int = EPOCHS  # 0: untrained, the random initialisation is saved
    label_noise: float = 0.0  # fraction of training labels replaced by uniformly random ones
    data_fraction: float = 1.0  # fraction of the source's training images used (stratified)
    headless: bool = False  # saved without its classifier: num_classes 0, no source probabilities

    def check(self) -> None:
        if self.arch not in ARCHS or self.source not in synthetic.available("source"):
            raise ValueError(f"{self.name}: unknown arch {self.arch!r} or source {self.source!r} (archs: "
                             f"{list(ARCHS)}, sources: {synthetic.available('source')})")
        if self.epochs < 0 or not 0 <= self.label_noise < 1 or not 0 < self.data_fraction <= 1:
            raise ValueError(f"{self.name}: epochs >= 0, label_noise in [0, 1) and data_fraction in (0, 1] needed")


@dataclass(frozen=True)
class _SourceData:
    """A source dataset as normalised tensors: x [N, 3, 32, 32] float32, y [N] int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]  # per channel, 0..1 pixel units, as written to the manifest
    std: tuple[float, ...]


def build_bank(out_dir: str | Path, bank_name: str, plan: Sequence[Pretraining], seed: int = 0, *,
               command: str = "") -> Path:
    """Build (or finish building) the bank ``plan`` describes in ``out_dir``; return its ``bank.yaml``.

    ``command`` is how to rebuild it, written in the manifest's header.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not plan or len({spec.name for spec in plan}) != len(plan):
        raise ValueError(f"bank {bank_name}: the plan must be non-empty with distinct names")
    for spec in plan:
        spec.check()
    data_by_source: dict[tuple[str, float], _SourceData] = {}
    results: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}  # training time of the models built in this call
    start = time.perf_counter()
    with progress_bar() as progress:
        bar = progress.add_task(f"bank {bank_name}", total=sum(max(1, spec.epochs) for spec in plan))
        for spec in plan:
            path = out_dir / f"{spec.name}.safetensors"
            recipe = _recipe(spec, seed)
            results[spec.name] = _finished(path, recipe)
            if results[spec.name] is not None:
                log.info("bank %s: %s already built", bank_name, spec.name)
                progress.advance(bar, max(1, spec.epochs))
                continue
            key = (spec.source, spec.data_fraction)
            if key not in data_by_source:
                data_by_source[key] = _load_source(spec.source, seed, spec.data_fraction)
            progress.update(bar, description=f"bank {bank_name}: {spec.name}")
            data, tick = data_by_source[key], time.perf_counter()
            model, accuracy = _pretrain(spec, data, _model_seed(spec.name, seed), on_epoch=lambda: progress.advance(bar))
            if spec.epochs == 0:
                progress.advance(bar)
            seconds[spec.name] = time.perf_counter() - tick
            results[spec.name] = {"accuracy": accuracy, "num_images": len(data.y_train),
                                  "num_classes": data.num_classes, "mean": data.mean, "std": data.std}
            if spec.headless:
                model.reset_classifier(0)
            _save(model, path, recipe, results[spec.name])
            log.info("bank %s: %s pretrained in %.1fs, held-out %s accuracy %.1f%%", bank_name, spec.name,
                     seconds[spec.name], spec.source, accuracy)
    manifest = _write_manifest(out_dir, bank_name, plan, results, command)
    read_bank(None, None, out_dir)  # the manifest must pass the same validation users get
    _print_table(bank_name, plan, results, seconds, time.perf_counter() - start)
    return manifest


def _recipe(spec: Pretraining, seed: int) -> str:
    """Everything that determines a checkpoint; a stored file with a different recipe is rebuilt."""
    arch = ARCHS[spec.arch]
    recipe = {"arch": arch.arch, "kwargs": arch.kwargs, "source": spec.source, "seed": seed, "epochs": spec.epochs,
              "batch_size": BATCH_SIZE, "lr": arch.lr, "weight_decay": WEIGHT_DECAY,
              "label_smoothing": LABEL_SMOOTHING, "pad": PAD, "holdout": HOLDOUT, "timm": timm.__version__}
    # Only the departures from a plain pretraining are recorded: plain checkpoints keep their recipe.
    defaults = Pretraining(spec.name, spec.arch, spec.source, spec.epochs)
    for name in ("label_noise", "data_fraction", "headless"):
        if getattr(spec, name) != getattr(defaults, name):
            recipe[name] = getattr(spec, name)
    return json.dumps(recipe, sort_keys=True)


def _model_seed(name: str, seed: int) -> int:
    return zlib.crc32(f"{name}:{seed}".encode())  # stable across runs and independent of build order


def pretraining_result(path: Path) -> dict[str, Any]:
    """What the build measured of the checkpoint at ``path``: held-out source ``accuracy`` (%),
    ``num_images``, ``num_classes``, ``mean``, ``std`` (its safetensors metadata)."""
    with safetensors.safe_open(str(path), framework="pt") as file:
        return json.loads((file.metadata() or {})[_METADATA_KEY])["result"]


def _finished(path: Path, recipe: str) -> dict[str, Any] | None:
    """The stored result if ``path`` is a complete checkpoint built with ``recipe``, else None."""
    if not path.is_file():
        return None
    try:
        with safetensors.safe_open(str(path), framework="pt") as file:
            stored = json.loads((file.metadata() or {}).get(_METADATA_KEY, "{}"))
    except Exception as exc:  # an unreadable file is rebuilt, not fatal
        log.warning("demo bank: %s is unreadable (%s); rebuilding it", path, exc)
        return None
    return stored["result"] if stored.get("recipe") == recipe else None


def _load_source(name: str, seed: int, fraction: float = 1.0) -> _SourceData:
    """Generate source ``name``, split off a stratified held-out set, keep ``fraction`` of the rest
    (stratified) and normalise with its statistics."""
    data = synthetic.generate(name, seed)
    pixels = np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in data.images])
    if pixels.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"source {name}: expected {IMAGE_SIZE}x{IMAGE_SIZE} images, got {pixels.shape[1:3]}")
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255)
    y = torch.from_numpy(data.labels)
    train, test = train_test_split(np.arange(len(y)), test_size=HOLDOUT, stratify=data.labels, random_state=seed)
    if fraction < 1:
        train = train_test_split(train, train_size=fraction, stratify=data.labels[train], random_state=seed)[0]
    train, test = torch.from_numpy(train), torch.from_numpy(test)
    # Rounded first, so the manifest's mean/std are exactly the ones the model was trained with.
    mean = tuple(round(float(v), 4) for v in x[train].mean(dim=(0, 2, 3)))
    std = tuple(round(float(v), 4) for v in x[train].std(dim=(0, 2, 3)))
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return _SourceData(name, x[train], y[train], x[test], y[test], len(data.classes), mean, std)


def _random_translate(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image [B, C, H, W] by up to PAD pixels (reflect padding, then a random crop).

    No flips: mirrored textures (diagonal vs anti-diagonal stripes) and letters are different classes.
    """
    height, width = x.shape[-2:]
    padded = F.pad(x, (PAD, PAD, PAD, PAD), mode="reflect")
    dy, dx = torch.randint(0, 2 * PAD + 1, (2, len(x)), generator=generator).tolist()
    return torch.stack([padded[i, :, a : a + height, b : b + width] for i, (a, b) in enumerate(zip(dy, dx, strict=True))])


def _pretrain(spec: Pretraining, data: _SourceData, seed: int, on_epoch) -> tuple[torch.nn.Module, float]:
    """AdamW + one-cycle cosine schedule on the source (labels noised as the spec says); returns the model
    and its held-out accuracy (%)."""
    arch = ARCHS[spec.arch]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = timm.create_model(arch.arch, num_classes=data.num_classes, **arch.kwargs)
    labels = data.y_train
    if spec.label_noise > 0:
        noisy = torch.rand(len(labels), generator=generator) < spec.label_noise
        labels = torch.where(noisy, torch.randint(0, data.num_classes, labels.shape, generator=generator), labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=arch.lr, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = math.ceil(len(labels) / BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=arch.lr,
                                                   total_steps=max(1, spec.epochs * steps_per_epoch),
                                                   pct_start=0.1, anneal_strategy="cos")
    model.train()
    for _ in range(spec.epochs):
        order = torch.randperm(len(labels), generator=generator)
        for batch in order.split(BATCH_SIZE):
            logits = model(_random_translate(data.x_train[batch], generator))
            loss = F.cross_entropy(logits, labels[batch], label_smoothing=LABEL_SMOOTHING)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        on_epoch()
    model.eval()
    with torch.inference_mode():
        predictions = torch.cat([model(x).argmax(1) for x in data.x_test.split(512)])
    return model, 100.0 * float((predictions == data.y_test).float().mean())


def _save(model: torch.nn.Module, path: Path, recipe: str, result: dict[str, Any]) -> None:
    """Weights plus, in the safetensors metadata, what a resumed build needs for the manifest.

    Nothing time-dependent goes in, so the same seed gives a byte-identical file (and sha256).
    """
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    # One metadata key: safetensors writes several in hash order, which would change the file's bytes.
    metadata = {_METADATA_KEY: json.dumps({"recipe": recipe, "result": result}, sort_keys=True)}
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(state, str(tmp), metadata=metadata)


def _write_manifest(out_dir: Path, bank_name: str, plan: Sequence[Pretraining], results: dict[str, dict[str, Any]],
                    command: str) -> Path:
    models = []
    for spec in plan:
        arch, stats = ARCHS[spec.arch], results[spec.name]
        source_classes = stats["num_classes"]
        models.append({
            "name": spec.name,
            "arch": arch.arch,
            "weights": f"{spec.name}.safetensors",
            "sha256": file_sha256(out_dir / f"{spec.name}.safetensors"),
            "num_classes": 0 if spec.headless else source_classes,
            "source": ({"name": "none", "num_images": 0} if spec.epochs == 0 else
                       {"name": spec.source, "num_images": stats["num_images"], "num_classes": source_classes}),
            "kwargs": dict(arch.kwargs),
            "data_config": {"input_size": [3, IMAGE_SIZE, IMAGE_SIZE], "mean": list(stats["mean"]),
                            "std": list(stats["std"]), "interpolation": "bilinear", "crop_pct": 1.0,
                            "crop_mode": "center"},
        })
    header = [f"# automl synthetic bank {bank_name}: {command}", "# held-out source accuracy of each checkpoint (%):"]
    header += [f"#   {spec.name}: {results[spec.name]['accuracy']:.1f}{_departures(spec)}" for spec in plan]
    body = yaml.safe_dump({"name": bank_name, "models": models}, sort_keys=False, default_flow_style=None, width=110)
    path = out_dir / MANIFEST
    atomic_write_text(path, "\n".join(header) + "\n" + body)
    return path


def _departures(spec: Pretraining) -> str:
    """How ``spec`` departs from a plain pretraining, for the manifest header and the table."""
    notes = [f"{spec.epochs} epochs" if spec.epochs else "untrained"] if spec.epochs != EPOCHS else []
    notes += [f"{spec.label_noise:.0%} noisy labels"] if spec.label_noise else []
    notes += [f"{spec.data_fraction:.0%} of the data"] if spec.data_fraction < 1 else []
    notes += ["headless"] if spec.headless else []
    return f" ({', '.join(notes)})" if notes else ""


def _print_table(bank_name: str, plan: Sequence[Pretraining], results: dict[str, dict[str, Any]],
                 seconds: dict[str, float], total_seconds: float) -> None:
    table = Table(title=f"bank {bank_name} ({total_seconds:.0f}s)")
    for column in ("model", "arch", "source", "held-out accuracy %", "train s"):
        table.add_column(column, justify="right" if column[-1] in "%s" else "left")
    for spec in plan:
        took = f"{seconds[spec.name]:.1f}" if spec.name in seconds else "cached"
        table.add_row(spec.name + _departures(spec), ARCHS[spec.arch].arch, spec.source,
                      f"{results[spec.name]['accuracy']:.1f}", took)
    Console(stderr=True).print(table)
