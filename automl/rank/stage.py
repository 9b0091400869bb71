"""Rank stage: probe → extract (cached) → transferability scores → predicted fine-tuned accuracy.

``rank_bank`` returns a :class:`Ranking` (best model first, by predicted accuracy) and
``write_ranking_csv`` writes ``ranking.csv``: ``rank, model, arch, source``, one column per score,
``predicted_accuracy, predicted_low, predicted_high``.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from automl._fileio import atomic_path
from automl.bank import Bank, BankEntry, BankError, model_meta_of
from automl.images.tasks import Task
from automl.predictor import AccuracyPredictor, bank_candidates
from automl.rank.embeddings import extract_bank
from automl.rank.probe import sample_probe
from automl.settings import ProbeSettings, RankSettings
from automl.transferability import score_many

log = logging.getLogger(__name__)


@dataclass
class RankedModel:
    """One bank model on one task: its scores and predicted fine-tuned accuracy (percent)."""

    entry: BankEntry
    scores: dict[str, float]  # raw scores, NaN where a score does not apply (e.g. leep on a headless model)
    scores_z: dict[str, float]  # the same, z-scored across the bank on this task (finite ones only)
    model_meta: dict
    task_meta: dict  # the task's meta-features and the bank's context (automl.predictor.inputs.Candidate)
    predicted: float
    low: float
    high: float

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass
class Ranking:
    task: Task
    models: list[RankedModel]  # best first
    score_names: list[str]
    predictor: str  # what the predictor learnt from (the meta-benchmark, and the history when it helps)
    failed: dict[str, str] = field(default_factory=dict)  # bank entry → why it could not be ranked
    seconds: dict[str, float] = field(default_factory=dict)  # stage part → wall time

    def top(self, k: int) -> list[RankedModel]:
        return self.models[:k]


def rank_bank(task: Task, bank: Bank, *, probe: ProbeSettings, rank: RankSettings, cache_dir: Path,
              history_records: Sequence = (), device: str = "cpu", on_error: str = "skip") -> Ranking:
    """Rank every model of ``bank`` on ``task`` by predicted fine-tuned accuracy (best first).

    Args:
        task, bank: what to rank.
        probe: the probe set drawn from the task's training split.
        rank: which scores (and their options), the predictor, the batch size.
        cache_dir: probe features are cached under it.
        history_records: measured transfers that may refine the predictor (:mod:`automl.predictor`).
        device: where features are extracted (already resolved, not ``auto``).
        on_error: ``skip`` ranks the rest when an entry cannot be loaded or gives NaN features (listed in
            ``Ranking.failed``); ``error`` stops with every such entry named.
    """
    score_names = rank.score_names
    seconds = {}
    start = time.perf_counter()
    probe_indices = sample_probe(task.splits["train"].labels, probe)
    extracted = extract_bank(bank, task, probe_indices, cache_dir, device=device, batch_size=rank.batch_size)
    seconds["extract"] = time.perf_counter() - start

    failed = {name: str(result) for name, result in extracted.items() if isinstance(result, Exception)}
    usable = {name: result for name, result in extracted.items() if not isinstance(result, Exception)}
    details = "\n  ".join(f"{name}: {reason}" for name, reason in failed.items())
    if failed and (on_error == "error" or not usable):
        what = (f"no model of bank {bank.name!r} could be loaded" if not usable else
                f"{len(failed)} model(s) of bank {bank.name!r} could not be loaded")
        hint = "" if not usable else " (bank.on_error=skip ranks the others)"
        raise BankError(f"{what}{hint}:\n  {details}")
    if failed:
        log.warning("skipping %d bank model(s) that could not be loaded (bank.on_error=error stops instead):\n  %s",
                    len(failed), details)

    start = time.perf_counter()
    scores = {name: score_many(score_names, f.features, f.labels, f.probs, rank.options)[0]
              for name, f in usable.items()}
    seconds["score"] = time.perf_counter() - start

    entries = {entry.name: entry for entry in bank.entries}
    candidates = bank_candidates(scores, {name: model_meta_of(entries[name]) for name in usable}, task.meta())
    predictor = AccuracyPredictor(rank.predictor).fit(history_records)
    prediction = predictor.predict(candidates)
    models = [
        RankedModel(entries[c.model_name], c.scores, c.scores_z, c.model_meta, c.task_meta,
                    float(prediction.mean[i]), float(prediction.low[i]), float(prediction.high[i]))
        for i, c in enumerate(candidates)
    ]
    models.sort(key=lambda m: (-m.predicted, -m.high, m.name))
    return Ranking(task, models, list(score_names), predictor=predictor.source_, failed=failed, seconds=seconds)


def write_ranking_csv(ranking: Ranking, path: Path) -> Path:
    """``rank, model, arch, source, <scores...>, predicted_accuracy, predicted_low, predicted_high``."""
    columns = ["rank", "model", "arch", "source", *ranking.score_names,
               "predicted_accuracy", "predicted_low", "predicted_high"]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for rank, model in enumerate(ranking.models, start=1):
            writer.writerow([rank, model.name, model.entry.arch, model.entry.source_name,
                             *(_fmt(model.scores[s]) for s in ranking.score_names),
                             _fmt(model.predicted), _fmt(model.low), _fmt(model.high)])
    return path


def ranking_table(ranking: Ranking, show: int = 10) -> Table:
    """A rich table of the top ``show`` models: predicted accuracy with its interval and the probe's
    linear and kNN accuracies (every score is in ranking.csv)."""
    table = Table(title=f"Ranking on {ranking.task.name}: {len(ranking.models)} models, predictor learnt from "
                        f"{ranking.predictor}")
    scores = [name for name in ("linear", "knn") if name in ranking.score_names]
    for column in ("#", "model", "source", "predicted %", "80% interval", *scores):
        # names wrap rather than being cut: the table fits 80 columns and every name stays whole
        left = column in ("model", "source")
        table.add_column(column, justify="left" if left else "right", overflow="fold" if left else "ellipsis",
                         no_wrap=not left)
    for rank, model in enumerate(ranking.top(show), start=1):
        table.add_row(str(rank), model.name, model.entry.source_name, f"{model.predicted:.1f}",
                      f"{model.low:.1f}–{model.high:.1f}", *(_fmt(model.scores[s], 2) for s in scores))
    extract, score = ranking.seconds.get("extract", 0.0), ranking.seconds.get("score", 0.0)
    table.caption = f"features {extract:.1f} s, scores {score:.1f} s; every score is in ranking.csv"
    return table


def _fmt(value: float, digits: int = 4) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"
