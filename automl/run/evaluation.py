"""The exported model on the test split, read from what the run left: the test images and their classes
(``best/test.csv``) and the class the search's evaluation gave each of them (the ``.npy`` the study
records), as :class:`automl.deploy.Predictions` for per-class metrics; and the images it got wrong, with
the exported model's probabilities computed on those images only."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automl.deploy.exported import TEST_FILE, load_exported
from automl.deploy.predict import PredictError, Predictions, find_images, predict_images

log = logging.getLogger(__name__)

GALLERY_SIZE = 24  # misclassified images shown at most


@dataclass(frozen=True)
class Mistake:
    """A misclassified test image: its true and predicted class names, and the probability (0..1) the
    exported model gives the predicted class."""

    path: Path
    true: str
    predicted: str
    probability: float


def read_test_predictions(best_dir: Path, predictions_file: Path | None, classes: Sequence[str]
                          ) -> Predictions | None:
    """The exported model's predictions on the test split: ``targets`` [N] from ``best_dir/test.csv``,
    ``probabilities`` [N, C] one-hot at the class recorded in ``predictions_file`` ([N] ints; the search
    keeps no probabilities). None when a file is missing or the two disagree in length."""
    if predictions_file is None or not predictions_file.is_file() or not (best_dir / TEST_FILE).is_file():
        return None
    try:
        paths, targets = find_images(best_dir / TEST_FILE, classes)
    except PredictError as exc:
        log.warning("report: %s; the test split's metrics are left out", exc)
        return None
    predicted = np.load(predictions_file)
    if targets is None or len(predicted) != len(targets):
        log.warning("report: %s and %s do not describe the same test images; the test split's metrics are left "
                    "out", best_dir / TEST_FILE, predictions_file)
        return None
    return Predictions(paths, list(classes), np.eye(len(classes), dtype=np.float32)[predicted], targets)


def find_mistakes(predictions: Predictions, best_dir: Path, limit: int = GALLERY_SIZE) -> list[Mistake]:
    """Up to ``limit`` misclassified test images, taken in turn from each true class (test.csv's order
    within a class), with the probability the exported model in ``best_dir`` gives the class it predicted;
    the model runs on these images only, on the CPU. Images not on this machine (or no longer readable)
    are left out."""
    taken = Counter()  # true class → its misclassified images so far
    turns = []  # (turn of its class, index)
    for i in np.flatnonzero(predictions.predicted != predictions.targets):
        if predictions.paths[i].is_file():
            turns.append((taken[predictions.targets[i]], i))
            taken[predictions.targets[i]] += 1
    wrong = [i for _, i in sorted(turns)][:limit]
    if not wrong:
        return []
    computed = predict_images(load_exported(best_dir), [predictions.paths[i] for i in wrong], device="cpu")
    row = {path: r for r, path in enumerate(computed.paths)}
    classes = predictions.classes
    return [Mistake(predictions.paths[i], classes[predictions.targets[i]], classes[predictions.predicted[i]],
                    float(computed.probabilities[row[predictions.paths[i]], predictions.predicted[i]]))
            for i in wrong if predictions.paths[i] in row]
