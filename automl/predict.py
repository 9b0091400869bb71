"""``python -m automl.predict model=<dir> images=<folder or file> [out=<csv>] [batch_size=64]
[device=auto] [max_image_pixels=N]``: classify images with an exported model (``<run>/best``).

Writes a CSV ``path,label,probability`` (the predicted class name and its softmax probability),
atomically, by default next to the model folder (:func:`default_out`); one image's label and probability
are also printed.
When ``images`` is a labelled ImageFolder (``<images>/<class>/<image>``, every class folder named after
one of the model's classes) it also prints ``accuracy: <percent>``. The images go through the exported
model's input pipeline exactly as in training (:mod:`automl.pixels`), so on the task's ``test/`` folder
this reproduces the ``test_accuracy`` in the model's config.json. An unusable image (unreadable, or
larger than ``max_image_pixels``) is skipped and named.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from automl.cli import run_command
from automl.config import CONF_DIR, select_device
from automl.errors import AutomlError
from automl.fileio import atomic_path
from automl.finetune.model_dir import EVAL_BATCH_SIZE, load_exported, predict_proba
from automl.images import MAX_PIXELS, BadImageError, is_image_file, load_image
from automl.pixels import pixel_batches
from automl.settings.tools import PredictSettings

log = logging.getLogger(__name__)


class PredictError(AutomlError):
    """Bad arguments or inputs; the message names the argument or file."""


def find_images(images: Path, classes: Sequence[str]) -> tuple[list[Path], np.ndarray | None]:
    """Image files under ``images`` (a file or a folder, recursively, sorted) and their class indices
    when ``images`` is a labelled ImageFolder whose class folders are all among ``classes`` (else None)."""
    if images.is_file():
        if not is_image_file(images):
            raise PredictError(f"images={images}: not an image file extension")
        return [images], None
    if not images.is_dir():
        raise PredictError(f"images={images}: no such file or folder")
    paths = sorted(p for p in images.rglob("*") if p.is_file() and is_image_file(p)
                   and not any(part.startswith(".") for part in p.relative_to(images).parts))
    if not paths:
        raise PredictError(f"images={images}: no image files in it")
    folders = {p.relative_to(images).parts[0] if len(p.relative_to(images).parts) > 1 else None for p in paths}
    index = {name: i for i, name in enumerate(classes)}
    if None in folders or not folders <= set(index):
        return paths, None
    return paths, np.array([index[p.relative_to(images).parts[0]] for p in paths], dtype=np.int64)


def _readable(paths: list[Path], labels: np.ndarray | None, max_pixels: int) -> tuple[list[Path], np.ndarray | None]:
    """Drop (and report) the files that cannot be decoded."""
    good = []
    for i, path in enumerate(paths):
        try:
            load_image(path, max_pixels)
            good.append(i)
        except BadImageError as exc:
            log.warning("skipping %s", exc)
    if not good:
        raise PredictError("no readable images")
    return [paths[i] for i in good], None if labels is None else labels[good]


def predict(model_dir: str | Path, images: str | Path, out: str | Path, *, batch_size: int = EVAL_BATCH_SIZE,
            device: str = "auto", max_pixels: int = MAX_PIXELS) -> Predictions:
    """Write the predictions CSV at ``out`` and return what was predicted."""
    exported = load_exported(model_dir)
    classes = exported.classes
    paths, labels = find_images(Path(images), classes)
    device = select_device(device)

    def probabilities(paths: list[Path]) -> np.ndarray:
        batches = pixel_batches(paths, exported.data_config, batch_size, max_pixels=max_pixels)
        return predict_proba(exported.model, batches, exported.data_config, device=device)

    try:
        probs = probabilities(paths)
    except BadImageError:  # rare: find the unusable files once, then predict the rest
        paths, labels = _readable(paths, labels, max_pixels)
        probs = probabilities(paths)
    predicted = probs.argmax(axis=1)
    with atomic_path(out) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "probability"])
        for path, cls, row in zip(paths, predicted, probs, strict=True):
            writer.writerow([str(path), classes[cls], f"{row[cls]:.6f}"])
    accuracy = None if labels is None else 100.0 * float(np.mean(predicted == labels))
    return Predictions(paths, [classes[c] for c in predicted], probs[np.arange(len(paths)), predicted], accuracy,
                       Path(out))


@dataclass
class Predictions:
    """What :func:`predict` wrote: each image's predicted class and its probability (0..1)."""

    paths: list[Path]
    labels: list[str]
    probabilities: np.ndarray  # [N]
    accuracy: float | None  # percent, for a labelled ImageFolder
    csv: Path


def _predict(settings: PredictSettings) -> Predictions:
    out = Path(settings.out) if settings.out else default_out(settings.model, settings.images)
    return predict(settings.model, settings.images, out, batch_size=settings.batch_size, device=settings.device,
                   max_pixels=settings.max_image_pixels)


def default_out(model_dir: str | Path, images: str | Path) -> Path:
    """``<run folder>/predictions-<images name>.csv``: next to the exported model, not in the current folder."""
    return Path(model_dir).resolve().parent / f"predictions-{Path(images).resolve().stem or 'images'}.csv"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    result = run_command(lambda: _predict(OmegaConf.to_object(cfg)),
                         hint="python -m automl.predict --help shows the settings")
    if len(result.paths) == 1:
        print(f"{result.paths[0]}: {result.labels[0]} ({100 * result.probabilities[0]:.1f}%)")
    print(f"predictions: {result.csv}")
    if result.accuracy is not None:
        print(f"accuracy: {result.accuracy:.4f}")


if __name__ == "__main__":
    main()
