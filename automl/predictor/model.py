"""The accuracy model: a regression from :mod:`.features` to the logit of the fine-tuned accuracy above
chance, with split-conformal intervals.

Two stages, both of the regressor kind named: the **relative** stage learns how far each model lands
above or below the mean of its bank on a task (fitted only on rows whose whole bank was measured: the
meta-benchmark's cells), which is what orders a bank; the **offset** stage learns what remains — chiefly
how hard the task is — from every row, the user's history included. On the held-out meta-benchmark the
split made the ranking markedly better than one regression of the accuracy (see the README's table).
The relative stage fits the conditional *median* (absolute error) where the kind can: on many cells a
bank splits into models that take off and models left near chance, whose levels sit at the clipped
logit (12.5% of the shipped records), and under the squared error those few pulled the fit of every
other model. Chosen by nested leave-one-bank-out among squared or absolute error in either stage (an
absolute-error variant won on every fold); held out on banks it raised the Pearson from 72.8 to 76.4
and cut the MAE from 6.7 to 6.3 points.

``fit`` learns both and, by cross-validation over the tasks it is given (each task left out in turn), the
distribution of its errors on tasks it has not seen, in accuracy points divided by the spread of a
binomial share, ``(100 - chance) * 2 sqrt(a (1 - a))`` for a predicted share ``a`` of the headroom above
chance: a model predicted at 98% cannot miss by 20 points upwards, one predicted at 60% can. An interval
is the prediction moved by the 10th and 90th percentiles of those scaled errors (for ``coverage=0.8``),
times its own spread, clipped to [chance, 100]; so its coverage is measured, not assumed. (Taken in the
logit instead, the same errors gave intervals ~8 points wider on held-out banks: a constant logit width
is widest in accuracy at mid-range, where most measured accuracies lie.)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import special
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from automl._threads import single_threaded
from automl.predictor.inputs import from_level

KINDS = ("ridge", "boosting", "blend")
SPREAD_FLOOR = 0.2  # the binomial spread 2 sqrt(a (1 - a)) at a = 1%: intervals keep a width near the ends


class Blend:
    """The mean prediction of ``parts``, each fitted on the same rows (``kind="blend"``: a ridge, which
    extrapolates smoothly to a bank unlike the training banks, and gradient boosting, which captures the
    interactions the ridge misses)."""

    def __init__(self, parts: Sequence):
        self.parts = list(parts)


def make_regressor(kind: str, median: bool = False) -> Pipeline | HistGradientBoostingRegressor | Blend:
    """A regressor of ``kind``; ``median``: fit the conditional median (absolute error) where the kind
    can (``boosting``, the boosting half of ``blend``), the conditional mean otherwise."""
    if kind == "ridge":
        return make_pipeline(StandardScaler(), Ridge(alpha=10.0))
    if kind == "boosting":
        return HistGradientBoostingRegressor(loss="absolute_error" if median else "squared_error", max_depth=3,
                                             learning_rate=0.05, max_iter=200, min_samples_leaf=20,
                                             l2_regularization=1.0, random_state=0)
    if kind == "blend":
        return Blend([make_regressor("ridge"), make_regressor("boosting", median)])
    raise ValueError(f"accuracy model kind={kind!r} must be one of {KINDS}")


class AccuracyModel:
    """Regression of level = logit((acc - chance) / (100 - chance)) on bank features, with intervals in
    accuracy points (module docstring).

    Args:
        kind: ``ridge``, ``boosting`` (scikit-learn's HistGradientBoostingRegressor) or ``blend`` (their mean).
        coverage: the central share of held-out errors the interval holds, in (0, 1).
    """

    def __init__(self, kind: str = "ridge", coverage: float = 0.8):
        if not 0 < coverage < 1:
            raise ValueError(f"coverage={coverage} must be in (0, 1)")
        make_regressor(kind)  # checks the kind
        self.kind, self.coverage = kind, coverage
        self.relative_ = self.offset_ = None
        self.error_low_ = self.error_high_ = 0.0

    def fit(self, features: np.ndarray, level: np.ndarray, groups: Sequence, weights: np.ndarray | None = None,
            cells: Sequence | None = None, chance: np.ndarray | None = None) -> AccuracyModel:
        """Fit on ``features`` [N, F] and targets ``level`` [N]; ``groups`` [N] name each row's task (the
        held-out unit of the error estimate); ``weights`` [N] (default 1); ``cells`` [N] name the whole
        measured bank-on-task each row belongs to, ``""`` for rows measured alone (default: each group is
        one cell); ``chance`` [N] the accuracy (percent) of guessing on each row's task (default 0)."""
        features, level = np.asarray(features, float), np.asarray(level, float)
        groups = np.asarray(groups)
        cells = groups.astype(str) if cells is None else np.asarray(cells, dtype=str)
        weights = np.ones(len(level)) if weights is None else np.asarray(weights, float)
        chance = np.zeros(len(level)) if chance is None else np.asarray(chance, float)
        predicted = level - self._held_out_errors(features, level, groups, weights, cells)
        errors = (from_level(level, chance) - from_level(predicted, chance)) / _spread(predicted, chance)
        tail = (1 - self.coverage) / 2
        low, high = _weighted_quantiles(errors, weights, [tail, 1 - tail])
        self.error_low_, self.error_high_ = min(float(low), 0.0), max(float(high), 0.0)  # low <= mean <= high
        self.relative_, self.offset_ = self._fit_stages(features, level, weights, cells)
        return self

    def refitted(self, features: np.ndarray, level: np.ndarray, weights: np.ndarray, cells: Sequence
                 ) -> AccuracyModel:
        """A copy with both stages fitted on these rows (shapes as in :meth:`fit`) that keeps this model's
        interval: its held-out error quantiles. For a few added rows the refit changes the predictions
        little and the error spread less, and skipping the cross-validation makes it ~10x cheaper, which
        matters where each of a history's tasks is left out in turn (:mod:`.calibration`)."""
        copy = AccuracyModel(self.kind, self.coverage)
        copy.error_low_, copy.error_high_ = self.error_low_, self.error_high_
        copy.relative_, copy.offset_ = copy._fit_stages(np.asarray(features, float), np.asarray(level, float),
                                                        np.asarray(weights, float), np.asarray(cells, dtype=str))
        return copy

    def _fit_stages(self, features, level, weights, cells):
        """(relative, offset) regressors; relative is None when no row has a cell."""
        in_cell = cells != ""
        relative = None
        if in_cell.any():
            _, index = np.unique(cells[in_cell], return_inverse=True)
            cell_mean = np.bincount(index, level[in_cell]) / np.bincount(index)
            # The median: near-chance models at the clipped logit would pull a mean (module docstring).
            relative = make_regressor(self.kind, median=True)
            _fit(relative, features[in_cell], level[in_cell] - cell_mean[index], weights[in_cell])
        offset = make_regressor(self.kind)
        _fit(offset, features, level - _predict(relative, features), weights)
        return relative, offset

    def _held_out_errors(self, features, level, groups, weights, cells) -> np.ndarray:
        splits = min(len(np.unique(groups)), 10)
        if splits < 2:
            return np.zeros(len(level))
        errors = np.empty(len(level))
        for train, test in GroupKFold(n_splits=splits).split(features, level, groups):
            relative, offset = self._fit_stages(features[train], level[train], weights[train], cells[train])
            errors[test] = level[test] - _predict(relative, features[test]) - _predict(offset, features[test])
        return errors

    def predict(self, features: np.ndarray, chance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted accuracy (percent) and its interval for ``features`` [N, F]; ``chance`` [N] percent."""
        features, chance = np.asarray(features, float), np.asarray(chance, float)
        level = _predict(self.relative_, features) + _predict(self.offset_, features)
        mean, spread = from_level(level, chance), _spread(level, chance)
        return (mean, np.clip(mean + self.error_low_ * spread, chance, 100.0),
                np.clip(mean + self.error_high_ * spread, chance, 100.0))


def _spread(level: np.ndarray, chance: np.ndarray) -> np.ndarray:
    """[N] accuracy points: ``(100 - chance) * 2 sqrt(a (1 - a))`` at the share ``a = expit(level)``."""
    share = special.expit(level)
    return (100.0 - chance) * np.maximum(2.0 * np.sqrt(share * (1.0 - share)), SPREAD_FLOOR)


def _fit(regressor, features: np.ndarray, level: np.ndarray, weights: np.ndarray) -> None:
    if isinstance(regressor, Blend):
        for part in regressor.parts:
            _fit(part, features, level, weights)
        return
    with warnings.catch_warnings(), single_threaded():  # OpenMP threads of concurrent workers fight
        warnings.simplefilter("ignore", UserWarning)
        if isinstance(regressor, Pipeline):
            regressor.fit(features, level, ridge__sample_weight=weights)
        else:  # uniform weights left out: weighted binning costs ~8x the whole fit on a few thousand rows
            regressor.fit(features, level, sample_weight=None if np.all(weights == weights[0]) else weights)


def _predict(regressor, features: np.ndarray) -> np.ndarray:
    if regressor is None:
        return np.zeros(len(features))
    if isinstance(regressor, Blend):
        return np.mean([_predict(part, features) for part in regressor.parts], axis=0)
    with single_threaded():
        return regressor.predict(features)


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    cumulative = (cumulative - 0.5 * weights[order]) / cumulative[-1]
    return np.interp(quantiles, cumulative, values[order])
