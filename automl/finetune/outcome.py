"""What a search leaves: :func:`read_outcome` reads it from the study (its trials as
:class:`~automl.finetune.results.TrialResult` rows, the best one and its refit) and writes nothing, so a
report can read a run; :func:`write_outcome` is the end of a search: ``finetune.csv`` and the best trial
(or its refit) exported to ``<run_dir>/best``."""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from automl._fileio import atomic_path
from automl.bank import BankEntry, weights_digest
from automl.deploy.exported import ExportError, export_model, read_config
from automl.finetune.attrs import (
    DATA_CONFIG,
    OVER_BUDGET,
)
from automl.finetune.budget import counts
from automl.finetune.results import FinetuneOutcome, Refit, TrialResult
from automl.images.tasks import Task
from automl.settings import HPARAM_NAMES

log = logging.getLogger(__name__)


def finished_results(trials: Iterable[FrozenTrial], study_name: str) -> list[TrialResult]:
    """A study's finished ``trials`` as results, in their order (budget-check stubs left out)."""
    return [TrialResult.from_trial(study_name, t) for t in trials
            if t.state.is_finished() and not t.user_attrs.get(OVER_BUDGET)]


def write_csv(path: Path, results: Iterable[TrialResult]) -> Path:
    """``trial, model, state, <hyperparameters>, oom_retries, val_accuracy, test_accuracy, epochs, seconds,
    train_images, train_gflop, stopped`` (atomic).

    ``epochs`` is the number of epochs trained; the ``epochs`` hyperparameter (the planned number, more
    than trained when pruned) is the column ``planned_epochs``. ``train_gflop`` is the compute the trial
    used and ``stopped`` says why it ended. ``batch_size`` is the one it ran with: the planned one halved
    ``oom_retries`` times (out of memory).
    """
    hparam_columns = ["planned_epochs" if name == "epochs" else name for name in HPARAM_NAMES]
    columns = ["trial", "model", "state", *hparam_columns, "oom_retries", "val_accuracy", "test_accuracy", "epochs",
               "seconds", "train_images", "train_gflop", "stopped"]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for r in results:
            accuracies = ["" if v is None else round(v, 4) for v in (r.val_accuracy, r.test_accuracy)]
            gflop = "" if r.train_gflop is None else round(r.train_gflop, 3)
            writer.writerow([r.number, r.model or "", r.state, *(r.hparams.get(k, "") for k in HPARAM_NAMES),
                             r.oom_retries, *accuracies, r.epochs, round(r.seconds, 2), r.train_images, gflop,
                             r.stopped])
    return path


def best_trial(results: Sequence[TrialResult]) -> TrialResult | None:
    """The COMPLETE trial with the highest validation accuracy (ties: the lowest number)."""
    return max((r for r in results if r.state == "COMPLETE" and r.val_accuracy is not None),
               key=lambda r: (r.val_accuracy, -r.number), default=None)


def read_outcome(study: optuna.Study, run_dir: Path) -> FinetuneOutcome:
    """The search as ``study`` holds it; ``best_dir`` is ``run_dir/best`` when that folder holds the export
    of this study's best trial (or of its refit), else None. Reads only."""
    trials = study.get_trials(deepcopy=False)
    results = finished_results(trials, study.study_name)
    best = best_trial(results)
    refit = Refit.of_study(study, best) if best is not None else None
    return FinetuneOutcome(study=study.study_name, candidates=list(study.user_attrs.get("candidates", [])),
                           trials=results, best=best, refit=refit, best_dir=_exported(run_dir / "best", best, refit),
                           n_counted=sum(map(counts, trials)), optuna_study=study)


def write_outcome(study: optuna.Study, task: Task, candidates: Sequence[BankEntry], run_dir: Path
                  ) -> FinetuneOutcome:
    """Write ``run_dir/finetune.csv`` and export the best COMPLETE trial (its refit when the study holds
    one) to ``run_dir/best``; the outcome as :func:`read_outcome` then reads it."""
    outcome = read_outcome(study, run_dir)
    write_csv(run_dir / "finetune.csv", outcome.trials)
    best = outcome.best
    if best is None:
        return outcome
    entry = next(entry for entry in candidates if entry.name == best.model)
    trial = study.get_trials(deepcopy=False)[best.number]  # by number: trials[n].number == n
    return dataclasses.replace(outcome, best_dir=_export_best(best, outcome.refit, trial, entry, task, run_dir))


def _exported(best_dir: Path, best: TrialResult | None, refit: Refit | None) -> Path | None:
    """``best_dir`` if it holds the export of ``best`` (refitted as ``refit`` says), else None."""
    if best is None:
        return None
    try:
        config = read_config(best_dir)
    except ExportError:
        return None
    same = (config.get("study"), config.get("trial"), config.get("refit") is not None) == (
        best.study, best.number, refit is not None)
    return best_dir if same else None


def _export_best(best: TrialResult, refit, trial: FrozenTrial, entry: BankEntry, task: Task, run_dir: Path
                 ) -> Path | None:
    weights = refit.weights if refit is not None else best.weights
    if weights is None or not weights.is_file():
        log.warning("best trial %d: weights %s are not on this machine (share finetune.artifacts_dir "
                    "between workers); best/ not exported here", best.number, weights)
        return None
    config = {
        "arch": entry.arch,
        "kwargs": entry.kwargs,
        "num_classes": task.num_classes,
        "classes": list(task.classes),
        "data_config": trial.user_attrs[DATA_CONFIG],
        "source": {"model": entry.name, "weights": entry.weights, "digest": weights_digest(entry),
                   "source": dataclasses.asdict(entry.source) if entry.source else None},
        "task": {"name": task.name, "fingerprint": task.fingerprint},
        "study": best.study,
        "trial": best.number,
        "hparams": best.hparams,
        "val_accuracy": best.val_accuracy,  # the trial's, which chose the model
        "test_accuracy": refit.test_accuracy if refit is not None else best.test_accuracy,
        "refit": None if refit is None else {"on": "train+val", "epochs": refit.epochs,
                                             "trial_test_accuracy": best.test_accuracy, "seconds": refit.seconds,
                                             "train_gflop": round(refit.train_gflop, 3)},
    }
    test = task.splits["test"]
    out = export_model(run_dir / "best", weights, config,
                       [(path, task.classes[label]) for path, label in zip(test.paths, test.labels, strict=True)])
    log.info("best: trial %d %s%s, val %.2f%% test %.2f%% -> %s", best.number, best.model,
             " refit on train + val" if refit is not None else "", best.val_accuracy, config["test_accuracy"], out)
    return out
