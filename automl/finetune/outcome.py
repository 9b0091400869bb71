"""What a search leaves: its trials as :class:`TrialResult` rows, ``finetune.csv``, and the best
trial exported to ``<run_dir>/best``."""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.bank import BankEntry, weights_digest
from automl.bank.meta import training_gflop
from automl.fileio import atomic_path
from automl.finetune.attrs import (
    DATA_CONFIG,
    FAIL_REASON,
    HPARAMS,
    INTERRUPTED,
    MODEL_PARAM,
    OVER_BUDGET,
    TEST_PREDICTIONS,
    WEIGHTS,
)
from automl.finetune.budget import counts
from automl.finetune.model_dir import export_model
from automl.settings import HPARAM_NAMES
from automl.tasks import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialResult:
    """One finished trial (accuracies in percent; ``val_accuracy`` is the best epoch's, also when pruned)."""

    study: str
    number: int
    model: str | None  # bank entry name
    state: str  # COMPLETE | PRUNED | FAIL
    hparams: dict[str, Any]
    val_accuracy: float | None
    test_accuracy: float | None  # COMPLETE trials only, with the best-epoch weights
    epochs: int  # epochs trained (validated)
    val_curve: list[float]  # validation accuracy after each epoch trained
    seconds: float  # wall time of the trial
    train_images: int  # training images processed
    mflops: float | None  # forward MFLOPs per image of the model at its input
    fail_reason: str | None  # FAIL: "<exception type>: <message>", or why it did not run to the end
    weights: Path | None  # best-epoch weights (COMPLETE trials)
    test_predictions: Path | None  # .npy of the class given to each test image (COMPLETE trials)

    @classmethod
    def from_trial(cls, study: str, trial: FrozenTrial) -> TrialResult:
        attrs = trial.user_attrs
        hparams = attrs.get(HPARAMS) or {k: v for k, v in trial.params.items() if k != MODEL_PARAM}
        reason = attrs.get(FAIL_REASON)
        if trial.state == TrialState.FAIL and reason is None:
            reason = "interrupted" if attrs.get(INTERRUPTED) else "its worker died (heartbeat lost)"
        return cls(
            study=study,
            number=trial.number,
            model=trial.params.get(MODEL_PARAM),
            state=trial.state.name,
            hparams=dict(hparams),
            val_accuracy=attrs.get("val_accuracy"),
            test_accuracy=attrs.get("test_accuracy"),
            epochs=int(attrs.get("epochs", 0)),
            val_curve=list(attrs.get("val_curve", [])),
            seconds=float(attrs.get("seconds", 0.0)),
            train_images=int(attrs.get("train_images", 0)),
            mflops=attrs.get("mflops"),
            fail_reason=reason,
            weights=Path(attrs[WEIGHTS]) if attrs.get(WEIGHTS) else None,
            test_predictions=Path(attrs[TEST_PREDICTIONS]) if attrs.get(TEST_PREDICTIONS) else None,
        )


    @property
    def train_gflop(self) -> float | None:
        """The compute the trial used: training images x forward MFLOPs x 3 (forward and backward), in GFLOP."""
        return None if self.mflops is None else training_gflop(self.train_images, self.mflops)

    @property
    def stopped(self) -> str:
        """Why the trial stopped."""
        if self.state == "COMPLETE":
            return f"ran its {self.hparams.get('epochs', self.epochs)} epochs"
        if self.state == "PRUNED":
            return f"pruned after epoch {self.epochs}: behind the others at that epoch"
        return f"failed: {self.fail_reason}"


@dataclass(frozen=True)
class FinetuneOutcome:
    """What :func:`run_finetune` leaves behind (the study holds the same, for every worker)."""

    study: str
    candidates: list[str]  # the models the study searches
    trials: list[TrialResult]  # the study's finished trials (all workers), by number
    best: TrialResult | None  # highest val_accuracy among COMPLETE trials (ties: lowest number)
    refit: Any  # automl.finetune.refit.Refit of the best trial, or None (finetune.refit off, or not yet)
    best_dir: Path | None  # run_dir/best, or None (no COMPLETE trial / its weights not on this machine)
    n_counted: int  # trials that count towards finetune.n_trials
    optuna_study: optuna.Study  # the study itself (for Optuna's plots), as the search opened it

    @property
    def test_accuracy(self) -> float | None:
        """The exported model's test accuracy: the refit's, else the best trial's."""
        if self.refit is not None:
            return self.refit.test_accuracy
        return self.best.test_accuracy if self.best is not None else None

    @property
    def test_predictions(self) -> Path | None:
        """The exported model's test predictions (.npy)."""
        if self.refit is not None:
            return self.refit.test_predictions
        return self.best.test_predictions if self.best is not None else None

    def best_by_model(self) -> dict[str, TrialResult]:
        """model name → its best COMPLETE trial (highest val accuracy; ties: lowest number)."""
        best: dict[str, TrialResult] = {}
        for trial in self.trials:
            if trial.state != "COMPLETE" or trial.val_accuracy is None:
                continue
            if trial.model not in best or trial.val_accuracy > best[trial.model].val_accuracy:
                best[trial.model] = trial
        return best


def finished_results(trials: Iterable[FrozenTrial], study_name: str) -> list[TrialResult]:
    """A study's finished ``trials`` as results, in their order (budget-check stubs left out)."""
    return [TrialResult.from_trial(study_name, t) for t in trials
            if t.state.is_finished() and not t.user_attrs.get(OVER_BUDGET)]


def write_csv(path: Path, results: Iterable[TrialResult]) -> Path:
    """``trial, model, state, <hyperparameters>, val_accuracy, test_accuracy, epochs, seconds, train_images,
    train_gflop, stopped`` (atomic).

    ``epochs`` is the number of epochs trained; the ``epochs`` hyperparameter (the planned number, more
    than trained when pruned) is the column ``planned_epochs``. ``train_gflop`` is the compute the trial
    used and ``stopped`` says why it ended.
    """
    hparam_columns = ["planned_epochs" if name == "epochs" else name for name in HPARAM_NAMES]
    columns = ["trial", "model", "state", *hparam_columns, "val_accuracy", "test_accuracy", "epochs", "seconds",
               "train_images", "train_gflop", "stopped"]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for r in results:
            accuracies = ["" if v is None else round(v, 4) for v in (r.val_accuracy, r.test_accuracy)]
            gflop = "" if r.train_gflop is None else round(r.train_gflop, 3)
            writer.writerow([r.number, r.model or "", r.state, *(r.hparams.get(k, "") for k in HPARAM_NAMES),
                             *accuracies, r.epochs, round(r.seconds, 2), r.train_images, gflop, r.stopped])
    return path


def best_trial(results: Sequence[TrialResult]) -> TrialResult | None:
    """The COMPLETE trial with the highest validation accuracy (ties: the lowest number)."""
    return max((r for r in results if r.state == "COMPLETE" and r.val_accuracy is not None),
               key=lambda r: (r.val_accuracy, -r.number), default=None)


def summarize_study(study: optuna.Study, task: Task, candidates: Sequence[BankEntry], run_dir: Path
                    ) -> FinetuneOutcome:
    """``run_dir/finetune.csv``, and the best COMPLETE trial (its refit when the study holds one) exported
    to ``run_dir/best``."""
    from automl.finetune.refit import Refit

    trials = study.get_trials(deepcopy=False)  # by number: trials[n].number == n
    results = finished_results(trials, study.study_name)
    write_csv(run_dir / "finetune.csv", results)
    best = best_trial(results)
    refit = Refit.of_study(study, best) if best is not None else None
    best_dir = None
    if best is not None:
        entry = next(entry for entry in candidates if entry.name == best.model)
        best_dir = _export_best(best, refit, trials[best.number], entry, task, run_dir)
    return FinetuneOutcome(study=study.study_name, candidates=[entry.name for entry in candidates], trials=results,
                           best=best, refit=refit, best_dir=best_dir, n_counted=sum(map(counts, trials)),
                           optuna_study=study)


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
    out = export_model(run_dir / "best", weights, config, task.splits["test"].paths)
    log.info("best: trial %d %s%s, val %.2f%% test %.2f%% -> %s", best.number, best.model,
             " refit on train + val" if refit is not None else "", best.val_accuracy, config["test_accuracy"], out)
    return out
