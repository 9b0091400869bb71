"""Metrics of one method on one (target, probe seed) across the bank — Pearson x100, Kendall's tau-b,
weighted tau, top-1 regret, top-k hit — their aggregation over targets and seeds, and how sure a mean over
banks and targets is (:func:`cluster_bootstrap`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from benchmarks.metabench.data import Key, MethodScores

TOP_K = 3
RESULT_COLUMNS = ("method", "target", "seed", "n_models", "pearson", "kendall_tau", "weighted_tau",
                  "top1_regret", "top3_hit", "ms_per_model", "top_model")


def _arrays(scores: Sequence[float], oracle: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Scores [N] and oracle accuracies [N] of one bank on one target, as float arrays (shapes checked)."""
    s, o = np.asarray(scores, dtype=float), np.asarray(oracle, dtype=float)
    if s.ndim != 1 or s.shape != o.shape:
        raise ValueError(f"scores and oracle must be [N] arrays of one length, got {s.shape} and {o.shape}")
    return s, o


def _finite_pairs(scores: Sequence[float], oracle: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The (score, oracle) pairs whose score is finite."""
    s, o = _arrays(scores, oracle)
    keep = np.isfinite(s)
    return s[keep], o[keep]


def _correlated(s: np.ndarray, o: np.ndarray) -> bool:
    """Whether a correlation is defined: two pairs or more, and neither side constant."""
    return len(s) >= 2 and np.ptp(s) > 0 and np.ptp(o) > 0


def pearson_x100(scores: Sequence[float], oracle: Sequence[float]) -> float:
    """Pearson correlation x100 ([-100, 100]) between the scores and the oracle accuracies of N models
    (the PARC paper's metric); models with a non-finite score are left out; NaN when undefined."""
    s, o = _finite_pairs(scores, oracle)
    return float(100.0 * stats.pearsonr(s, o).statistic) if _correlated(s, o) else math.nan


def kendall_tau(scores: Sequence[float], oracle: Sequence[float]) -> float:
    """Kendall's tau-b ([-1, 1]) between scores and oracle accuracies; non-finite scores left out."""
    s, o = _finite_pairs(scores, oracle)
    return float(stats.kendalltau(s, o).statistic) if _correlated(s, o) else math.nan


def weighted_tau(scores: Sequence[float], oracle: Sequence[float]) -> float:
    """``scipy.stats.weightedtau`` ([-1, 1]): Kendall's tau with hyperbolic weights 1/(rank+1) that make
    swaps among the top models count most (the average of the two rankings, by score and by oracle)."""
    s, o = _finite_pairs(scores, oracle)
    return float(stats.weightedtau(s, o).statistic) if _correlated(s, o) else math.nan


def top1_regret(scores: Sequence[float], oracle: Sequence[float]) -> float:
    """Accuracy points lost by taking the top-scored model: ``max(oracle) - oracle[argmax(scores)]`` (>= 0).

    Models tied for the top score count by their mean oracle accuracy (the expected regret of breaking
    the tie at random); non-finite scores never win; NaN if no score is finite.
    """
    s, o = _arrays(scores, oracle)
    if not np.isfinite(s).any():
        return math.nan
    top = s == np.max(s[np.isfinite(s)])
    return float(np.max(o) - np.mean(o[top]))


def top_k_hit(scores: Sequence[float], oracle: Sequence[float], k: int = TOP_K) -> float:
    """1.0 if a model with the best oracle accuracy is among the ``k`` best-scored models, else 0.0.

    Order: score descending, non-finite scores last, ties in the given (bank) order; NaN if no score is
    finite.
    """
    best_of_top, best = _best_of_top_k(scores, oracle, k)
    return float(best_of_top == best) if math.isfinite(best_of_top) else math.nan


def top_k_regret(scores: Sequence[float], oracle: Sequence[float], k: int = TOP_K) -> float:
    """Accuracy points lost by fine-tuning the ``k`` best-scored models and keeping the best of them
    (what the pipeline's ``finetune.top_k`` risks): ``max(oracle) - max(oracle[top k])`` (>= 0). Order as
    in :func:`top_k_hit`; NaN if no score is finite."""
    best_of_top, best = _best_of_top_k(scores, oracle, k)
    return best - best_of_top


def _best_of_top_k(scores: Sequence[float], oracle: Sequence[float], k: int) -> tuple[float, float]:
    """(the best oracle accuracy among the ``k`` best-scored models, the best overall); the first is NaN
    if no score is finite. Order as in :func:`top_k_hit`."""
    s, o = _arrays(scores, oracle)
    if not np.isfinite(s).any():
        return math.nan, float(np.max(o))
    order = np.argsort(-np.where(np.isfinite(s), s, -np.inf), kind="stable")
    return float(np.max(o[order[:k]])), float(np.max(o))


def evaluate(methods: Mapping[str, Mapping[Key, MethodScores]], oracle: Mapping[str, Mapping[str, float]]
             ) -> list[dict[str, Any]]:
    """One row of metrics per (method, target, seed), over the models that have an oracle accuracy."""
    rows = []
    for method, by_key in methods.items():
        for (target, seed), ms in by_key.items():
            models = [m for m in oracle[target] if m in ms.scores]
            s = np.array([ms.scores[m] for m in models], dtype=float)
            o = np.array([oracle[target][m] for m in models], dtype=float)
            ms_per_model = [1000.0 * ms.seconds[m] for m in models if math.isfinite(ms.seconds.get(m, math.nan))]
            finite = np.isfinite(s)
            rows.append({
                "method": method, "target": target, "seed": seed, "n_models": len(models),
                "pearson": pearson_x100(s, o), "kendall_tau": kendall_tau(s, o),
                "weighted_tau": weighted_tau(s, o),
                "top1_regret": top1_regret(s, o), "top3_hit": top_k_hit(s, o, TOP_K),
                "ms_per_model": float(np.median(ms_per_model)) if ms_per_model else math.nan,
                "top_model": models[int(np.argmax(np.where(finite, s, -np.inf)))] if finite.any() else "",
            })
    return rows


_AVERAGED = ("pearson", "kendall_tau", "weighted_tau", "top1_regret", "top3_hit")


def summarize(rows: Sequence[Mapping[str, Any]], targets: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per method, best mean Pearson first (NaN last).

    ``pearson_<target>``: mean over seeds. For every metric of ``_AVERAGED``: ``<metric>`` and
    ``<metric>_std`` — per seed the mean over targets, then mean and std (ddof 0) over seeds, as the
    paper's ``MetricEval.aggregate``. ``ms_per_model``: median over targets and seeds.
    """
    summary = []
    for method in dict.fromkeys(row["method"] for row in rows):
        mine = [row for row in rows if row["method"] == method]
        seeds = sorted({row["seed"] for row in mine})
        entry: dict[str, Any] = {"method": method}
        for target in targets:
            entry[f"pearson_{target}"] = float(np.mean([r["pearson"] for r in mine if r["target"] == target]))
        for metric in _AVERAGED:
            per_seed = [np.mean([r[metric] for r in mine if r["seed"] == seed]) for seed in seeds]
            entry[metric], entry[f"{metric}_std"] = float(np.mean(per_seed)), float(np.std(per_seed))
        entry["ms_per_model"] = float(np.nanmedian([r["ms_per_model"] for r in mine])) \
            if any(math.isfinite(r["ms_per_model"]) for r in mine) else math.nan
        summary.append(entry)
    summary.sort(key=lambda e: -e["pearson"] if math.isfinite(e["pearson"]) else math.inf)
    return summary


def by_bank_and_target(rows: Sequence[Mapping[str, Any]], metric: str) -> np.ndarray:
    """[banks, targets] (both sorted by name) the mean of ``rows``' finite ``metric`` per (``bank``,
    ``target``), e.g. over probe seeds; NaN where a pair has none."""
    banks, targets = sorted({row["bank"] for row in rows}), sorted({row["target"] for row in rows})
    total, count = np.zeros((len(banks), len(targets))), np.zeros((len(banks), len(targets)))
    for row in rows:
        value = float(row.get(metric, math.nan))
        if math.isfinite(value):
            where = banks.index(row["bank"]), targets.index(row["target"])
            total[where] += value
            count[where] += 1
    return np.divide(total, count, out=np.full(total.shape, math.nan), where=count > 0)


def cluster_bootstrap(values: np.ndarray, level: float = 0.9, draws: int = 4000, seed: int = 0
                      ) -> tuple[float, float, float]:
    """``(mean, low, high)`` of ``values`` [banks, targets] (one number per bank on a target; NaN = none),
    with the ``level`` percentile interval of a two-way cluster bootstrap: banks *and* targets redrawn with
    replacement, each draw's mean over the cells it holds.

    The cells of a benchmark are not independent: a bank's models or a target's quirks move all of their
    cells together, and there are only a few of each. Redrawing single cells would give intervals several
    times too narrow; redrawing both units answers "what would other banks and other targets have given".
    With a single bank (or target) only the other unit varies; with no finite value, all three are NaN.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be a [banks, targets] array, got shape {values.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be in (0, 1)")
    if not np.isfinite(values).any():  # e.g. the Pearson of a method that predicted one value everywhere
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    banks = rng.integers(0, values.shape[0], size=(draws, values.shape[0]))
    targets = rng.integers(0, values.shape[1], size=(draws, values.shape[1]))
    with warnings.catch_warnings():  # a draw of only NaN cells has no mean: left out
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(values[banks[:, :, None], targets[:, None, :]], axis=(1, 2))
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(means, [tail, 100 - tail])
    return float(np.nanmean(values)), float(low), float(high)
