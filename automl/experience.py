"""The loop between runs: finished trials become history records, and past records warm-start new studies."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from automl.bank import BankEntry, weights_digest
from automl.history import History, TransferRecord
from automl.rank import RankedModel
from automl.tasks import Task


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
                      "val_curve": result.val_curve},
        ))


def _task_distance(a: Mapping, b: Mapping) -> float:
    """Distance between two tasks' meta-features: differences of log class count, train size and image side."""
    keys = ("num_classes", "num_train", "image_side")
    return math.sqrt(sum((math.log(max(a[k], 1)) - math.log(max(b[k], 1))) ** 2 for k in keys))


def similar_task_hparams(records: Sequence[TransferRecord], task: Task, models: Sequence[str],
                         max_distance: float = 1.0) -> list[dict]:
    """Best measured hyperparameters of ``models`` on the most similar past task (this one included).

    For each model, among COMPLETE fine-tuning records (those with a test accuracy) on tasks within
    ``max_distance`` of this task's meta-features, take the record with the best validation accuracy on
    the nearest task. Returns ``{model: name, **hparams}`` dicts, in the order of ``models``.
    """
    meta = task.meta()
    warm = []
    for name in models:
        measured = [r for r in records if r.model_name == name and r.kind == "finetune"
                    and r.test_accuracy is not None and r.val_accuracy is not None and r.hparams]
        scored = [(_task_distance(meta, r.task_meta), -r.val_accuracy, r) for r in measured]
        scored = [item for item in scored if item[0] <= max_distance]
        if scored:
            best = min(scored, key=lambda item: item[:2])[2]
            warm.append({"model": name, **best.hparams})
    return warm
