"""What a search leaves, as plain records (below the logic that builds them, as optuna's ``trial/_frozen.py``):
one finished trial (:class:`TrialResult`), the refit of the best one (:class:`Refit`) and the whole
search (:class:`FinetuneOutcome`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.bank import training_gflop
from automl.finetune.attrs import (
    FAIL_REASON,
    HPARAMS,
    INTERRUPTED,
    MODEL_PARAM,
    OOM_RETRIES,
    REFIT,
    TEST_PREDICTIONS,
    WEIGHTS,
)


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
    oom_retries: int = 0  # times it ran out of memory and started again with half the batch size

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
            oom_retries=int(attrs.get(OOM_RETRIES, 0)),
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
        attrs = study.user_attrs.get(REFIT) or {}
        if attrs.get("trial") != best.number or not Path(attrs.get("weights", "")).is_file():
            return None
        return cls(**{**attrs, "weights": Path(attrs["weights"]), "test_predictions": Path(attrs["test_predictions"])})


@dataclass(frozen=True)
class FinetuneOutcome:
    """What :func:`run_finetune` leaves behind (the study holds the same, for every worker)."""

    study: str
    candidates: list[str]  # the models the study searches
    trials: list[TrialResult]  # the study's finished trials (all workers), by number
    best: TrialResult | None  # highest val_accuracy among COMPLETE trials (ties: lowest number)
    refit: Refit | None  # the refit of the best trial (None: finetune.refit off, or not yet)
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
