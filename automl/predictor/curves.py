"""What a partial validation curve says about the test accuracy its fit would end at.

A trial pruned after k of its E planned epochs has measured its model for k epochs: its validation curve is
evidence about that model's fine-tuned accuracy, which the probe scores only guess. The shipped
meta-benchmark holds the whole curve (validation accuracy after each of 30 epochs of the default recipe)
and the final test accuracy of 756 fits; :class:`CurveModel` learns from every prefix of them the final
test accuracy from the curve seen so far, and a split-conformal interval from the errors it made on
targets it had not seen (each target held out in turn), per stage of the fit.

Accuracies go in and come out in percent; inside, as the predictor does, they are levels: the logit of
their place between chance and 100% (:func:`automl.predictor.inputs.to_level`), so that curves of tasks
with 8 or 100 classes compare.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold

from automl._threads import single_threaded
from automl.predictor.inputs import from_level, to_level
from automl.predictor.shipped import DATA_DIR, load_meta

KINDS = ("ridge", "boosting")
DEFAULT_KIND = "ridge"  # chosen on the four original banks, reported on the three later ones (learning-curves.md)
STAGES = np.array([0.1, 0.25, 0.5, 1.0])  # k / E at or below which a stage's interval applies
FEATURE_NAMES = ("last", "best", "mean_last3", "gain_last3", "fraction", "log_epochs")


@dataclass(frozen=True)
class CurveEstimate:
    """The final test accuracy a fit is headed for (percent) with its interval, from ``epochs`` of
    ``planned`` epochs of its validation curve."""

    mean: float
    low: float
    high: float
    epochs: int
    planned: int


def curve_features(curve: Sequence[float], planned: int, chance: float) -> np.ndarray:
    """[len(FEATURE_NAMES)] features of a validation curve (percent per epoch, k >= 1 epochs) of a fit that
    plans ``planned`` epochs, on a task whose chance accuracy is ``chance`` percent."""
    levels = to_level(np.asarray(curve, dtype=float), np.full(len(curve), chance))
    last3 = levels[-3:]
    return np.array([levels[-1], levels.max(), last3.mean(), (levels[-1] - levels[max(0, len(levels) - 4)]) / 3,
                     len(curve) / planned, np.log(len(curve))])


def prefixes(curves: Sequence[Sequence[float]], planned: Sequence[int], final: Sequence[float],
             chance: Sequence[float], groups: Sequence[str]):
    """Every prefix (1..E epochs) of every curve as a training row: features [R, F], the final level [R],
    each row's group (its target) and its stage fraction k / E."""
    rows, target, row_groups, fractions = [], [], [], []
    for curve, total, accuracy, floor, group in zip(curves, planned, final, chance, groups, strict=True):
        level = float(to_level(np.array([accuracy]), np.array([floor]))[0])
        for k in range(1, len(curve) + 1):
            rows.append(curve_features(curve[:k], total, floor))
            target.append(level)
            row_groups.append(group)
            fractions.append(k / total)
    return np.array(rows), np.array(target), np.array(row_groups), np.array(fractions)


def _regressor(kind: str):
    if kind == "ridge":
        return Ridge(alpha=1.0)
    return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40,
                                         loss="absolute_error", random_state=0)


class CurveModel:
    """Final test accuracy from a partial validation curve (module docstring).

    Fitted attributes: ``quantiles_`` [len(STAGES), 2], the lower and upper residual quantiles (in levels)
    of each stage, from leave-one-group-out predictions; ``n_curves_``.
    """

    def __init__(self, kind: str = DEFAULT_KIND, coverage: float = 0.8):
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} must be one of {KINDS}")
        self.kind, self.coverage = kind, coverage

    def fit(self, data: Curves) -> CurveModel:
        """Fit on every prefix of the complete curves ``data``; the interval's residuals come from
        predictions for targets held out of the fit (grouped k-fold over targets)."""
        features, target, row_groups, fractions = prefixes(data.curves, data.planned, data.final, data.chance,
                                                           data.target)
        with single_threaded():
            held_out = np.empty_like(target)
            folds = min(len(np.unique(row_groups)), 5)
            for train, test in GroupKFold(n_splits=folds).split(features, target, row_groups):
                held_out[test] = _regressor(self.kind).fit(features[train], target[train]).predict(features[test])
            self.model_ = _regressor(self.kind).fit(features, target)
        residuals = target - held_out
        tail = (1 - self.coverage) / 2
        stage = np.searchsorted(STAGES, fractions - 1e-9)
        self.quantiles_ = np.array([np.quantile(residuals[stage == s], [tail, 1 - tail]) if np.any(stage == s)
                                    else np.quantile(residuals, [tail, 1 - tail]) for s in range(len(STAGES))])
        self.n_curves_ = len(data.curves)
        return self

    def estimate(self, curve: Sequence[float], planned: int, chance: float) -> CurveEstimate:
        """Where a fit with this validation ``curve`` (percent, k >= 1 epochs of ``planned``) is headed."""
        if not len(curve):
            raise ValueError("a curve estimate needs at least one validated epoch")
        features = curve_features(curve, planned, chance)[None]
        with single_threaded():
            level = float(self.model_.predict(features)[0])
        low, high = self.quantiles_[int(np.searchsorted(STAGES, len(curve) / planned - 1e-9))]
        floor = np.array([chance])
        mean, lower, upper = (float(from_level(np.array([value]), floor)[0]) for value in (level, level + low,
                                                                                          level + high))
        return CurveEstimate(mean, min(lower, mean), max(upper, mean), len(curve), planned)


@dataclass(frozen=True)
class Curves:
    """Complete validation curves (percent per epoch) of fits that planned ``planned`` epochs and ended at
    ``final`` test accuracy (percent), on tasks of ``chance`` percent; each fit's ``target`` and ``bank``."""

    curves: list[list[float]]
    planned: np.ndarray
    final: np.ndarray
    chance: np.ndarray
    target: np.ndarray
    bank: np.ndarray

    def subset(self, keep: np.ndarray) -> Curves:
        return Curves([c for c, k in zip(self.curves, keep, strict=True) if k], self.planned[keep], self.final[keep],
                      self.chance[keep], self.target[keep], self.bank[keep])


def shipped_curves(data_dir: str | Path = DATA_DIR) -> Curves:
    """The meta-benchmark's curves, one per (bank model, target)."""
    data = load_meta(data_dir)
    seen, rows = set(), []
    for cell in data.cells:
        if (cell.bank, cell.target) in seen:
            continue
        seen.add((cell.bank, cell.target))
        rows += [(list(curve), int(data.recipe["hparams"]["epochs"]), float(accuracy), float(floor), cell.target,
                  cell.bank)
                 for curve, accuracy, floor in zip(cell.oracle_curves, cell.oracle, cell.chance, strict=True) if curve]
    curves, planned, final, chance, target, bank = zip(*rows, strict=True)
    return Curves(list(curves), np.array(planned), np.array(final), np.array(chance), np.array(target),
                  np.array(bank))


@functools.lru_cache(maxsize=2)
def shipped_curve_model(kind: str = DEFAULT_KIND, coverage: float = 0.8, data_dir: str = str(DATA_DIR)
                        ) -> CurveModel:
    """The curve model fitted on every complete curve of the shipped meta-benchmark (fitted once per process)."""
    return CurveModel(kind, coverage).fit(shipped_curves(data_dir))
