"""One worker's side of the search: the Optuna objective (one fit per trial) and the after-trial callback."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial
from optuna_integration import PyTorchLightningPruningCallback

from automl._fileio import atomic_path
from automl.bank import BankEntry
from automl.deploy.exported import save_weights
from automl.finetune.attrs import (
    CHANNELS_LAST,
    DATA_CONFIG,
    DEVICE,
    FAIL_REASON,
    HPARAMS,
    INTERRUPTED,
    MODEL_PARAM,
    OOM_RETRIES,
    OVER_BUDGET,
    PRECISION,
    RESUMED_AT,
    RESUMES,
    TEST_PREDICTIONS,
    WEIGHTS,
    WORKER,
)
from automl.finetune.budget import Budget, counts
from automl.finetune.fit import FitResult, fit_once, is_out_of_memory, release_memory
from automl.finetune.module import FinetuneModule, make_logger
from automl.finetune.outcome import finished_results, write_csv
from automl.finetune.results import TrialResult
from automl.finetune.space import SearchSpace
from automl.finetune.study import requeue
from automl.images.tasks import Task
from automl.settings import FinetuneSettings, Hparams

log = logging.getLogger(__name__)


class _TrialProgress(pl.Callback):
    """After every validation epoch: a line in the run's log (a long trial is never silent there; the
    console shows the fit's progress line instead), and the epochs trained and best validation accuracy so
    far recorded on the trial, so that a pruned or failed trial keeps them (the module's own hook has run
    by then)."""

    def __init__(self, trial: optuna.Trial, model: str):
        self.trial, self.model = trial, model
        self.start = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, module: FinetuneModule) -> None:
        if trainer.sanity_checking:
            return
        self.trial.set_user_attr("epochs", module.epochs_validated)
        self.trial.set_user_attr("val_accuracy", module.best_val_acc)
        self.trial.set_user_attr("val_curve", [round(v, 4) for v in module.val_curve])
        self.trial.set_user_attr("train_images", module.images_seen)
        self.trial.set_user_attr("mflops", round(module.mflops, 4))
        loss = trainer.callback_metrics.get("train_loss")
        log.debug("trial %d %s: epoch %d/%d, val %.2f%% (best %.2f%%), train loss %s, %.1f s", self.trial.number,
                 self.model, module.epochs_validated, trainer.max_epochs, trainer.callback_metrics["val_acc"],
                 module.best_val_acc, "-" if loss is None else f"{float(loss):.3f}", time.monotonic() - self.start)


def worker_id(pid: int | None = None) -> str:
    """``<host>:<pid>``: the worker process ``pid`` of this machine (default: this one), as trials record it
    (user attr ``worker``)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


class Objective:
    """One worker's view of the study: the objective (one :func:`fit_once` per trial, again with half the
    batch size when it runs out of memory) and the after-trial callback (a log line, ``finetune.csv``, the
    caller's hook). ``device_name`` is the device as trials record it (default ``device``: a worker pinned
    to one GPU trains on its ``cuda`` but records which GPU of the machine that is)."""

    def __init__(self, settings: FinetuneSettings, seed: int, device: str, task: Task,
                 candidates: Sequence[BankEntry], space: SearchSpace, study_name: str, budget: Budget,
                 run_dir: Path, artifacts: Path, on_trial_finished: Callable[[TrialResult], None] | None,
                 device_name: str | None = None):
        self.settings, self.seed, self.device = settings, seed, device
        self.device_name = device_name or device
        self.task, self.space, self.study_name, self.budget = task, space, study_name, budget
        self.candidates = {entry.name: entry for entry in candidates}
        self.defaults = {**settings.default_hparams.as_dict(), "epochs": settings.planned_epochs(len(task.splits["train"]))}
        self.artifacts, self.run_dir = artifacts, run_dir
        self.on_trial_finished = on_trial_finished

    def objective(self, trial: optuna.Trial) -> float:
        self.budget.admit(trial.study, trial)
        start = time.monotonic()
        resumes = trial.user_attrs.get(RESUMES, trial.number)  # a retried or re-queued trial continues that fit
        trial.set_user_attr(RESUMES, resumes)
        checkpoint = self.artifacts / f"trial-{resumes}.resume.ckpt"
        trial.set_user_attr(WORKER, worker_id())
        trial.set_user_attr(DEVICE, self.device_name)
        try:
            params = self.space.suggest(trial)
            values = {**self.defaults, **self.space.fixed, **{k: v for k, v in params.items() if k != MODEL_PARAM}}
            trial.set_user_attr(HPARAMS, values)
            hparams = Hparams.from_mapping(values, where=f"trial {trial.number}")
            if checkpoint.is_file():
                log.info("trial %d continues trial %d from its checkpoint", trial.number, resumes)
            result = self._fit(trial, params[MODEL_PARAM], hparams, checkpoint)
            if result.resumed_at is not None:
                trial.set_user_attr(RESUMED_AT, result.resumed_at)
            self._keep_best(trial, result)
            return result.val_accuracy
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr(FAIL_REASON, f"{type(exc).__name__}: {exc}"[:2000])
            log.debug("trial %d failed", trial.number, exc_info=True)  # the traceback, for the run's log
            raise
        except KeyboardInterrupt:
            trial.set_user_attr(INTERRUPTED, True)
            # run it again on resume, from its checkpoint, without waiting for the heartbeat to go stale
            requeue(trial.study, trial.study.get_trials(deepcopy=False)[trial.number])
            raise
        finally:
            trial.set_user_attr("seconds", round(time.monotonic() - start, 3))

    def _fit(self, trial: optuna.Trial, model: str, planned: Hparams, checkpoint: Path) -> FitResult:
        """:func:`fit_once` of ``model`` with ``planned``; out of memory, the same configuration again with half
        the batch size while that is at least ``finetune.min_batch_size`` (then the error fails the trial).

        The batch size run (user attr ``hparams``: finetune.csv's ``batch_size``, what a refit uses) and the
        halvings (``oom_retries``) are recorded before each attempt, so a trial that is re-queued or retried
        continues at the batch size its checkpoint was trained with.

        The learning rate stays the planned one, as timm's train.py uses an explicit ``--lr`` at any batch
        size (it scales only its default, ``--lr-base``): the row then measures the configuration the sampler
        chose, at the batch size it records, and the warmup and schedule follow epochs, not steps. The linear
        scaling rule would halve the rate, a configuration nobody sampled, for a memory limit of this machine.
        """
        retries = trial.user_attrs.get(OOM_RETRIES, 0)
        while True:
            hparams = dataclasses.replace(planned, batch_size=planned.batch_size >> retries)
            trial.set_user_attr(HPARAMS, hparams.as_dict())
            trial.set_user_attr(OOM_RETRIES, retries)
            try:
                return fit_once(
                    self.candidates[model], self.task, hparams, self.settings, device=self.device, seed=self.seed,
                    checkpoint=checkpoint, label=f"trial {trial.number} {model}",
                    logger=make_logger(self.settings.logger, self.run_dir / "trials", f"trial-{trial.number}",
                                       self.settings.mlflow_uri),
                    # progress first: a pruned trial keeps the epochs and accuracy it reached
                    callbacks=[_TrialProgress(trial, model), PyTorchLightningPruningCallback(trial, monitor="val_acc")])
            except Exception as exc:
                if not is_out_of_memory(exc) or hparams.batch_size // 2 < self.settings.min_batch_size:
                    raise
                log.warning("trial %d %s: out of memory at batch size %d; again at %d (%s)", trial.number, model,
                            hparams.batch_size, hparams.batch_size // 2, str(exc).splitlines()[0][:200])
            release_memory(self.device)  # outside the except block: the failed fit's frames are gone by now
            retries += 1

    def _keep_best(self, trial: optuna.Trial, result: FitResult) -> None:
        """Save the best-epoch weights and test predictions; record what the fit measured on the trial."""
        weights = save_weights(result.best_state, self.artifacts / f"trial-{trial.number}.safetensors")
        predictions = self.artifacts / f"trial-{trial.number}.test-predictions.npy"
        with atomic_path(predictions) as tmp:
            np.save(tmp, result.test_predictions.astype(np.int32))
        trial.set_user_attr("epochs", result.epochs)
        trial.set_user_attr("train_images", result.train_images)
        trial.set_user_attr("val_accuracy", result.val_accuracy)
        trial.set_user_attr("test_accuracy", result.test_accuracy)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr(DATA_CONFIG, result.data_config)
        trial.set_user_attr(CHANNELS_LAST, result.channels_last)
        trial.set_user_attr(PRECISION, result.precision)
        trial.set_user_attr(WEIGHTS, str(weights))
        trial.set_user_attr(TEST_PREDICTIONS, str(predictions))

    def after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback in this worker: one summary line, finetune.csv, then the caller's hook."""
        if self.device.startswith("cuda"):  # Optuna has collected the trial's garbage: return its GPU memory
            torch.cuda.empty_cache()
        if trial.user_attrs.get(OVER_BUDGET):
            return
        result = TrialResult.from_trial(self.study_name, trial)
        trials = study.get_trials(deepcopy=False)
        log.info("%s [%d/%s counted]", _summary(result), sum(map(counts, trials)), self.budget.n_trials or "-")
        write_csv(self.run_dir / "finetune.csv", finished_results(trials, self.study_name))
        if self.on_trial_finished is not None:
            try:
                self.on_trial_finished(result)
            except Exception:  # the trial is safely in the study; a failing hook must not end the search
                log.exception("on_trial_finished failed for trial %d", trial.number)


def _summary(result: TrialResult) -> str:
    head = f"trial {result.number} {result.state:8s} {result.model}"
    if result.state == "FAIL":
        return f"{head}: {result.fail_reason}"
    val = "-" if result.val_accuracy is None else f"{result.val_accuracy:.2f}%"
    test = "-" if result.test_accuracy is None else f"{result.test_accuracy:.2f}%"
    return f"{head}: val {val} test {test} ({result.epochs} epochs, {result.seconds:.1f} s)"
