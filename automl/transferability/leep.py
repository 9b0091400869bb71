"""LEEP: Log Expected Empirical Prediction (Nguyen, Hassner, Seeger, Archambeau; ICML 2020).

From the source model's class probabilities theta [N, Cs] on the probe images and the target labels
y [N] (C classes):

    P(y, z) = 1/N sum_{i: y_i = y} theta_iz        (empirical joint, [C, Cs])
    P(y | z) = P(y, z) / sum_y P(y, z)
    LEEP = 1/N sum_i log sum_z theta_iz P(y_i | z)

Scale: mean log-likelihood, <= 0 (0 = the source classes determine the target class); higher = better.
An uninformative source (identical rows of theta) gives sum_c (n_c / N) log(n_c / N) = -H(Y).

Reference: github.com/thuml/LogME, LEEP.py (same numbers as LEEP in dbolya/parc methods.py).
Limit: a source class with zero total probability (possible after float32 underflow) makes the
reference divide 0 by 0 and return nan; here its P(y | z) is 0, and it never contributes because every
theta_iz in its column is 0. Rows must sum to 1 within 1e-3 (validation); LEEP <= 0 holds up to that.
"""

from __future__ import annotations

import numpy as np

from ._registry import register_score
from ._validate import Inputs


@register_score("leep", uses_features=False, needs_probs=True)
def leep(inputs: Inputs) -> float:
    """LEEP of the source probabilities ``probs`` [N, Cs] for the target labels; <= 0."""
    return leep_from_probs(inputs.probs, inputs)


def leep_from_probs(probs: np.ndarray, inputs: Inputs) -> float:
    """LEEP of probs [N, Cs] (rows summing to 1) for the labels of ``inputs``."""
    joint = inputs.class_sums(probs)  # [C, Cs], N * P(y, z)
    marginal = joint.sum(axis=0)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)  # P(y | z)
    expected = np.einsum("iz,iz->i", probs, conditional[inputs.labels])  # sum_z theta_iz P(y_i | z)
    return float(np.log(expected).mean())
