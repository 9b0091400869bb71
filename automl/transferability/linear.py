"""Cross-validated linear-probe accuracy on the probe features.

A multinomial logistic regression (scikit-learn, L2, ``C=1``) on standardized features, optionally
PCA-reduced to ``n_dims`` first (default 64, which keeps the probe cheap at D = 2048; ``n_dims=None``
uses every feature), scored by stratified k-fold cross-validation
(k = min(5, smallest class size), shuffled with ``seed``).

linear = 100 * mean held-out accuracy. Scale: percent in [0, 100]; higher = better. Unlike the other
scores it is already an accuracy on this task's labels, which is why the accuracy predictor anchors
its prior on it (:mod:`automl.predictor`).

Limits: constant features carry no information: every fold predicts one class, giving the accuracy of
guessing (about 100 / C for balanced classes).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from ._common import pca_reduce
from ._registry import register_score
from ._validate import Inputs, check_int_option


@register_score("linear", min_per_class=2)
def linear(inputs: Inputs, *, n_dims: int | None = 64, folds: int = 5, seed: int = 0) -> float:
    """Stratified k-fold accuracy (percent, [0, 100]) of a logistic-regression probe."""
    check_int_option("linear", "n_dims", n_dims, 1, allow_none=True)
    check_int_option("linear", "folds", folds, 2)
    x, y = pca_reduce(inputs, n_dims), inputs.labels
    splits = StratifiedKFold(n_splits=min(folds, int(inputs.counts.min())), shuffle=True, random_state=seed)
    accuracies = []
    # The fold loop written out: cross_val_score's cloning and scorer machinery cost ~30% at probe sizes.
    with warnings.catch_warnings():  # a probe that has not fully converged still ranks models fine
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in splits.split(x, y):
            scaler = StandardScaler().fit(x[train])
            probe = LogisticRegression(C=1.0, max_iter=300).fit(scaler.transform(x[train]), y[train])
            accuracies.append(np.mean(probe.predict(scaler.transform(x[test])) == y[test]))
    return float(100.0 * np.mean(accuracies))
