"""Transferability scores + meta-features → predicted fine-tuned accuracy (percent) with an 80% interval.

**Prior (no history).** Cheap and honest, from what the rank stage measured on the probe set:

* ``linear`` — the cross-validated accuracy (percent) of a linear classifier on the probe features — is
  the anchor: it is an accuracy on this task's own labels, already in the right unit.
* The ranking signal is the primary score z-scored across the bank, optionally with the PARC paper's
  plasticity term (dbolya/parc ``metrics.add_plasticity``: ``z(primary) + depth / 50``, deeper models
  gaining more from fine-tuning): ``signal = z(primary) + plasticity × (depth / 50 − 1)``, the capacity
  term centred on a ResNet-50-deep model so the level of the prior stays the linear-probe accuracy,
  clipped to ±``PRIOR_MAX_SIGNAL`` so one outlying score cannot dominate.
* ``mean = chance + (100 − chance) · sigmoid(logit(a) + logits_per_z × signal)`` with
  ``a = (linear − chance) / (100 − chance)``, the linear probe's place between chance (``100 /
  num_classes``; 0 when the task's class count is unknown) and 100%: the shift happens in logit space, so
  it never leaves [chance, 100], models near the top keep their order instead of all clipping to 100%,
  and a poor score cannot predict an accuracy below guessing (1.6 logits ≈ 33 accuracy points in the
  middle of the range, ≈ 12 points near its top).
* Defaults (:class:`automl.settings.PriorSettings`) were chosen with ``python -m automl.bench`` (README,
  "Which ranking"); ``plasticity=1`` is the paper's ensemble.
* ``std = PRIOR_STD_FLOOR + PRIOR_STD_HEADROOM × (100 − linear)``: the probe says little about how much
  of the remaining headroom fine-tuning recovers, so the interval widens with the headroom.

Known bias: a linear probe on a few hundred images, with frozen features, *underestimates* what full
fine-tuning on the whole training split reaches — typically by several points, more for tasks far from
the source data and for small or shallow models (which the depth term pushes lower still). The prior is
therefore pessimistic in level; its ranking is the PARC ensemble's. Calibration learns the offset.

**Calibrated (with history).** :meth:`AccuracyPredictor.fit` takes measured transfers
(:class:`automl.history.TransferRecord`; measured accuracy = test accuracy, else validation accuracy;
for several trials of one model on one task, the trial with the best validation accuracy, as a search
would pick it) and fits a scikit-learn ``BayesianRidge`` to the *residual* ``measured − prior`` from
standardised inputs: the bank z-scores of every score, ``linear``, and log parameter count, depth, log
source images/classes, log task classes/train images, log2 image side. Missing meta-features are imputed
with the history's mean; inputs are clipped to the range seen in the history (no extrapolation). Records
are weighted so that every task counts equally. The predictive std (posterior + noise, at least
``MIN_STD``) gives the interval.

The residual model is learnt across tasks, so its evidence grows with the number of tasks ``T``, not of
records. The prediction is a mixture of the calibrated model (weight ``s = T / (T + prior_weight)``) and
the prior (weight ``1 − s``): mean ``s·cal + (1 − s)·prior``, variance ``s·σ_cal² + (1 − s)·σ_prior² +
s(1 − s)(cal − prior)²``. With fewer than ``MIN_RECORDS`` transfers it is the prior; with one task it is
halfway (``prior_weight=1``); it approaches the calibrated model as tasks accumulate. Every mean and bound
is clipped to [chance, 100].

:func:`leave_one_task_out` measures whether calibration helps: each task is predicted by a predictor
fitted on the other tasks only, next to the prior's predictions of the same records.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special, stats
from sklearn.impute import SimpleImputer
from sklearn.linear_model import BayesianRidge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from automl.settings import PriorSettings, RankSettings

if TYPE_CHECKING:
    from rich.table import Table

    from automl.history import TransferRecord

log = logging.getLogger(__name__)

LINEAR = "linear"  # the score holding the probe's cross-validated linear-classifier accuracy (percent)
PLASTICITY_DEPTH = 50.0  # PARC's capacity term is depth / 50
PRIOR_MAX_SIGNAL = 3.0
PRIOR_STD_FLOOR = 2.0  # accuracy points
PRIOR_STD_HEADROOM = 0.25  # fraction of the headroom (100 − linear) added to the prior's std
MIN_STD = 1.0  # accuracy points: the calibrated model never claims more certainty than this
MIN_RECORDS = 2
META_FEATURES = ("log10_num_params", "depth", "log10_source_num_images", "log10_source_num_classes",
                 "log10_num_classes", "log10_num_train", "log2_image_side")


@dataclass(frozen=True)
class Candidate:
    """One bank model on one task, as the predictor sees it.

    ``scores``: raw transferability scores by name, must include a finite ``linear`` in [0, 100];
    ``scores_z``: the same scores z-scored across the whole bank on this task (see :func:`zscore_bank`;
    a missing name counts as the bank mean, 0); ``model_meta``: ``num_params``, ``depth`` (weight layers),
    ``source_num_images``, ``source_num_classes``; ``task_meta``: ``num_classes``, ``num_train``,
    ``image_side`` (pixels). Missing meta-features are allowed.
    """

    model_name: str
    scores: Mapping[str, float]
    scores_z: Mapping[str, float]
    model_meta: Mapping[str, Any] = field(default_factory=dict)
    task_meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: TransferRecord) -> Candidate:
        return cls(record.model_name, record.scores, record.scores_z, record.model_meta, record.task_meta)


@dataclass(frozen=True)
class Prediction:
    """Predicted fine-tuned accuracy in percent for N candidates: ``mean``, ``low``, ``high``, each [N],
    with ``chance <= low <= mean <= high <= 100`` (``low``/``high`` bound the central ``interval`` mass;
    chance is ``100 / num_classes`` of the candidate's task, 0 when unknown)."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def __len__(self) -> int:
        return len(self.mean)


def zscore_bank(scores: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
    """Z-score every score name across a bank: ``scores[i]`` holds model i's raw scores on one task.

    Uses the sample std (ddof=1, as PARC's pandas code). Non-finite or missing values are left out of
    the statistics and of the output; a name with fewer than two finite values or no spread gets z = 0.
    Returns one dict per model, in input order.
    """
    names = sorted({name for model in scores for name in model})
    result: list[dict[str, float]] = [{} for _ in scores]
    for name in names:
        values = np.array([_finite_or_nan(model.get(name)) for model in scores])
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
    return [Candidate(name, dict(scores[name]), z_i, dict(model_meta[name]), dict(task_meta))
            for name, z_i in zip(names, z, strict=True)]


def measured_transfers(records: Iterable[TransferRecord]) -> list[TransferRecord]:
    """The records a predictor learns from: one per (task fingerprint, model name) — the trial with the
    best validation accuracy (else test accuracy) — among those with a measured accuracy and a finite
    ``linear`` score in [0, 100] (others are skipped with a warning). First-seen order."""
    best: dict[tuple[str, str], TransferRecord] = {}
    skipped = 0
    for record in records:
        if record.measured_accuracy is None:
            continue
        if _linear(record.scores) is None:
            skipped += 1
            continue
        key = (record.task_fingerprint, record.model_name)
        if key not in best or _selection_accuracy(record) > _selection_accuracy(best[key]):
            best[key] = record
    if skipped:
        log.warning("predictor: skipped %d measured record(s) without a finite %r score", skipped, LINEAR)
    return list(best.values())


class AccuracyPredictor:
    """Predict the fine-tuned accuracy (percent) of bank models on a task, with an interval.

    Args:
        primary: the transferability score used in the prior's ensemble signal (a key of ``scores_z``).
        logits_per_z: how far (in logits of the accuracy) the prior moves per bank standard deviation of
            the signal; >= 0.
        plasticity: weight of PARC's depth/50 capacity term in the signal (0 = off, 1 = the paper); >= 0.
        interval: central probability mass of ``[low, high]``, in (0, 1).
        prior_weight: how many tasks' worth of evidence the prior counts as when mixing it with the
            calibrated model (see the module docstring); > 0.

    Unfitted (or fitted on fewer than ``MIN_RECORDS`` usable transfers) it predicts the prior. Fitted
    attributes: ``n_records_``, ``n_tasks_``, ``weight_`` (the calibrated model's mixture weight),
    ``score_names_``.
    """

    def __init__(self, primary: str = RankSettings.primary, *, logits_per_z: float = PriorSettings.logits_per_z,
                 plasticity: float = PriorSettings.plasticity, interval: float = 0.8, prior_weight: float = 1.0):
        if not isinstance(primary, str) or not primary:
            raise ValueError(f"primary must be a score name, got {primary!r}")
        if not (logits_per_z >= 0 and plasticity >= 0):
            raise ValueError(f"logits_per_z={logits_per_z} and plasticity={plasticity} must be >= 0")
        if not 0.0 < interval < 1.0:
            raise ValueError(f"interval must be in (0, 1), got {interval}")
        if not prior_weight > 0:
            raise ValueError(f"prior_weight must be > 0, got {prior_weight}")
        self.primary = primary
        self.logits_per_z, self.plasticity = float(logits_per_z), float(plasticity)
        self.interval = float(interval)
        self.prior_weight = float(prior_weight)
        self.n_records_ = 0
        self.n_tasks_ = 0
        self.weight_ = 0.0
        self.score_names_: tuple[str, ...] = ()
        self._model: Pipeline | None = None
        self._low = self._high = np.empty(0)

    @property
    def is_calibrated(self) -> bool:
        return self._model is not None

    def fit(self, records: Iterable[TransferRecord]) -> AccuracyPredictor:
        """Fit the residual model on measured transfers (see :func:`measured_transfers`); returns self."""
        transfers = measured_transfers(records)
        tasks = [record.task_fingerprint for record in transfers]
        self.n_records_, self.n_tasks_ = len(transfers), len(set(tasks))
        self._model, self.weight_ = None, 0.0
        if self.n_records_ < MIN_RECORDS:
            log.info("predictor: %d measured transfer(s) in the history; using the prior", self.n_records_)
            return self
        candidates = [Candidate.from_record(record) for record in transfers]
        measured = np.array([record.measured_accuracy for record in transfers])
        prior_mean = self._prior(candidates)[0]
        self.score_names_ = tuple(sorted({name for c in candidates for name in c.scores_z}))
        features = self._features(candidates)
        with warnings.catch_warnings():  # an all-missing meta-feature has no range: left unclipped
            warnings.simplefilter("ignore", RuntimeWarning)
            self._low, self._high = np.nanmin(features, axis=0), np.nanmax(features, axis=0)
        _, task_index, task_sizes = np.unique(tasks, return_inverse=True, return_counts=True)
        weights = len(tasks) / (self.n_tasks_ * task_sizes[task_index])  # every task weighs the same; mean 1
        self._model = make_pipeline(SimpleImputer(keep_empty_features=True), StandardScaler(), BayesianRidge())
        self._model.fit(features, measured - prior_mean, bayesianridge__sample_weight=weights)
        self.weight_ = self.n_tasks_ / (self.n_tasks_ + self.prior_weight)
        return self

    def predict_prior(self, candidates: Sequence[Candidate]) -> Prediction:
        """The prior's prediction (ignores any fitted history)."""
        return self._interval(*self._prior(candidates))

    def predict(self, candidates: Sequence[Candidate]) -> Prediction:
        """Predicted fine-tuned accuracy for ``candidates`` (typically the whole bank on one task)."""
        prior_mean, prior_std, chance = self._prior(candidates)
        if self._model is None:
            return self._interval(prior_mean, prior_std, chance)
        features = np.clip(self._features(candidates), self._low, self._high)
        residual, residual_std = self._model.predict(features, return_std=True)
        calibrated, calibrated_std = prior_mean + residual, np.maximum(residual_std, MIN_STD)
        s = self.weight_
        mean = s * calibrated + (1 - s) * prior_mean
        variance = s * calibrated_std**2 + (1 - s) * prior_std**2 + s * (1 - s) * (calibrated - prior_mean) ** 2
        return self._interval(mean, np.sqrt(variance), chance)

    def _prior(self, candidates: Sequence[Candidate]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prior mean, its std and the chance level below which nothing is predicted (accuracy points),
        each [N]."""
        if not candidates:
            raise ValueError("no candidates to predict")
        if not any(self.primary in c.scores_z for c in candidates):
            known = sorted({name for c in candidates for name in c.scores_z})
            raise ValueError(f"primary score {self.primary!r} is missing from scores_z of every candidate "
                             f"(available: {known}); compute it in the rank stage or choose another primary")
        linear = np.array([_linear(c.scores) for c in candidates], dtype=float)
        if np.isnan(linear).any():
            bad = [c.model_name for c, value in zip(candidates, linear, strict=True) if np.isnan(value)]
            raise ValueError(f"candidate(s) {bad} lack a finite {LINEAR!r} score in [0, 100] (the probe's linear "
                             "accuracy in percent), which the prior is anchored on")
        z = np.array([_finite_or_nan(c.scores_z.get(self.primary)) for c in candidates])
        depth = np.array([_positive_or_nan(c.model_meta.get("depth")) for c in candidates])
        capacity = np.nan_to_num(depth / PLASTICITY_DEPTH - 1.0)  # unknown depth: no capacity shift
        signal = np.clip(np.nan_to_num(z) + self.plasticity * capacity, -PRIOR_MAX_SIGNAL, PRIOR_MAX_SIGNAL)
        chance = _chance(candidates)
        span = 100.0 - chance
        above_chance = np.clip((linear - chance) / span, 1e-3, 1 - 1e-3)  # chance and 100% have no logit
        mean = chance + span * special.expit(special.logit(above_chance) + self.logits_per_z * signal)
        return mean, PRIOR_STD_FLOOR + PRIOR_STD_HEADROOM * (100.0 - linear), chance

    def _features(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """[N, len(score_names_) + 1 + len(META_FEATURES)]: bank z-scores (missing = 0, the bank mean),
        linear accuracy, meta-features (missing = NaN, imputed later)."""
        rows = []
        for c in candidates:
            z = [np.nan_to_num(_finite_or_nan(c.scores_z.get(name))) for name in self.score_names_]
            rows.append([*z, _linear(c.scores), *_meta_features(c)])
        return np.array(rows, dtype=float).reshape(len(candidates), -1)

    def _interval(self, mean: np.ndarray, std: np.ndarray, floor: np.ndarray) -> Prediction:
        half = stats.norm.ppf(0.5 + self.interval / 2) * std
        mean = np.clip(mean, floor, 100.0)
        return Prediction(mean, np.clip(mean - half, floor, 100.0), np.clip(mean + half, floor, 100.0))


def _finite_or_nan(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _positive_or_nan(value: Any) -> float:
    value = _finite_or_nan(value)
    return value if value > 0 else math.nan


def _chance(candidates: Sequence[Candidate]) -> np.ndarray:
    """[N] accuracy (percent) of guessing on each candidate's task: 100 / num_classes, 0 when unknown."""
    classes = np.array([_finite_or_nan(c.task_meta.get("num_classes")) for c in candidates])
    return np.where(classes >= 2, 100.0 / np.where(classes >= 2, classes, 1.0), 0.0)


def _linear(scores: Mapping[str, float]) -> float | None:
    value = _finite_or_nan(scores.get(LINEAR))
    return value if 0.0 <= value <= 100.0 else None


def _selection_accuracy(record: TransferRecord) -> float:
    return record.val_accuracy if record.val_accuracy is not None else record.measured_accuracy


def _meta_features(candidate: Candidate) -> list[float]:
    """The values of META_FEATURES (NaN where unknown or not positive)."""
    model, task = candidate.model_meta, candidate.task_meta
    raw = [model.get("num_params"), model.get("depth"), model.get("source_num_images"),
           model.get("source_num_classes"), task.get("num_classes"), task.get("num_train"), task.get("image_side")]
    logs = [np.log10, None, np.log10, np.log10, np.log10, np.log10, np.log2]
    values = [_positive_or_nan(value) for value in raw]
    return [float(f(v)) if f is not None and np.isfinite(v) else v for f, v in zip(logs, values, strict=True)]


def predictor_options(rank: RankSettings) -> dict[str, Any]:
    """:class:`AccuracyPredictor` keyword arguments from the rank settings (primary score, prior weights)."""
    return {"primary": rank.primary, "logits_per_z": rank.prior.logits_per_z, "plasticity": rank.prior.plasticity}


def leave_one_task_out(records: Iterable[TransferRecord], primary: str = RankSettings.primary,
                       **options: Any) -> dict[str, Any]:
    """Leave-one-task-out evaluation of the calibrated predictor against the prior.

    For each task (``task_fingerprint``) a predictor is fitted on the other tasks' transfers and predicts
    this task's transfers (see :func:`measured_transfers`); the prior predicts the same transfers.
    ``options`` are :class:`AccuracyPredictor` keyword arguments.

    Returns a dict: ``primary``, ``interval``, ``num_tasks``, ``num_records``; ``overall`` and, per task,
    ``tasks[fingerprint]`` (with ``task_name``, ``num_records``), each holding ``prior`` and ``calibrated``
    metrics ``{"mae": accuracy points, "spearman": in [-1, 1] or NaN for fewer than 2 distinct values,
    "coverage": fraction of measured accuracies inside the interval}``; ``rows``: one dict per transfer
    (task_fingerprint, task_name, model_name, measured, prior, prior_low, prior_high, calibrated,
    calibrated_low, calibrated_high); ``helps``: whether the calibrated MAE is below the prior's.
    Raises ValueError with fewer than two tasks.
    """
    transfers = measured_transfers(records)
    tasks = list(dict.fromkeys(record.task_fingerprint for record in transfers))
    if len(tasks) < 2:
        raise ValueError(f"leave-one-task-out needs measured transfers on at least 2 tasks; the history has "
                         f"{len(transfers)} on {len(tasks)} task(s). Fine-tune on another task first "
                         "(or import a history CSV with `python -m automl.history import`).")
    rows = []
    for task in tasks:
        held_out = [record for record in transfers if record.task_fingerprint == task]
        predictor = AccuracyPredictor(primary, **options)
        predictor.fit(record for record in transfers if record.task_fingerprint != task)
        candidates = [Candidate.from_record(record) for record in held_out]
        prior, calibrated = predictor.predict_prior(candidates), predictor.predict(candidates)
        for i, record in enumerate(held_out):
            rows.append({
                "task_fingerprint": task, "task_name": record.task_name, "model_name": record.model_name,
                "measured": record.measured_accuracy,
                "prior": float(prior.mean[i]), "prior_low": float(prior.low[i]), "prior_high": float(prior.high[i]),
                "calibrated": float(calibrated.mean[i]), "calibrated_low": float(calibrated.low[i]),
                "calibrated_high": float(calibrated.high[i]),
            })
    per_task = {}
    for task in tasks:
        task_rows = [row for row in rows if row["task_fingerprint"] == task]
        per_task[task] = {"task_name": task_rows[0]["task_name"], "num_records": len(task_rows),
                          **_both_metrics(task_rows)}
    overall = _both_metrics(rows)
    return {"primary": primary, "interval": predictor.interval, "num_tasks": len(tasks), "num_records": len(rows),
            "overall": overall, "tasks": per_task, "rows": rows,
            "helps": overall["calibrated"]["mae"] < overall["prior"]["mae"]}


def _both_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    measured = np.array([row["measured"] for row in rows])
    return {name: _metrics(measured, np.array([row[name] for row in rows]),
                           np.array([row[f"{name}_low"] for row in rows]),
                           np.array([row[f"{name}_high"] for row in rows]))
            for name in ("prior", "calibrated")}


def _metrics(measured: np.ndarray, predicted: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, float]:
    distinct = len(measured) >= 2 and np.ptp(measured) > 0 and np.ptp(predicted) > 0
    return {
        "mae": float(np.mean(np.abs(predicted - measured))),
        "spearman": float(stats.spearmanr(predicted, measured).statistic) if distinct else math.nan,
        "coverage": float(np.mean((low <= measured) & (measured <= high))),
    }


def format_calibration(result: Mapping[str, Any]) -> Table:
    """A rich table of :func:`leave_one_task_out`'s result: prior and calibrated error side by side."""
    from rich.table import Table

    table = Table(title=f"Leave-one-task-out: predicted vs measured fine-tuned accuracy "
                        f"(primary={result['primary']}, {result['num_tasks']} tasks)")
    table.add_column("task")
    table.add_column("n", justify="right")
    for metric in ("MAE", "Spearman", f"{result['interval']:.0%} cover"):
        table.add_column(f"{metric}\nprior", justify="right")
        table.add_column(f"{metric}\ncalib.", justify="right")

    def cells(metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
        out = []
        for key, fmt in (("mae", "{:.2f}"), ("spearman", "{:+.2f}"), ("coverage", "{:.0%}")):
            for name in ("prior", "calibrated"):
                value = metrics[name][key]
                out.append("–" if math.isnan(value) else fmt.format(value))
        return out

    for entry in result["tasks"].values():
        table.add_row(entry["task_name"], str(entry["num_records"]), *cells(entry))
    table.add_section()
    table.add_row("all", str(result["num_records"]), *cells(result["overall"]), style="bold")
    prior_mae, calibrated_mae = result["overall"]["prior"]["mae"], result["overall"]["calibrated"]["mae"]
    verdict = "calibration helps" if result["helps"] else "calibration does not help yet"
    table.caption = (f"{verdict}: MAE {prior_mae:.2f} → {calibrated_mae:.2f} accuracy points; cover = share of "
                     "measured accuracies inside the predicted interval")
    return table
