"""The accuracy predictor: a bank's transferability scores → each model's predicted fine-tuned accuracy
(percent) with an 80% interval.

**Cold start.** The accuracy model (:mod:`.model`, the kind ``rank.predictor.kind`` names) fitted on the
shipped meta-benchmark (:mod:`.shipped`): 84 checkpoints of 7 banks fine-tuned on 9 targets with one
fixed recipe. It ships with the package, needs nothing else and is fitted once per process.

**With history.** The user's own measured transfers refine it, but only those comparable with what it
predicts: fits that ran to their planned end (``record.complete``; a trial pruned after 2 epochs says
little about the fully fine-tuned accuracy), one per (task, model) — the one a search would pick, by
validation accuracy. They are added to the shipped records, each task weighing as much as a shipped
target, and the refined model is kept only if it predicts each of the user's tasks, held out in turn,
better than the cold start did (:func:`leave_one_task_out`); otherwise the cold start stays.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.predictor.calibration import judge
from automl.predictor.inputs import Candidate, bank_features, to_level
from automl.predictor.model import AccuracyModel
from automl.predictor.shipped import DATA_DIR, load_meta
from automl.settings import PredictorSettings

if TYPE_CHECKING:
    from automl.history import TransferRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """Predicted fine-tuned accuracy in percent for N candidates: ``mean``, ``low``, ``high``, each [N],
    with ``chance <= low <= mean <= high <= 100`` (chance = 100 / classes of the candidate's task)."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def __len__(self) -> int:
        return len(self.mean)


@dataclass(frozen=True)
class TrainingSet:
    """Rows for the accuracy model: features [N, F], level [N], group (task), weight, cell (the whole
    bank measured on a task the row belongs to; "" for a history row) and chance (percent) per row."""

    features: np.ndarray
    level: np.ndarray
    groups: np.ndarray
    weights: np.ndarray
    cells: np.ndarray
    chance: np.ndarray

    def __add__(self, other: TrainingSet) -> TrainingSet:
        return TrainingSet(*(np.concatenate([a, b]) for a, b in zip(self.arrays(), other.arrays(), strict=True)))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.features, self.level, self.groups, self.weights, self.cells, self.chance


@functools.lru_cache(maxsize=4)
def shipped_training_set(data_dir: str = str(DATA_DIR)) -> tuple[TrainingSet, tuple[str, ...]]:
    """The shipped records as a training set, and the score names its features use."""
    data = load_meta(data_dir)
    features = np.concatenate([cell.features for cell in data.cells])
    chance = np.concatenate([cell.chance for cell in data.cells])
    level = np.concatenate([to_level(cell.oracle, cell.chance) for cell in data.cells])
    groups = np.array([f"meta:{cell.target}" for cell in data.cells for _ in cell.candidates])
    cells = np.array([cell.name for cell in data.cells for _ in cell.candidates])
    return TrainingSet(features, level, groups, np.ones(len(level)), cells, chance), tuple(data.score_names)


@functools.lru_cache(maxsize=4)
def _cold_model(kind: str, coverage: float, data_dir: str) -> AccuracyModel:
    training, _ = shipped_training_set(data_dir)
    return AccuracyModel(kind, coverage).fit(*training.arrays())


def comparable_transfers(records: Iterable[TransferRecord], estimated: bool = False) -> list[TransferRecord]:
    """The records a predictor learns from, one per (task, model), the one a search would pick (best
    validation accuracy): complete fits with a measured accuracy and, with ``estimated``, for the models no
    fit of which ran to its end, a fit stopped early whose validation curve says where it was headed
    (``record.curve_estimate``). First-seen order."""
    def selection(record: TransferRecord) -> float:
        return record.val_accuracy if record.val_accuracy is not None else record.outcome_accuracy

    complete: dict[tuple[str, str], TransferRecord] = {}
    stopped: dict[tuple[str, str], TransferRecord] = {}
    for record in records:
        key = (record.task_fingerprint, record.model_name)
        chosen = complete if record.complete and record.measured_accuracy is not None else (
            stopped if estimated and record.curve_estimate is not None else None)
        if chosen is not None and (key not in chosen or selection(record) > selection(chosen[key])):
            chosen[key] = record
    return [*complete.values(), *(record for key, record in stopped.items() if key not in complete)]


def history_training_set(transfers: Sequence[TransferRecord], score_names: Sequence[str],
                         rows_per_task: float) -> TrainingSet:
    """The user's transfers as rows; each task's rows together weigh ``rows_per_task``."""
    by_task: dict[str, list[TransferRecord]] = {}
    for record in transfers:
        by_task.setdefault(record.task_fingerprint, []).append(record)
    parts = []
    for task, items in by_task.items():
        candidates = [candidate_of(record) for record in items]
        accuracy = np.array([record.outcome_accuracy for record in items])
        chance = np.array([c.chance for c in candidates])
        parts.append(TrainingSet(bank_features(candidates, score_names), to_level(accuracy, chance),
                                 np.array([f"user:{task}"] * len(items)),
                                 np.full(len(items), rows_per_task / len(items)), np.full(len(items), ""), chance))
    return functools.reduce(TrainingSet.__add__, parts)


def candidate_of(record: TransferRecord) -> Candidate:
    return Candidate(record.model_name, record.scores, record.scores_z, record.model_meta, record.task_meta)


class AccuracyPredictor:
    """Predict the fine-tuned accuracy (percent) of bank models on a task, with an interval.

    Fitted attributes: ``source_`` (``"meta-benchmark"`` or ``"meta-benchmark + N task(s) of history"``),
    ``n_records_`` and ``n_tasks_`` (the comparable transfers of the history and their tasks),
    ``calibration_`` (the leave-one-task-out comparison, when the history has 2 tasks or more).
    """

    def __init__(self, settings: PredictorSettings | None = None, data_dir: str | Path | None = None):
        self.settings = settings or PredictorSettings()
        self.data_dir = str(data_dir or self.settings.data or DATA_DIR)
        self.source_ = "meta-benchmark"
        self.n_records_ = self.n_tasks_ = 0
        self.calibration_: dict | None = None
        self._model: AccuracyModel | None = None

    @property
    def score_names(self) -> tuple[str, ...]:
        return shipped_training_set(self.data_dir)[1]

    def cold_start(self) -> AccuracyModel:
        return _cold_model(self.settings.kind, self.settings.coverage, self.data_dir)

    def fit(self, records: Iterable[TransferRecord] = ()) -> AccuracyPredictor:
        """Refine the cold start with ``records`` when that helps on the user's own tasks (module docstring)."""
        records = list(records)
        transfers = comparable_transfers(records)
        self.n_records_, self.n_tasks_ = len(transfers), len({r.task_fingerprint for r in transfers})
        self._model, self.source_, self.calibration_ = None, "meta-benchmark", None
        if self.n_tasks_ >= 2:
            self.calibration_ = leave_one_task_out(records, self.settings, self.data_dir)
            if self.calibration_["helps"]:
                self._model = self.refined(comparable_transfers(records, self.settings.learn_from_curves))
                self.source_ = f"meta-benchmark + {self.n_tasks_} task(s) of history"
        log.info("predictor: %s (%d comparable transfer(s) on %d task(s) in the history)", self.source_,
                 self.n_records_, self.n_tasks_)
        return self

    def refined(self, transfers: Sequence[TransferRecord]) -> AccuracyModel:
        """The accuracy model fitted on the shipped records plus ``transfers``, with the cold start's
        interval (how well that interval holds on the user's tasks is what :mod:`.calibration` reports)."""
        shipped, names = shipped_training_set(self.data_dir)
        rows_per_task = len(shipped.level) / len(np.unique(shipped.groups))
        training = shipped + history_training_set(transfers, names, rows_per_task)
        return self.cold_start().refitted(training.features, training.level, training.weights, training.cells)

    def predict(self, candidates: Sequence[Candidate], model: AccuracyModel | None = None) -> Prediction:
        """Predicted fine-tuned accuracy for ``candidates`` (a whole bank on one task)."""
        model = model or self._model or self.cold_start()
        chance = np.array([c.chance for c in candidates])
        mean, low, high = model.predict(bank_features(candidates, self.score_names), chance)
        return Prediction(mean, low, high)


def leave_one_task_out(records: Sequence[TransferRecord], settings: PredictorSettings | None = None,
                       data_dir: str | None = None) -> dict[str, Any]:
    """Cold start vs refined-on-the-other-tasks, on each of the history's tasks in turn.

    Each task's complete fits are predicted (:func:`comparable_transfers`) by the model refined on the other
    tasks' (with ``settings.learn_from_curves``, their fits stopped early too). Returns ``num_tasks``,
    ``num_records``, ``coverage`` (the interval's nominal share); ``overall`` and per task
    ``tasks[fingerprint]`` (with ``task_name``, ``num_records``) holding for ``cold_start`` and
    ``calibrated`` ``{"mae": accuracy points, "spearman": in [-1, 1] or NaN, "coverage": share inside
    the interval}``; ``rows``: one dict per transfer; ``helps``: the refined model has the lower MAE *and*
    a Spearman no more than ``SPEARMAN_TOLERANCE`` lower. Raises ValueError with fewer than two tasks.
    """
    transfers = comparable_transfers(records)  # judged on: measured by complete fits
    learned = comparable_transfers(records, estimated=(settings or PredictorSettings()).learn_from_curves)
    tasks = list(dict.fromkeys(record.task_fingerprint for record in transfers))
    if len(tasks) < 2:
        raise ValueError(f"leave-one-task-out needs complete fine-tuning records on at least 2 tasks; the history "
                         f"has {len(transfers)} on {len(tasks)} task(s). Fine-tune on another task first (or import "
                         "a history CSV with `python -m automl.history action=import file=...`).")
    predictor = AccuracyPredictor(settings, data_dir)
    rows = []
    for task in tasks:
        held_out = [record for record in transfers if record.task_fingerprint == task]
        refined = predictor.refined([record for record in learned if record.task_fingerprint != task])
        candidates = [candidate_of(record) for record in held_out]
        both = {"cold_start": predictor.predict(candidates, predictor.cold_start()),
                "calibrated": predictor.predict(candidates, refined)}
        for i, record in enumerate(held_out):
            rows.append({"task_fingerprint": task, "task_name": record.task_name, "model_name": record.model_name,
                         "measured": record.measured_accuracy,
                         **{f"{name}{suffix}": float(getattr(p, part)[i]) for name, p in both.items()
                            for suffix, part in (("", "mean"), ("_low", "low"), ("_high", "high"))}})
    return {"coverage": predictor.settings.coverage, "num_tasks": len(tasks), "num_records": len(rows), "rows": rows,
            **judge(rows)}
