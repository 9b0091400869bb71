"""The offline demo bank: tiny timm models pretrained from scratch on the synthetic *source* datasets.

Every architecture in :data:`ARCHS` is trained on every source in :data:`SOURCES`
(textures, photo patches, Greek letters), so that both the architecture and the pretraining data vary
across the bank, as in the PARC paper's diverse banks. The builtin *target* tasks (digits, glyphs,
shapes) are never seen in pretraining.

The build is seeded and deterministic, resumable (a finished ``<name>.safetensors`` whose recipe and
seed match is kept), and atomic (temp file + rename; ``bank.yaml`` is written last). Each checkpoint
keeps its source-class head; its safetensors metadata records the held-out source accuracy.

``python -m automl.bank.demo [out=DIR] [seed=N]`` builds it (``python -m automl`` does on first use).
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

import hydra
import numpy as np
import safetensors
import safetensors.torch
import timm
import torch
import torch.nn.functional as F
import yaml
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from sklearn.model_selection import train_test_split

from automl import synthetic
from automl.bank.manifest import MANIFEST, read_bank
from automl.bank.weights import file_sha256
from automl.cli import run_command
from automl.config import CONF_DIR
from automl.fileio import atomic_path, atomic_write_text
from automl.progress import progress_bar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Arch:
    arch: str  # timm architecture
    kwargs: dict[str, Any]  # extra timm.create_model kwargs, written to the manifest
    lr: float  # peak AdamW learning rate


# Four families of timm's tiny test models. LayerNorm ConvNeXts need ~3x the epochs to leave chance level
# on the Greek letters from scratch, so the convolutional families are BatchNorm (resnet, efficientnet)
# and normalizer-free (nfnet); the ViT gets a lower learning rate, as usual for transformers.
ARCHS: dict[str, _Arch] = {
    "resnet": _Arch("test_resnet", {}, 5e-3),
    "effnet": _Arch("test_efficientnet", {}, 5e-3),
    "nfnet": _Arch("test_nfnet", {}, 5e-3),
    "vit": _Arch("test_vit", {"img_size": 32, "patch_size": 8}, 3e-3),  # 4x4 tokens; patch 4 costs 4x the time
}
SOURCES = ("photos", "symbols", "textures")  # synthetic sources, in the order of the manifest
IMAGE_SIZE = synthetic.SIZE  # pixels: the models' input is the synthetic sources' own size
HOLDOUT = 0.2  # fraction of each source kept out of pretraining to measure its accuracy
EPOCHS = 20
BATCH_SIZE = 128
WEIGHT_DECAY = 0.05
LABEL_SMOOTHING = 0.1
PAD = 4  # random-translation augmentation: pad by PAD pixels, crop back to IMAGE_SIZE
_METADATA_KEY = "automl_demo_bank"  # safetensors metadata: the recipe and the source results


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


def build_demo_bank(out_dir: str | Path, seed: int = 0, *, archs: Sequence[str] | None = None,
                    sources: Sequence[str] | None = None, epochs: int = EPOCHS) -> Path:
    """Build (or finish building) the demo bank in ``out_dir``; return the path of its ``bank.yaml``.

    ``archs`` (keys of :data:`ARCHS`), ``sources`` (synthetic source datasets) and ``epochs`` default to
    the full bank; smaller values give a quick bank of the same kind (tests).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archs = list(ARCHS) if archs is None else list(archs)
    sources = list(SOURCES) if sources is None else list(sources)
    unknown = [a for a in archs if a not in ARCHS] + [s for s in sources if s not in synthetic.available("source")]
    if unknown or not archs or not sources or epochs < 1:
        raise ValueError(f"demo bank: unknown or empty archs/sources {unknown or ''} (archs: {list(ARCHS)}, "
                         f"sources: {synthetic.available('source')}) or epochs={epochs} < 1")
    plan = [(f"{short}_{source}", short, source) for source in sources for short in archs]
    data_by_source: dict[str, _SourceData] = {}
    results: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}  # training time of the models built in this call
    start = time.perf_counter()
    with progress_bar() as progress:
        bar = progress.add_task("demo bank", total=len(plan) * epochs)
        for name, short, source in plan:
            path = out_dir / f"{name}.safetensors"
            recipe = _recipe(short, source, seed, epochs)
            results[name] = _finished(path, recipe)
            if results[name] is not None:
                log.info("demo bank: %s already built (source accuracy %.1f%%)", name, results[name]["accuracy"])
                progress.advance(bar, epochs)
                continue
            if source not in data_by_source:
                data_by_source[source] = _load_source(source, seed)
            progress.update(bar, description=f"demo bank: {name}")
            data, tick = data_by_source[source], time.perf_counter()
            model, accuracy = _pretrain(short, data, _model_seed(name, seed), epochs,
                                        on_epoch=lambda: progress.advance(bar))
            seconds[name] = time.perf_counter() - tick
            results[name] = {"accuracy": accuracy, "num_images": len(data.y_train), "num_classes": data.num_classes,
                             "mean": data.mean, "std": data.std}
            _save(model, path, recipe, results[name])
            log.info("demo bank: %s pretrained in %.1fs, held-out %s accuracy %.1f%%",
                     name, seconds[name], source, accuracy)
    manifest = _write_manifest(out_dir, plan, results, seed)
    read_bank(None, None, out_dir)  # the manifest must pass the same validation users get
    _print_table(plan, results, seconds, time.perf_counter() - start)
    return manifest


def _recipe(short: str, source: str, seed: int, epochs: int) -> str:
    """Everything that determines a checkpoint; a stored file with a different recipe is rebuilt."""
    spec = ARCHS[short]
    return json.dumps({"arch": spec.arch, "kwargs": spec.kwargs, "source": source, "seed": seed, "epochs": epochs,
                       "batch_size": BATCH_SIZE, "lr": spec.lr, "weight_decay": WEIGHT_DECAY,
                       "label_smoothing": LABEL_SMOOTHING, "pad": PAD, "holdout": HOLDOUT,
                       "timm": timm.__version__}, sort_keys=True)


def _model_seed(name: str, seed: int) -> int:
    return zlib.crc32(f"{name}:{seed}".encode())  # stable across runs and independent of build order


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


def _load_source(name: str, seed: int) -> _SourceData:
    """Generate source ``name``, split off a stratified held-out set and normalise with train statistics."""
    data = synthetic.generate(name, seed)
    pixels = np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in data.images])
    if pixels.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"source {name}: expected {IMAGE_SIZE}x{IMAGE_SIZE} images, got {pixels.shape[1:3]}")
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255)
    y = torch.from_numpy(data.labels)
    train, test = train_test_split(np.arange(len(y)), test_size=HOLDOUT, stratify=data.labels, random_state=seed)
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


def _pretrain(short: str, data: _SourceData, seed: int, epochs: int, on_epoch) -> tuple[torch.nn.Module, float]:
    """AdamW + one-cycle cosine schedule on the source; returns the model and its held-out accuracy (%)."""
    spec = ARCHS[short]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = timm.create_model(spec.arch, num_classes=data.num_classes, **spec.kwargs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = math.ceil(len(data.y_train) / BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=spec.lr, total_steps=epochs * steps_per_epoch,
                                                   pct_start=0.1, anneal_strategy="cos")
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(data.y_train), generator=generator)
        for batch in order.split(BATCH_SIZE):
            logits = model(_random_translate(data.x_train[batch], generator))
            loss = F.cross_entropy(logits, data.y_train[batch], label_smoothing=LABEL_SMOOTHING)
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


def _write_manifest(out_dir: Path, plan, results: dict[str, dict[str, Any]], seed: int) -> Path:
    models = []
    for name, short, source in plan:
        spec, stats = ARCHS[short], results[name]
        models.append({
            "name": name,
            "arch": spec.arch,
            "weights": f"{name}.safetensors",
            "sha256": file_sha256(out_dir / f"{name}.safetensors"),
            "num_classes": stats["num_classes"],
            "source": {"name": source, "num_images": stats["num_images"], "num_classes": stats["num_classes"]},
            "kwargs": dict(spec.kwargs),
            "data_config": {"input_size": [3, IMAGE_SIZE, IMAGE_SIZE], "mean": list(stats["mean"]),
                            "std": list(stats["std"]), "interpolation": "bilinear", "crop_pct": 1.0,
                            "crop_mode": "center"},
        })
    header = [f"# automl offline demo bank: python -m automl.bank build --seed {seed}",
              "# held-out source accuracy of each checkpoint (%):"]
    header += [f"#   {name}: {results[name]['accuracy']:.1f}" for name, _, _ in plan]
    body = yaml.safe_dump({"name": "demo", "models": models}, sort_keys=False, default_flow_style=None, width=110)
    path = out_dir / MANIFEST
    atomic_write_text(path, "\n".join(header) + "\n" + body)
    return path


def _print_table(plan, results: dict[str, dict[str, Any]], seconds: dict[str, float], total_seconds: float) -> None:
    table = Table(title=f"demo bank ({total_seconds:.0f}s)")
    for column in ("model", "arch", "source", "held-out accuracy %", "train s"):
        table.add_column(column, justify="right" if column[-1] in "%s" else "left")
    for name, short, source in plan:
        took = f"{seconds[name]:.1f}" if name in seconds else "cached"
        table.add_row(name, ARCHS[short].arch, source, f"{results[name]['accuracy']:.1f}", took)
    Console(stderr=True).print(table)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="demo_bank")
def main(cfg: DictConfig) -> None:
    """``python -m automl.bank.demo [out=DIR] [seed=N]``: build (or finish building) the demo bank."""
    settings = OmegaConf.to_object(cfg)
    print(run_command(lambda: build_demo_bank(settings.out, seed=settings.seed),
                      hint="python -m automl.bank.demo --help shows the settings",
                      resume="finished checkpoints are kept; rerun the same command to resume"))


if __name__ == "__main__":
    main()
