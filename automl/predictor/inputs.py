"""What the accuracy model sees of one bank model on one task: a fixed-length feature vector built from
its transferability scores (relative to the rest of its bank), the probe's accuracies (absolute), and
the model's and task's meta-features.

Accuracies are modelled in the *logit of the accuracy above chance*: ``a = (acc - chance) / (100 - chance)``
and ``logit(a)``, so that predictions stay in [chance, 100] and differences near the top count as much
as in the middle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

LEVEL_CLIP = 0.01  # accuracies above chance are clipped to [1%, 99%] of the headroom before the logit
LEVEL_SCORES = ("linear", "knn")  # scores that are accuracies in percent on the probe
# Of the model's meta-data only whether it has a source head: parameter count, FLOPs, depth and source-set
# size identify an architecture (and a pretraining) without saying how it transfers, so a model that learned
# them knew the benchmark's architectures, not transfer: on the ``fresh`` bank of new architectures the
# predictor that used them ranked 13.5 Pearson points below the linear probe. A user's checkpoints lie far
# outside the benchmark's range of all four besides.
MODEL_FEATURES = ("headless",)


@dataclass(frozen=True)
class Candidate:
    """One bank model on one task, as the predictor sees it.

    ``scores``: raw transferability scores by name (NaN where a score does not apply); ``scores_z``: the
    same z-scored across the whole bank on this task (:func:`zscore_bank`; missing = the bank mean);
    ``model_meta``: ``num_params``, ``depth``, ``mflops``, ``source_num_images``, ``num_classes`` (of the
    checkpoint's head, 0 = headless); ``task_meta``:
    ``num_classes``, ``num_train``, ``image_side`` (pixels), and the whole bank's means
    (:func:`bank_candidates`): ``bank_mean_linear``/``bank_mean_knn`` of the probe accuracies and
    ``bank_mean_<f>`` of each model feature in ``MODEL_FEATURES``, so that a record of one model keeps its
    place in its bank. Missing meta-features are allowed.
    """

    model_name: str
    scores: Mapping[str, float]
    scores_z: Mapping[str, float]
    model_meta: Mapping[str, Any] = field(default_factory=dict)
    task_meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def chance(self) -> float:
        """Accuracy (percent) of guessing on the task: 100 / num_classes (0 when unknown)."""
        classes = _finite(self.task_meta.get("num_classes"))
        return 100.0 / classes if classes >= 2 else 0.0


def zscore_bank(scores: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
    """Z-score every score name across a bank: ``scores[i]`` holds model i's raw scores on one task.

    Uses the sample std (ddof=1, as PARC's pandas code). Non-finite or missing values are left out of
    the statistics and of the output; a name with fewer than two finite values or no spread gets z = 0.
    Returns one dict per model, in input order.
    """
    names = sorted({name for model in scores for name in model})
    result: list[dict[str, float]] = [{} for _ in scores]
    for name in names:
        values = np.array([_finite(model.get(name)) for model in scores])
        finite = np.isfinite(values)
        spread = float(np.std(values[finite], ddof=1)) if finite.sum() >= 2 else 0.0
        center = float(np.mean(values[finite])) if finite.any() else 0.0
        for i in np.flatnonzero(finite):
            result[i][name] = (values[i] - center) / spread if spread > 0 else 0.0
    return result


def bank_candidates(scores: Mapping[str, Mapping[str, float]], model_meta: Mapping[str, Mapping[str, Any]],
                    task_meta: Mapping[str, Any]) -> list[Candidate]:
    """Candidates for a whole bank on one task, with ``scores_z`` computed across the bank.

    ``scores`` and ``model_meta`` are keyed by model name (the order of ``scores`` is kept).
    """
    if set(scores) != set(model_meta):
        raise ValueError(f"scores and model_meta name different models: {sorted(set(scores) ^ set(model_meta))}")
    names = list(scores)
    z = zscore_bank([scores[name] for name in names])
    model_features = np.array([_model_features(model_meta[name]) for name in names])
    context = {**task_meta, **{f"bank_mean_{score}": _mean(scores[name].get(score) for name in names)
                               for score in LEVEL_SCORES},
               **{f"bank_mean_{feature}": float(value)
                  for feature, value in zip(MODEL_FEATURES, model_features.mean(axis=0), strict=True)}}
    return [Candidate(name, dict(scores[name]), z_i, dict(model_meta[name]), dict(context))
            for name, z_i in zip(names, z, strict=True)]


def _mean(values) -> float:
    finite = [v for v in (_finite(value) for value in values) if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def to_level(accuracy: np.ndarray, chance: np.ndarray) -> np.ndarray:
    """Accuracy (percent) → logit of its place between chance and 100% (clipped, see LEVEL_CLIP)."""
    share = (np.asarray(accuracy, dtype=float) - chance) / (100.0 - chance)
    return special.logit(np.clip(share, LEVEL_CLIP, 1 - LEVEL_CLIP))


def from_level(level: np.ndarray, chance: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_level` (without the clipping): an accuracy in [chance, 100]."""
    return chance + (100.0 - chance) * special.expit(level)


def feature_names(score_names: Sequence[str]) -> list[str]:
    return ([f"z_{name}" for name in score_names]
            + [f"level_{name}" for name in LEVEL_SCORES] + [f"bank_level_{name}" for name in LEVEL_SCORES]
            + ["log_classes", "log_train_per_class", "log_side", *MODEL_FEATURES]
            + [f"relative_level_{name}" for name in LEVEL_SCORES] + [f"relative_{name}" for name in MODEL_FEATURES])


def bank_features(candidates: Sequence[Candidate], score_names: Sequence[str]) -> np.ndarray:
    """[N, len(feature_names(score_names))] for one bank's candidates on one task (see the names)."""
    if not candidates:
        raise ValueError("no candidates")
    chance = np.array([c.chance for c in candidates])
    z = np.array([[_or_zero(c.scores_z.get(name)) for name in score_names] for c in candidates]).reshape(
        len(candidates), len(score_names))
    levels, bank_levels = [], []
    for name in LEVEL_SCORES:
        raw = np.array([_finite(c.scores.get(name)) for c in candidates])
        # The whole bank's mean, as bank_candidates recorded it (a history holds only the fine-tuned models).
        bank_mean = np.array([_finite(c.task_meta.get(f"bank_mean_{name}")) for c in candidates])
        bank_mean = np.where(np.isfinite(bank_mean), bank_mean, np.nanmean(raw) if np.isfinite(raw).any() else chance)
        levels.append(to_level(np.where(np.isfinite(raw), raw, bank_mean), chance))
        bank_levels.append(to_level(bank_mean, chance))
    levels, bank_levels = np.stack(levels, axis=1), np.stack(bank_levels, axis=1)
    task = np.array([_task_features(c.task_meta) for c in candidates])
    model = np.array([_model_features(c.model_meta) for c in candidates])
    # Each model against the rest of its bank: what separates models on one task (the ranking) is
    # relative (bigger, deeper, better probe than the others), whatever the bank.
    bank_model = np.array([[_finite(c.task_meta.get(f"bank_mean_{feature}")) for feature in MODEL_FEATURES]
                           for c in candidates])
    bank_model = np.where(np.isfinite(bank_model), bank_model, model.mean(axis=0))
    return np.concatenate([z, levels, bank_levels, task, model, levels - bank_levels, model - bank_model], axis=1)


def _task_features(task: Mapping[str, Any]) -> list[float]:
    classes = max(_finite(task.get("num_classes"), 2.0), 2.0)
    train = max(_finite(task.get("num_train"), classes), 1.0)
    return [math.log2(classes), math.log2(train / classes), math.log2(max(_finite(task.get("image_side"), 32), 1))]


def _model_features(model: Mapping[str, Any]) -> list[float]:
    """In the order of MODEL_FEATURES."""
    return [float(_finite(model.get("num_classes"), 1.0) == 0)]  # no source classifier: no probabilities


def _finite(value: Any, default: float = math.nan) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def _or_zero(value: Any) -> float:
    value = _finite(value)
    return value if math.isfinite(value) else 0.0
