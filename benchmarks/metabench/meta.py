"""Ranking methods judged on the meta-benchmark (``bench.data=meta``), only ever on data they were not
fitted or picked on.

The shipped data (:mod:`benchmarks.metabench.build`) gives, for 7 banks x 9 targets x 5 probe seeds, every
model's scores and its oracle accuracy. A *cell* is one bank on one target with one probe set: the
methods rank its 12 models. Methods:

* every raw score, and static baselines that need no probe at all: parameter count, forward FLOPs,
  depth, source accuracy;
* ``best score`` and ``best z-mean`` — procedures that *pick* the single score, or the equal-weight
  mean of z-scores of up to 3 scores, with the best mean Pearson on the training cells;
* ``model:<kind>`` — the accuracy model (:mod:`automl.predictor.model`) fitted on the training cells; its
  prediction is an accuracy with an interval;
* ``fine-tuned val (ceiling)`` — not a method but the benchmark's noise floor: every model fine-tuned
  with the oracle recipe and ranked by its own validation accuracy, taken as the prediction of its test
  accuracy. No ranking from probe scores can know more; what it still misses (regret, MAE) is what the
  small validation and test splits leave to chance.

Protocols (training cells → held-out cells): ``bank`` (leave one bank out), ``arch`` (leave one bank out
and, from the other banks, every model of an architecture it has: banks share architectures, and a
bank of new ones is what a user brings), ``target`` (leave one target out) and ``both`` (train on the
other banks *and* other targets, test on the held-out bank and target: a bank and a task nobody tuned
anything on). Per held-out cell: Pearson x100, weighted Kendall tau,
top-1 regret (accuracy points), top-3 hit; for accuracies, mean absolute error, the share of measured
accuracies inside the 80% interval and the median interval width. Means over the held-out cells.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from automl.predictor.inputs import to_level
from automl.predictor.model import KINDS, AccuracyModel
from automl.predictor.shipped import Cell, MetaData
from benchmarks.metabench.metrics import (
    by_bank_and_target,
    cluster_bootstrap,
    pearson_x100,
    top1_regret,
    top_k_hit,
    top_k_regret,
    weighted_tau,
)

PROTOCOLS = ("bank", "arch", "target", "both")
STATIC = {"params": "num_params", "mflops": "mflops", "depth": "depth", "source accuracy": "source_accuracy"}
CEILING = "fine-tuned val (ceiling)"
CERTAIN = (("pearson", False, ".1f"), ("pearson", True, ".1f"), ("weighted_tau", True, ".2f"),
           ("top1_regret", False, ".2f"), ("mae", False, ".1f"))  # (metric, less the baseline, format) of certainty_cells


# --------------------------------------------------------------------------------------------- methods
Scorer = Callable[[Cell], tuple[np.ndarray, np.ndarray | None]]  # cell -> (ranking scores [N], intervals or None)


@dataclass(frozen=True)
class Method:
    """A ranking method: ``fit(training cells)`` returns a scorer for held-out cells; ``accuracies``: its
    scores are predicted test accuracies in percent (so they have an MAE)."""

    name: str
    fit: Callable[[list[Cell]], Scorer]
    accuracies: bool = False


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
                                        [c.target for c in cells for _ in c.candidates],
                                        cells=[c.name for c in cells for _ in c.candidates],
                                        chance=np.concatenate([c.chance for c in cells]))

        def score(cell: Cell) -> tuple[np.ndarray, np.ndarray]:
            mean, low, high = model.predict(cell.features, cell.chance)
            return mean, np.stack([low, high])

        return score

    return Method(f"model:{kind}", fit, accuracies=True)


def ceiling_method() -> Method:
    """The fine-tuned models' own validation accuracy (module docstring: the noise floor)."""
    return Method(CEILING, _fixed(lambda cell: cell.oracle_val), accuracies=True)


def methods(score_names: Sequence[str]) -> list[Method]:
    return [*(score_method(name) for name in score_names), *(static_method(k, v) for k, v in STATIC.items()),
            zmean_method(score_names, 1, "best score"), zmean_method(score_names, 3, "best z-mean"),
            *(model_method(kind) for kind in KINDS), ceiling_method()]


# ------------------------------------------------------------------------------------------ evaluation
def folds(cells: Sequence[Cell], protocol: str) -> Iterable[tuple[list[Cell], list[Cell]]]:
    """(training cells, held-out cells) per fold of ``protocol`` (see the module docstring)."""
    if protocol == "arch":  # bank out, and every model of its architectures out of the other banks too
        for bank in sorted({c.bank for c in cells}):
            held_out = {arch for c in cells if c.bank == bank for arch in c.archs}
            train = [kept for c in cells if c.bank != bank and (kept := c.without_archs(held_out)) is not None]
            if train:  # none when the other banks hold only its architectures: that bank is not judged
                yield train, [c for c in cells if c.bank == bank]
        return
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
        for method in method_list:
            for cell, scores, interval in held_out_scores(data.cells, method, protocol):
                rows.append({"method": method.name, "protocol": protocol, "bank": cell.bank, "target": cell.target,
                             "seed": cell.seed, **cell_metrics(scores, interval, cell, method.accuracies)})
    return rows


def held_out_scores(cells: Sequence[Cell], method: Method, protocol: str
                    ) -> Iterable[tuple[Cell, np.ndarray, np.ndarray | None]]:
    """(cell, scores [N], interval [2, N] or None) for every cell, from ``method`` fitted on the training
    cells of the ``protocol`` fold that holds the cell out."""
    for train, test in folds(cells, protocol):
        scorer = method.fit(train)
        for cell in test:
            yield cell, *scorer(cell)


def cell_metrics(scores: np.ndarray, interval: np.ndarray | None, cell: Cell, accuracies: bool = False
                 ) -> dict[str, float]:
    """Ranking metrics of ``scores`` [N] against the cell's oracle; the MAE when the scores are
    ``accuracies``; coverage and median width of ``interval`` [2, N] (low, high) when given."""
    oracle = cell.oracle
    metrics = {"pearson": pearson_x100(scores, oracle), "weighted_tau": weighted_tau(scores, oracle),
               "top1_regret": top1_regret(scores, oracle), "top3_hit": top_k_hit(scores, oracle),
               "top3_regret": top_k_regret(scores, oracle)}
    if accuracies:
        metrics["mae"] = float(np.mean(np.abs(scores - oracle)))
    if interval is not None:
        low, high = interval
        metrics.update(coverage=float(np.mean((low <= oracle) & (oracle <= high))),
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
        for metric in ("pearson", "weighted_tau", "top1_regret", "top3_hit", "top3_regret", "mae", "coverage",
                       "width"):
            values = [row[metric] for row in items if metric in row and math.isfinite(row[metric])]
            entry[metric] = float(np.mean(values)) if values else math.nan
        summary.append(entry)
    return sorted(summary, key=lambda e: -np.nan_to_num(e["pearson"], nan=-1e9))


def bootstrap_interval(rows: Sequence[Mapping], method: str, protocol: str, metric: str, baseline: str | None = None,
                       level: float = 0.9) -> tuple[float, float, float]:
    """How sure a held-out mean is: ``(mean, low, high)`` of ``metric`` for ``method`` under ``protocol``,
    or of its paired difference ``method - baseline`` over the same cells, with the ``level`` interval of
    :func:`~benchmarks.metabench.metrics.cluster_bootstrap` over banks and targets (cells first averaged over probe
    seeds; a paired difference only over the cells both methods were judged on)."""
    def values(name: str) -> dict[tuple, float]:
        chosen = {(row["bank"], row["target"], row["seed"]): row.get(metric, math.nan)
                  for row in rows if row["method"] == name and row["protocol"] == protocol}
        if not chosen:
            raise ValueError(f"no rows of method {name!r} under protocol {protocol!r}")
        return chosen

    cells = values(method)
    if baseline is not None:
        base = values(baseline)
        cells = {cell: value - base[cell] for cell, value in cells.items() if cell in base}
    return cluster_bootstrap(by_bank_and_target([{"bank": bank, "target": target, metric: value}
                                                 for (bank, target, _), value in cells.items()], metric), level)


__all__ = ["PROTOCOLS", "Method", "bootstrap_interval", "certainty_cells", "evaluate", "held_out_scores", "methods",
           "per_bank_cells", "summarize"]


def run_meta(data: MetaData, protocols: Sequence[str] = PROTOCOLS) -> tuple[list[dict], dict[str, list[dict]]]:
    """Every method of :func:`methods` under every protocol: the per-cell rows and a summary per protocol."""
    rows = evaluate(data, methods(data.score_names), protocols)
    return rows, {protocol: summarize(rows, protocol) for protocol in protocols}


def table_cells(summaries: Mapping[str, Sequence[Mapping]]) -> tuple[list[str], list[list[str]]]:
    """The README table: per method, the metrics with both the bank and the target held out, and the
    Pearson of leaving out only the bank, the bank with its architectures, or the target."""
    main = summaries["both"]
    by_protocol = {p: {e["method"]: e for e in summaries[p]} for p in summaries}
    header = ["method", "Pearson", "weighted τ", "regret (pts)", "top-3 %", "top-3 regret", "MAE (pts)",
              "80% cover %", "median width", "Pearson, bank out", "Pearson, arch out", "Pearson, target out"]

    rows = [[e["method"], _fmt(e["pearson"], ".1f"), _fmt(e["weighted_tau"], ".2f"), _fmt(e["top1_regret"], ".2f"),
             _fmt(100 * e["top3_hit"], ".0f"), _fmt(e["top3_regret"], ".2f"), _fmt(e["mae"], ".1f"),
             _fmt(100 * e["coverage"], ".0f"),
             _fmt(e["width"], ".1f"),
             *(_fmt(by_protocol[p][e["method"]]["pearson"], ".1f") if p in by_protocol else "–"
               for p in ("bank", "arch", "target"))]
            for e in main]
    return header, rows


def certainty_cells(rows: Sequence[Mapping], method: str, baseline: str, protocols: Sequence[str] = PROTOCOLS,
                    level: float = 0.9) -> tuple[list[str], list[list[str]]]:
    """How sure the table is of ``method``: per protocol, its held-out Pearson, its lead over ``baseline`` (in
    Pearson and weighted tau, paired over the same cells), its regret and MAE, each as ``mean [low, high]``
    with the ``level`` interval of :func:`bootstrap_interval`."""
    header = ["protocol", "Pearson", f"Pearson − {baseline}", f"weighted τ − {baseline}", "regret (pts)",
              "MAE (pts)"]
    return header, [[protocol, *(_sure(rows, method, protocol, metric, baseline if paired else None, spec, level)
                                 for metric, paired, spec in CERTAIN)] for protocol in protocols]


def per_bank_cells(rows: Sequence[Mapping], method: str, baseline: str, protocol: str = "arch", level: float = 0.9
                   ) -> tuple[list[str], list[list[str]]]:
    """``method`` on each bank held out in turn (``protocol`` ``arch``, ``bank`` or ``both``): its Pearson, its lead over
    ``baseline``, its regret and MAE, as in :func:`certainty_cells` but with only the targets redrawn. A bank
    added after the defaults were chosen is read here on its own."""
    header = ["held-out bank", "Pearson", f"Pearson − {baseline}", "regret (pts)", f"regret − {baseline}",
              "MAE (pts)", "80% cover %"]
    table = []
    for bank in sorted({row["bank"] for row in rows if row["method"] == method and row["protocol"] == protocol}):
        mine = [row for row in rows if row["bank"] == bank]
        coverage = [row["coverage"] for row in mine if row["method"] == method and row["protocol"] == protocol
                    and math.isfinite(row.get("coverage", math.nan))]
        table.append([bank, _sure(mine, method, protocol, "pearson", None, ".1f", level),
                      _sure(mine, method, protocol, "pearson", baseline, ".1f", level),
                      _sure(mine, method, protocol, "top1_regret", None, ".2f", level),
                      _sure(mine, method, protocol, "top1_regret", baseline, ".2f", level),
                      _sure(mine, method, protocol, "mae", None, ".1f", level),
                      _fmt(100 * float(np.mean(coverage)) if coverage else math.nan, ".0f")])
    return header, table


def _sure(rows: Sequence[Mapping], method: str, protocol: str, metric: str, baseline: str | None, spec: str,
          level: float) -> str:
    """``mean [low, high]`` of :func:`bootstrap_interval`."""
    mean, low, high = bootstrap_interval(rows, method, protocol, metric, baseline, level)
    return f"{_fmt(mean, spec)} [{_fmt(low, spec)}, {_fmt(high, spec)}]"


def _fmt(value: float, spec: str) -> str:
    return "–" if not math.isfinite(value) else format(value, spec)
