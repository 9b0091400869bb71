"""Quick-Tune's warm start from the history: the configurations that did best on the most similar past
task, tasks compared by their meta-features (class count, training-set size, image side)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from automl.history.records import TransferRecord

TASK_META_KEYS = ("num_classes", "num_train", "image_side")


def task_distance(a: Mapping, b: Mapping) -> float:
    """Distance between two tasks' meta-features: differences of log class count, train size and image side."""
    return math.sqrt(sum((math.log(max(a[k], 1)) - math.log(max(b[k], 1))) ** 2 for k in TASK_META_KEYS))


def similar_task_hparams(records: Sequence[TransferRecord], task_meta: Mapping, models: Sequence[str],
                         max_distance: float = 1.0) -> list[dict]:
    """Best measured hyperparameters of ``models`` on the most similar past task (this one included).

    For each model, among COMPLETE fine-tuning records (those with a test accuracy) on tasks within
    ``max_distance`` of ``task_meta`` (``num_classes``, ``num_train``, ``image_side``), take the record
    with the best validation accuracy on the nearest task. Returns ``{model: name, **hparams}`` dicts, in
    the order of ``models``.
    """
    warm = []
    for name in models:
        measured = [r for r in records if r.model_name == name and r.kind == "finetune"
                    and r.test_accuracy is not None and r.val_accuracy is not None and r.hparams]
        scored = [(task_distance(task_meta, r.task_meta), -r.val_accuracy, r) for r in measured]
        scored = [item for item in scored if item[0] <= max_distance]
        if scored:
            best = min(scored, key=lambda item: item[:2])[2]
            warm.append({"model": name, **best.hparams})
    return warm
