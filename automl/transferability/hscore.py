"""H-score (Bao, Li, Huang, Zheng, Zhao, Tong; ICIP 2019) and its shrinkage-regularized form
(Ibrahim, Ponomareva, Mazumder; ECML-PKDD 2022, "Newer is not always better: rethinking
transferability metrics, their peculiarities, stability and performance").

With f [N, D] the features and g [N, D] each sample's class mean of f:

    hscore        = tr(pinv(cov f) cov g)
    hscore_shrink = tr(pinv(cov_alpha f) (1 - alpha) cov g),
                    cov_alpha f = (1 - alpha) S + alpha mu I,  S = f_c^T f_c / N,  mu = tr(S) / D,

alpha the Ledoit-Wolf shrinkage of f (sklearn ``ledoit_wolf_shrinkage``, here from the Gram spectrum).
Scale: both >= 0 and at most rank(cov f) / at most C - 1; higher = better. When D >= N - 1 the plain
H-score is C - 1 for any features in general position (cov f is a pseudo-inverse of rank N - 1),
which is the degeneracy the shrinkage fixes.

References:
* hscore: github.com/dbolya/parc, methods.py, ``HScore.get_hscore_fast`` (its default): optional
  ``feature_reduce`` PCA (``n_dims``), StandardScaler, covariances with 1/(N - 1), class means
  ``sum / (count + 1e-8)`` (kept for agreement), ``np.linalg.pinv(cov f, rcond=1e-15)``.
* hscore_shrink: github.com/thuml/Transfer-Learning-Library, tllib/ranking/hscore.py,
  ``regularized_h_score`` (the authors' contribution there): no standardization, centered features,
  ``LedoitWolf`` covariance (1/N), ``np.cov(g)`` (1/(N - 1)), pinv with rcond=1e-15. ``n_dims`` (PCA
  first, default None) is an addition for symmetry with hscore.

Both traces are evaluated in the SVD basis f_c = U diag(s) V^T (one decomposition of the smaller
Gram matrix, ``_common.left_singular``): g_c = J W f_c with W the class-mean operator and J
centering, so each direction i contributes s_i^2 |J W u_i|^2 / (its covariance eigenvalue); no
D x D inverse is formed. This also avoids the
reference's D x D pseudo-inverse losing accuracy when D > N (at N = 500, D = 2048, C = 100 it returns
98.9967 where the exact trace is 98.99999996).

Limits: constant or duplicated columns are exact zero or repeated directions of cov f, which the
pseudo-inverse ignores (duplicating a column leaves hscore unchanged). Every sample identical
(constant features): both scores are 0.0, the between-class covariance is zero.
"""

from __future__ import annotations

import numpy as np

from ._common import left_singular, pca_reduce, standardize
from ._registry import register_score
from ._validate import Inputs, check_int_option

_RCOND = 1e-15  # np.linalg.pinv cutoff used by both references, relative to the largest eigenvalue
_MEAN_EPS = 1e-8  # get_hscore_fast divides class sums by (count + 1e-8)


@register_score("hscore")
def hscore(inputs: Inputs, *, n_dims: int | None = None) -> float:
    """H-score, >= 0; ``n_dims`` PCA dimensions first (None: all features)."""
    check_int_option("hscore", "n_dims", n_dims, 1, allow_none=True)
    if inputs.constant_features:
        return 0.0
    f = standardize(pca_reduce(inputs, n_dims))
    f -= f.mean(axis=0)
    # pinv keeps eigenvalues of cov f above rcond * largest, i.e. s^2 > rcond * s_max^2
    _, u = left_singular(f, lambda s: s**2 > _RCOND * s[0] ** 2)
    return float(_between_class_energy(u, inputs, _MEAN_EPS).sum())


@register_score("hscore_shrink")
def hscore_shrink(inputs: Inputs, *, n_dims: int | None = None) -> float:
    """Shrinkage-regularized H-score, >= 0; ``n_dims`` PCA dimensions first (None: all features)."""
    check_int_option("hscore_shrink", "n_dims", n_dims, 1, allow_none=True)
    if inputs.constant_features:
        return 0.0
    f = pca_reduce(inputs, n_dims)
    f = f - f.mean(axis=0)
    n, d = f.shape
    sigma, u = left_singular(f, lambda s: s > 0)
    alpha = _ledoit_wolf_shrinkage(f, sigma)
    mu = sigma.sum() / (n * d)
    eig = (1.0 - alpha) * sigma / n + alpha * mu  # eigenvalues of cov_alpha f along u
    kept = eig > _RCOND * eig[0]
    energy = _between_class_energy(u[:, kept], inputs, 0.0)
    return float((1.0 - alpha) / (n - 1) * np.sum(sigma[kept] * energy / eig[kept]))


def _between_class_energy(u: np.ndarray, inputs: Inputs, eps: float) -> np.ndarray:
    """|J W u_i|^2 for each column of u [N, k] -> [k]: W replaces a row by its class mean (class sum
    divided by count + eps), J subtracts the mean over samples."""
    counts = inputs.counts.astype(np.float64)
    means = inputs.class_sums(u) / (counts + eps)[:, None]  # [C, k]
    center = counts @ means / inputs.n_samples
    return counts @ (means - center) ** 2


def _ledoit_wolf_shrinkage(xc: np.ndarray, sigma: np.ndarray) -> float:
    """sklearn ``ledoit_wolf_shrinkage`` of centered xc [N, D], given the nonzero eigenvalues sigma of
    its Gram matrix: |xc^T xc|_F^2 = sum sigma^2, so no D x D product is needed."""
    n, d = xc.shape
    if d == 1:
        return 0.0  # sklearn: one feature, any shrinkage gives the same covariance
    sq = xc**2
    emp_cov_trace = sq.sum(axis=0) / n
    mu = emp_cov_trace.sum() / d
    beta_ = np.sum(sq.sum(axis=1) ** 2)  # sum of the entries of sq^T sq
    delta_ = np.sum(sigma**2) / n**2  # sum of the squared entries of xc^T xc, / n^2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * emp_cov_trace.sum() + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)
