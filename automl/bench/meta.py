"""Ranking methods judged on the meta-benchmark (``bench.data=meta``), only ever on data they were not
fitted or picked on.

The shipped data (:mod:`automl.bench.build`) gives, for 4 banks x 9 targets x 5 probe seeds, every
model's scores and its oracle accuracy. A *cell* is one bank on one target with one probe set: the
methods rank its 12 models. Methods:

* every raw score, and static baselines that need no probe at all: parameter count, forward FLOPs,
  depth, source accuracy;
* ``best score`` and ``best z-mean`` — procedures that *pick* the single score, or the equal-weight
  mean of z-scores of up to 3 scores, with the best mean Pearson on the training cells;
* ``model:<kind>`` — the accuracy model (:mod:`automl.accuracy`) fitted on the training cells; its
  prediction is an accuracy with an interval.

Protocols (training cells → held-out cells): ``bank`` (leave one bank out), ``target`` (leave one target
out) and ``both`` (train on the other banks *and* other targets, test on the held-out bank and target:
a bank and a task nobody tuned anything on). Per held-out cell: Pearson x100, weighted Kendall tau,
top-1 regret (accuracy points), top-3 hit; for accuracies, mean absolute error, the share of measured
accuracies inside the 80% interval and the median interval width. Means over the held-out cells.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automl.accuracy.features import Candidate, bank_candidates, bank_features, feature_names, to_level
from automl.accuracy.model import KINDS, AccuracyModel
from automl.bench.data import BenchError
from automl.bench.metrics import pearson_x100, top1_regret, top_k_hit, weighted_tau

PROTOCOLS = ("bank", "target", "both")
STATIC = {"params": "num_params", "mflops": "mflops", "depth": "depth", "source accuracy": "source_accuracy"}
MODEL_META = ("num_params", "depth", "mflops", "source_num_images", "source_num_classes", "num_classes",
              "source_accuracy")


@dataclass
class Cell:
    """One bank on one target with one probe set: its models, their scores and oracle accuracies."""

    bank: str
    target: str
    seed: int
    candidates: list[Candidate]
    oracle: np.ndarray  # [N] test accuracy (percent) of the fixed recipe
    features: np.ndarray = field(default_factory=lambda: np.empty(0))  # [N, F] accuracy-model features

    @property
    def chance(self) -> np.ndarray:
        return np.array([c.chance for c in self.candidates])


@dataclass
class MetaData:
    cells: list[Cell]
    score_names: list[str]
    banks: list[str]
    targets: list[str]
    models: dict[str, dict]  # model -> models.csv row
    recipe: dict


def load_meta(folder: str | Path) -> MetaData:
    """The meta-benchmark's data files in ``folder`` (written by ``bench.mode=build``) as cells."""
    folder = Path(folder)
    try:
        models = {row["model"]: row for row in _read(folder / "models.csv")}
        targets = {row["target"]: row for row in _read(folder / "targets.csv")}
        oracle = {(row["model"], row["target"]): float(row["test_accuracy"]) for row in _read(folder / "oracle.csv")}
        score_rows = _read(folder / "scores.csv")
        recipe = json.loads((folder / "recipe.json").read_text())
    except (OSError, KeyError, ValueError) as exc:
        raise BenchError(f"{folder}: not meta-benchmark data ({exc}); build it with "
                         "python -m automl.bench bench.mode=build") from exc
    score_names = sorted(c for c in score_rows[0] if c not in ("bank", "model", "target", "seed")
                         and not c.startswith("ms_"))
    grouped: dict[tuple[str, str, int], dict[str, dict[str, float]]] = {}
    for row in score_rows:
        key = (row["bank"], row["target"], int(row["seed"]))
        grouped.setdefault(key, {})[row["model"]] = {n: float(row[n]) if row[n] != "" else math.nan
                                                     for n in score_names}
    cells = []
    for (bank, target, seed), scores in grouped.items():
        meta = {m: {k: _number(models[m][k]) for k in MODEL_META} for m in scores}
        task = {k: _number(targets[target][k]) for k in ("num_classes", "num_train", "image_side")}
        candidates = bank_candidates(scores, meta, task)
        cell = Cell(bank, target, seed, candidates, np.array([oracle[(m, target)] for m in scores]))
        cell.features = bank_features(candidates, score_names)
        cells.append(cell)
    return MetaData(cells, score_names, sorted({c.bank for c in cells}), sorted({c.target for c in cells}), models,
                    recipe)


# --------------------------------------------------------------------------------------------- methods
Scorer = Callable[[Cell], tuple[np.ndarray, np.ndarray | None]]  # cell -> (ranking scores [N], intervals or None)


@dataclass(frozen=True)
class Method:
    """A ranking method: ``fit(training cells)`` returns a scorer for held-out cells."""

    name: str
    fit: Callable[[list[Cell]], Scorer]


def z_matrix(cell: Cell, names: Sequence[str]) -> np.ndarray:
    """[N, len(names)] the cell's z-scores (missing = 0, the bank mean)."""
    return np.array([[c.scores_z.get(name, 0.0) for name in names] for c in cell.candidates])


def _fixed(score: Callable[[Cell], np.ndarray]) -> Callable[[list[Cell]], Scorer]:
    return lambda _cells: lambda cell: (score(cell), None)


def score_method(name: str) -> Method:
    return Method(name, _fixed(lambda cell: np.array([c.scores.get(name, math.nan) for c in cell.candidates])))


def static_method(label: str, key: str) -> Method:
    return Method(label, _fixed(lambda cell: np.array([float(c.model_meta.get(key, math.nan)) for c in cell.candidates])))


def best_subset(cells: list[Cell], names: Sequence[str], max_size: int) -> tuple[str, ...]:
    """The subset of up to ``max_size`` scores whose equal-weight z-mean has the best mean Pearson."""
    subsets = [s for size in range(1, max_size + 1) for s in itertools.combinations(range(len(names)), size)]
    weights = np.zeros((len(names), len(subsets)))
    for column, subset in enumerate(subsets):
        weights[list(subset), column] = 1.0 / len(subset)
    total = np.zeros(len(subsets))
    for cell in cells:  # Pearson of every subset's z-mean with the oracle, vectorized over subsets
        ensembles = z_matrix(cell, names) @ weights
        ensembles = ensembles - ensembles.mean(axis=0)
        oracle = cell.oracle - cell.oracle.mean()
        norms = np.linalg.norm(ensembles, axis=0) * np.linalg.norm(oracle)
        total += np.divide(oracle @ ensembles, norms, out=np.zeros(len(subsets)), where=norms > 0)
    return tuple(names[i] for i in subsets[int(np.argmax(total))])


def zmean_method(names: Sequence[str], max_size: int, label: str) -> Method:
    def fit(cells: list[Cell]) -> Scorer:
        subset = list(best_subset(cells, names, max_size))
        return lambda cell: (z_matrix(cell, subset).mean(axis=1), None)

    return Method(label, fit)


def model_method(kind: str) -> Method:
    def fit(cells: list[Cell]) -> Scorer:
        model = AccuracyModel(kind).fit(np.concatenate([c.features for c in cells]),
                                        np.concatenate([to_level(c.oracle, c.chance) for c in cells]),
                                        [f"{c.target}" for c in cells for _ in c.candidates])

        def score(cell: Cell) -> tuple[np.ndarray, np.ndarray]:
            mean, low, high = model.predict(cell.features, cell.chance)
            return mean, np.stack([low, high])

        return score

    return Method(f"model:{kind}", fit)


def methods(score_names: Sequence[str]) -> list[Method]:
    return [*(score_method(name) for name in score_names), *(static_method(k, v) for k, v in STATIC.items()),
            zmean_method(score_names, 1, "best score"), zmean_method(score_names, 3, "best z-mean"),
            *(model_method(kind) for kind in KINDS)]


# ------------------------------------------------------------------------------------------ evaluation
def folds(cells: Sequence[Cell], protocol: str) -> Iterable[tuple[list[Cell], list[Cell]]]:
    """(training cells, held-out cells) per fold of ``protocol`` (see the module docstring)."""
    if protocol == "bank":
        keys = sorted({(c.bank,) for c in cells})
    elif protocol == "target":
        keys = sorted({(c.target,) for c in cells})
    else:
        keys = sorted({(c.bank, c.target) for c in cells})
    for key in keys:
        test = [c for c in cells if _matches(c, key, protocol)]
        if protocol == "both":
            train = [c for c in cells if c.bank != key[0] and c.target != key[1]]
        else:
            train = [c for c in cells if not _matches(c, key, protocol)]
        yield train, test


def _matches(cell: Cell, key: tuple, protocol: str) -> bool:
    return {"bank": (cell.bank,), "target": (cell.target,), "both": (cell.bank, cell.target)}[protocol] == key


def evaluate(data: MetaData, method_list: Sequence[Method], protocols: Sequence[str] = PROTOCOLS
             ) -> list[dict]:
    """One row per (method, protocol, held-out cell): the ranking and accuracy metrics."""
    rows = []
    for protocol in protocols:
        for train, test in folds(data.cells, protocol):
            for method in method_list:
                scorer = method.fit(train)
                for cell in test:
                    scores, interval = scorer(cell)
                    rows.append({"method": method.name, "protocol": protocol, "bank": cell.bank,
                                 "target": cell.target, "seed": cell.seed, **cell_metrics(scores, interval, cell)})
    return rows


def cell_metrics(scores: np.ndarray, interval: np.ndarray | None, cell: Cell) -> dict[str, float]:
    oracle = cell.oracle
    metrics = {"pearson": pearson_x100(scores, oracle), "weighted_tau": weighted_tau(scores, oracle),
               "top1_regret": top1_regret(scores, oracle), "top3_hit": top_k_hit(scores, oracle)}
    if interval is not None:
        low, high = interval
        metrics.update(mae=float(np.mean(np.abs(scores - oracle))),
                       coverage=float(np.mean((low <= oracle) & (oracle <= high))),
                       width=float(np.median(high - low)))
    return metrics


def summarize(rows: Sequence[Mapping], protocol: str) -> list[dict]:
    """Per method, the means over the held-out cells of ``protocol``; best Pearson first."""
    by_method: dict[str, list[Mapping]] = {}
    for row in rows:
        if row["protocol"] == protocol:
            by_method.setdefault(row["method"], []).append(row)
    summary = []
    for method, items in by_method.items():
        entry = {"method": method}
        for metric in ("pearson", "weighted_tau", "top1_regret", "top3_hit", "mae", "coverage", "width"):
            values = [row[metric] for row in items if metric in row and math.isfinite(row[metric])]
            entry[metric] = float(np.mean(values)) if values else math.nan
        summary.append(entry)
    return sorted(summary, key=lambda e: -np.nan_to_num(e["pearson"], nan=-1e9))


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


__all__ = ["PROTOCOLS", "Cell", "MetaData", "Method", "evaluate", "feature_names", "load_meta", "methods",
           "summarize"]
