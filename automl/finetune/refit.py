"""After the search, the best configuration retrained on the training and validation images together.

The validation split has done its job once the search has chosen the model and its hyperparameters; a
refit gives its images back to training for the planned number of epochs (no epoch is chosen on
validation any more, the last one is kept) and measures the result once on the untouched test split.
What it measured is kept on the study (user attr ``refit``) and its weights next to the trials', so a
rerun, another worker or ``stage=report`` finds it instead of training again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna

from automl.bank import BankEntry
from automl.bank.meta import training_gflop
from automl.fileio import atomic_path
from automl.finetune.fit import fit_once
from automl.finetune.model_dir import save_weights
from automl.finetune.outcome import TrialResult
from automl.settings import FinetuneSettings, Hparams
from automl.tasks import Task

log = logging.getLogger(__name__)

REFIT_ATTR = "refit"


@dataclass(frozen=True)
class Refit:
    """The refit of the best trial: its test accuracy (percent), compute and files."""

    trial: int
    test_accuracy: float
    epochs: int
    seconds: float
    train_images: int
    mflops: float
    weights: Path
    test_predictions: Path

    @property
    def train_gflop(self) -> float:
        return training_gflop(self.train_images, self.mflops)

    @classmethod
    def of_study(cls, study: optuna.Study, best: TrialResult) -> Refit | None:
        """The study's refit of ``best``, if it exists and its files are on this machine."""
        attrs = study.user_attrs.get(REFIT_ATTR) or {}
        if attrs.get("trial") != best.number or not Path(attrs.get("weights", "")).is_file():
            return None
        return cls(**{**attrs, "weights": Path(attrs["weights"]), "test_predictions": Path(attrs["test_predictions"])})


def ensure_refit(study: optuna.Study, best: TrialResult, entry: BankEntry, task: Task, settings: FinetuneSettings,
                 *, device: str, seed: int, artifacts: Path) -> Refit:
    """The refit of ``best`` (module docstring): found on the study, or trained now and recorded there."""
    found = Refit.of_study(study, best)
    if found is not None:
        return found
    log.info("refit: trial %d (%s) on train + val for %s epochs", best.number, best.model, best.hparams["epochs"])
    result = fit_once(entry, task, Hparams.from_mapping(best.hparams, where=f"trial {best.number}"), settings,
                      device=device, seed=seed, refit=True)
    weights = save_weights(result.best_state, artifacts / f"refit-{best.number}.safetensors")
    predictions = artifacts / f"refit-{best.number}.test-predictions.npy"
    with atomic_path(predictions) as tmp:
        np.save(tmp, result.test_predictions.astype(np.int32))
    refit = Refit(best.number, result.test_accuracy, result.epochs, round(result.seconds, 3), result.train_images,
                  result.mflops, weights, predictions)
    study.set_user_attr(REFIT_ATTR, {**refit.__dict__, "weights": str(weights), "test_predictions": str(predictions)})
    log.info("refit: test %.2f%% (the trial alone: %.2f%%), %.1f s", refit.test_accuracy, best.test_accuracy,
             refit.seconds)
    return refit
