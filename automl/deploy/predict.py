"""Classify images with an exported model (``<run>/best``): :func:`predict_images` (what ``automl.load(...)
.predict`` and ``python -m automl.predict`` run) and the :class:`Predictions` it returns.

Images come as one file, a folder (recursively; a labelled ImageFolder ``<images>/<class>/<image>`` whose
class folders are all among the model's classes gives each image its true class), a CSV of
``path[,label]`` (the task CSV's format, paths relative to the CSV; the model's ``test.csv`` is one), a
text file of paths, one per line, or a list of paths. They go through the exported model's input
pipeline exactly as in training (:mod:`automl.images.pixels`), so the model's ``test.csv`` reproduces
the ``test_accuracy`` in its config.json. An unusable image (unreadable, or larger than
``max_image_pixels``) is skipped and named.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automl._device import select_device
from automl._fileio import atomic_path
from automl.deploy.exported import EVAL_BATCH_SIZE, ExportedModel, predict_proba
from automl.errors import AutomlError
from automl.images._portable import folder_images, is_image_file
from automl.images.decode import BadImageError, load_image
from automl.images.pixels import pixel_batches
from automl.settings import MAX_PIXELS

log = logging.getLogger(__name__)

LIST_SUFFIXES = (".csv", ".txt")  # files that list images rather than being one


class PredictError(AutomlError):
    """Bad arguments or inputs; the message names the argument or file."""


@dataclass(frozen=True, eq=False)
class Predictions:
    """A model's class probabilities for ``paths``, and their true classes where those are known.

    ``probabilities``: [N, C] softmax over ``classes`` (0..1); ``targets``: [N] class indices, or None.
    """

    paths: list[Path]
    classes: list[str]
    probabilities: np.ndarray
    targets: np.ndarray | None = None

    @property
    def predicted(self) -> np.ndarray:
        """[N] the index of each image's predicted class."""
        return self.probabilities.argmax(axis=1)

    @property
    def labels(self) -> list[str]:
        """Each image's predicted class name."""
        return [self.classes[i] for i in self.predicted]

    @property
    def confidence(self) -> np.ndarray:
        """[N] the probability (0..1) of each image's predicted class."""
        return self.probabilities.max(axis=1)

    def top_k(self, k: int = 3) -> list[list[tuple[str, float]]]:
        """Per image, its ``k`` most probable classes as (name, probability), most probable first."""
        order = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]
        return [[(self.classes[j], float(self.probabilities[i, j])) for j in row] for i, row in enumerate(order)]

    @property
    def accuracy(self) -> float | None:
        """Percent of images whose predicted class is their true one (None: true classes unknown)."""
        return None if self.targets is None else 100.0 * float(np.mean(self.predicted == self.targets))

    @property
    def balanced_accuracy(self) -> float | None:
        """The mean of per-class recalls over the classes present, in percent (None: true classes unknown)."""
        from sklearn.metrics import balanced_accuracy_score

        if self.targets is None:
            return None
        return 100.0 * float(balanced_accuracy_score(self.targets, self.predicted))

    def per_class(self) -> list[dict[str, float | str | int]]:
        """Per class (in the model's order): ``class``, ``precision``, ``recall``, ``f1`` (percent; 0 where a
        class is never predicted or never present) and ``support`` (its true images). Needs ``targets``."""
        from sklearn.metrics import precision_recall_fscore_support

        if self.targets is None:
            raise PredictError("per-class metrics need the images' true classes (a labelled folder or CSV)")
        precision, recall, f1, support = precision_recall_fscore_support(
            self.targets, self.predicted, labels=np.arange(len(self.classes)), zero_division=0)
        return [{"class": name, "precision": 100.0 * p, "recall": 100.0 * r, "f1": 100.0 * f, "support": int(s)}
                for name, p, r, f, s in zip(self.classes, precision, recall, f1, support, strict=True)]

    def write_csv(self, path: str | os.PathLike, top_k: int = 3) -> Path:
        """``path,label,probability`` (the predicted class), ``true_label`` where known, then the next
        ``top_k - 1`` classes as ``top2_label,top2_probability, ...`` (written atomically)."""
        k = min(top_k, len(self.classes))
        header = ["path", "label", "probability", *(["true_label"] if self.targets is not None else [])]
        header += [f"top{rank}_{part}" for rank in range(2, k + 1) for part in ("label", "probability")]
        with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for i, best in enumerate(self.top_k(max(k, 1))):
                truth = [self.classes[self.targets[i]]] if self.targets is not None else []
                rest = [cell for name, p in best[1:k] for cell in (name, f"{p:.6f}")]
                writer.writerow([str(self.paths[i]), best[0][0], f"{best[0][1]:.6f}", *truth, *rest])
        return Path(path)


def find_images(images: str | os.PathLike | Sequence[str | os.PathLike], classes: Sequence[str]
                ) -> tuple[list[Path], np.ndarray | None]:
    """The image paths ``images`` names (module docstring) and their class indices where the input says
    them (a labelled ImageFolder or a CSV with a label column), else None."""
    if not isinstance(images, str | os.PathLike):
        paths = [Path(path) for path in images]
        if not paths:
            raise PredictError("images: an empty list")
        return paths, None
    images = Path(images)
    if images.is_file() and images.suffix.lower() in LIST_SUFFIXES:
        return _listed(images, classes)
    if images.is_file():
        if not is_image_file(images):
            raise PredictError(f"images={images}: not an image file extension, nor a .csv or .txt list of images")
        return [images], None
    if not images.is_dir():
        raise PredictError(f"images={images}: no such file or folder")
    paths, targets = folder_images(images, classes)
    if not paths:
        raise PredictError(f"images={images}: no image files in it")
    return paths, targets


def _listed(listing: Path, classes: Sequence[str]) -> tuple[list[Path], np.ndarray | None]:
    """The images a ``.txt`` (a path per line) or ``.csv`` (``path[,label]``) file lists, relative to it."""
    if listing.suffix.lower() == ".txt":
        lines = [line.strip() for line in listing.read_text().splitlines()]
        paths = [listing.parent / line for line in lines if line]
        if not paths:
            raise PredictError(f"{listing}: lists no images")
        return paths, None
    with listing.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if "path" not in (reader.fieldnames or ()):
            raise PredictError(f"{listing}: no path column; expected path[,label]")
        rows = list(reader)
    if not rows:
        raise PredictError(f"{listing}: lists no images")
    paths = [listing.parent / row["path"] for row in rows]
    if "label" not in rows[0]:
        return paths, None
    index = {name: i for i, name in enumerate(classes)}
    for line, row in enumerate(rows, start=2):
        if row["label"] not in index:
            raise PredictError(f"{listing}:{line}: label {row['label']!r} is not one of the model's classes")
    return paths, np.array([index[row["label"]] for row in rows], dtype=np.int64)


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


def predict_images(exported: ExportedModel, images: str | os.PathLike | Sequence[str | os.PathLike], *,
                   batch_size: int = EVAL_BATCH_SIZE, device: str = "auto", max_pixels: int = MAX_PIXELS,
                   out: str | os.PathLike | None = None, top_k: int = 3) -> Predictions:
    """Classify ``images`` (module docstring) with ``exported``; with ``out``, also write the CSV
    (:meth:`Predictions.write_csv`, ``top_k`` classes per image)."""
    paths, targets = find_images(images, exported.classes)
    device = select_device(device)

    def probabilities(paths: list[Path]) -> np.ndarray:
        batches = pixel_batches(paths, exported.data_config, batch_size, max_pixels=max_pixels)
        return predict_proba(exported.model, batches, exported.data_config, device=device)

    try:
        probs = probabilities(paths)
    except BadImageError:  # rare: find the unusable files once, then predict the rest
        paths, targets = _readable(paths, targets, max_pixels)
        probs = probabilities(paths)
    predictions = Predictions(paths, exported.classes, probs, targets)
    if out is not None:
        predictions.write_csv(out, top_k)
    return predictions


def default_out(model_dir: str | os.PathLike, images: str | os.PathLike) -> Path:
    """``<run folder>/predictions-<images name>.csv``: next to the exported model, not in the current folder."""
    return Path(model_dir).resolve().parent / f"predictions-{Path(images).resolve().stem or 'images'}.csv"
