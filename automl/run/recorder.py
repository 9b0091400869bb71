"""The run's side of the loop between runs: every measured transfer becomes a history record that carries
what predicted it (the next ranking learns from it; :mod:`automl.history`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from automl.bank import BankEntry, weights_digest
from automl.history import History, TransferRecord
from automl.images import Task
from automl.predictor import shipped_curve_model
from automl.rank import RankedModel


def transfer_record(task: Task, entry: BankEntry, *, model_meta: Mapping, task_meta: Mapping,
                    scores: Mapping[str, float], scores_z: Mapping[str, float], run_id: str, kind: str,
                    trial: int | None, hparams: Mapping,
                    val_accuracy: float | None, test_accuracy: float | None, epochs: int | None,
                    seconds: float | None, fidelity: Mapping | None = None) -> TransferRecord:
    """A history record of one measured transfer of ``entry`` to ``task``, carrying what predicted it: the
    scores (raw, and z-scored across the bank on this task) and meta-features of the ranked candidate."""
    return TransferRecord(
        run_id=run_id, kind=kind, trial=trial, task_name=task.name, task_fingerprint=task.fingerprint,
        task_meta=dict(task_meta), model_name=entry.name, arch=entry.arch, weights_digest=weights_digest(entry),
        model_meta=dict(model_meta), scores=dict(scores), scores_z=dict(scores_z), hparams=dict(hparams),
        val_accuracy=val_accuracy, test_accuracy=test_accuracy, epochs=epochs, seconds=seconds,
        fidelity=dict(fidelity or {}),
    )


class TrialRecorder:
    """``on_trial_finished`` callback of the finetune stage: every COMPLETE or PRUNED trial → one record."""

    def __init__(self, history: History, task: Task, ranked: Sequence[RankedModel]):
        self.history, self.task = history, task
        self.ranked = {model.name: model for model in ranked}

    def __call__(self, result) -> None:
        if result.state not in ("COMPLETE", "PRUNED") or result.model not in self.ranked:
            return
        model = self.ranked[result.model]
        self.history.add(transfer_record(
            self.task, model.entry, model_meta=model.model_meta, task_meta=model.task_meta, scores=model.scores,
            scores_z=model.scores_z,
            run_id=result.study, kind="finetune", trial=result.number,
            hparams=result.hparams, val_accuracy=result.val_accuracy, test_accuracy=result.test_accuracy,
            epochs=result.epochs, seconds=result.seconds,
            fidelity={"state": result.state, "planned_epochs": result.hparams.get("epochs"),
                      "val_curve": result.val_curve, **curve_estimate(result, self.task.num_classes)},
        ))


def curve_estimate(result, num_classes: int) -> dict:
    """For a trial stopped early with a validation curve: ``{"curve_estimate": {mean, low, high}}``, the test
    accuracy (percent) its curve was headed for (:mod:`automl.predictor.curves`); else nothing."""
    planned = result.hparams.get("epochs")
    if result.state != "PRUNED" or not result.val_curve or not planned:
        return {}
    estimate = shipped_curve_model().estimate(result.val_curve, int(planned), 100.0 / num_classes)
    return {"curve_estimate": {"mean": round(estimate.mean, 3), "low": round(estimate.low, 3),
                               "high": round(estimate.high, 3)}}
