"""After the search, the best configuration retrained on the training and validation images together.

The validation split has done its job once the search has chosen the model and its hyperparameters; a
refit gives its images back to training for the planned number of epochs (no epoch is chosen on
validation any more, the last one is kept) and measures the result once on the untouched test split.
What it measured is kept on the study (user attr ``refit``) and its weights next to the trials', so a
rerun, another worker or ``stage=report`` finds it instead of training again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import optuna

from automl._fileio import atomic_path
from automl.bank import BankEntry
from automl.deploy.exported import save_weights
from automl.finetune.attrs import REFIT
from automl.finetune.fit import fit_once
from automl.finetune.results import Refit, TrialResult
from automl.images.tasks import Task
from automl.settings import FinetuneSettings, Hparams

log = logging.getLogger(__name__)

def ensure_refit(study: optuna.Study, best: TrialResult, entry: BankEntry, task: Task, settings: FinetuneSettings,
                 *, device: str, seed: int, artifacts: Path) -> Refit:
    """The refit of ``best`` (module docstring): found on the study, or trained now and recorded there."""
    found = Refit.of_study(study, best)
    if found is not None:
        return found
    log.info("refit: trial %d (%s) on train + val for %s epochs", best.number, best.model, best.hparams["epochs"])
    result = fit_once(entry, task, Hparams.from_mapping(best.hparams, where=f"trial {best.number}"), settings,
                      device=device, seed=seed, refit=True, checkpoint=artifacts / f"refit-{best.number}.resume.ckpt")
    weights = save_weights(result.best_state, artifacts / f"refit-{best.number}.safetensors")
    predictions = artifacts / f"refit-{best.number}.test-predictions.npy"
    with atomic_path(predictions) as tmp:
        np.save(tmp, result.test_predictions.astype(np.int32))
    refit = Refit(best.number, result.test_accuracy, result.epochs, round(result.seconds, 3), result.train_images,
                  result.mflops, weights, predictions)
    study.set_user_attr(REFIT, {**refit.__dict__, "weights": str(weights), "test_predictions": str(predictions)})
    log.info("refit: test %.2f%% (the trial alone: %.2f%%), %.1f s", refit.test_accuracy, best.test_accuracy,
             refit.seconds)
    return refit
