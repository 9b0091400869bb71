"""LogME: logarithm of maximum evidence (You, Liu, Wang, Long; ICML 2021), fixed-point version.

For each class c, a Bayesian linear regression of the indicator y_c = [y == c] (N) on the features
f [N, D] (no bias, no standardization) with prior w ~ N(0, alpha^-1 I) and noise N(0, beta^-1) has
evidence p(y_c | f, alpha, beta); alpha and beta are set by the fixed-point iteration of You et al.
(arXiv:2110.10545, Alg. 2). With sigma_i the squared singular values of f, x_i = u_i^T y_c, t = alpha/beta:

    gamma = sum sigma/(sigma + t),  m2 = sum sigma x^2/(t + sigma)^2,
    res2 = sum x^2/(1 + sigma/t)^2 + (|y_c|^2 - sum x^2),
    alpha <- gamma/(m2 + 1e-5),  beta <- (N - gamma)/(res2 + 1e-5)

for at most 11 steps, stopping once t moves by <= 0.1 %; then

    L_c = [D/2 log alpha + N/2 log beta - 1/2 sum log(alpha + beta sigma) - beta/2 res2 - alpha/2 m2
           - N/2 log 2 pi] / N

(alpha, beta from the last step, m2 and res2 from the t before it, as in the reference) and
LogME = mean_c L_c. Scale: log evidence per sample, unbounded (about -1 .. 1 for D < N; larger and
growing with D once D > N, see below); compare it between models on the same probe. Higher = better.

Reference: github.com/thuml/LogME, LogME.py, ``LogME._fit_fixed_point`` (and ``truncated_svd``). As there,
N > D keeps the singular values s > 1e-10 of the D x D Gram matrix and N <= D keeps all N of them
(so the sum of log(alpha + beta sigma) has min(N, D) terms, against D/2 log alpha: when D > N the
reference leaves out (D - N)/2 log alpha that the exact evidence has; kept for agreement). Here the
N > D branch takes the reference's SVD of the D x D Gram matrix (the rounding noise of that
decomposition decides which null directions pass s > 1e-10 for rank-deficient features, and that
moves the score), N <= D one ``eigh`` of the N x N Gram matrix instead of an SVD of f (3-4x faster at
500 x 2048, same values to ~1e-12), and all classes iterate at once.

Limits: constant (nonzero) features are a rank-1 design, which the formula handles. All-zero
features give the reference alpha = 0 and -inf or nan; here they return the exact evidence of the
feature-free model, mean_c 1/2 (log(N / n_c) - 1 - log 2 pi), the value the D/2 log alpha terms
cancel to when every sigma is 0.
"""

from __future__ import annotations

import numpy as np

from ._common import left_singular
from ._registry import register_score
from ._validate import Inputs

_MAX_STEPS = 11
_RTOL = 1e-3
_EPS = 1e-5
_LOG_2PI = np.log(2 * np.pi)


@register_score("logme")
def logme(inputs: Inputs) -> float:
    """Mean per-class log maximum evidence divided by N (fixed-point LogME)."""
    f = inputs.features
    n, d = f.shape
    counts = inputs.counts.astype(np.float64)
    if not f.any():
        return float(np.mean(0.5 * (np.log(n / counts) - 1.0 - _LOG_2PI)))
    if n > d:
        sigma, u = left_singular(f, lambda s: s > 1e-10, svd_when_tall=True)
    else:
        sigma, u = left_singular(f, lambda s: np.ones(len(s), dtype=bool))
    x2 = inputs.class_sums(u).T ** 2  # [k, C]: (u_i . y_c)^2
    res_x2 = counts - x2.sum(axis=0)  # |y_c|^2 - sum_i x_i^2: the part of y_c outside span(u)
    sigma = sigma[:, None]

    alpha = np.ones_like(counts)
    beta = np.ones_like(counts)
    m2 = np.zeros_like(counts)
    res2 = np.zeros_like(counts)
    active = np.ones(len(counts), dtype=bool)  # classes still iterating; converged ones keep their state
    for _ in range(_MAX_STEPS):
        t = alpha / beta
        gamma = (sigma / (sigma + t)).sum(axis=0)
        step_m2 = (sigma * x2 / ((t + sigma) ** 2)).sum(axis=0)
        step_res2 = (x2 / ((1 + sigma / t) ** 2)).sum(axis=0) + res_x2
        step_alpha = gamma / (step_m2 + _EPS)
        step_beta = (n - gamma) / (step_res2 + _EPS)
        converged = np.abs(step_alpha / step_beta - t) / t <= _RTOL
        alpha = np.where(active, step_alpha, alpha)
        beta = np.where(active, step_beta, beta)
        m2 = np.where(active, step_m2, m2)
        res2 = np.where(active, step_res2, res2)
        active &= ~converged
        if not active.any():
            break
    evidence = (
        d / 2.0 * np.log(alpha)
        + n / 2.0 * np.log(beta)
        - 0.5 * np.log(alpha + beta * sigma).sum(axis=0)
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * _LOG_2PI
    ) / n
    return float(evidence.mean())
