"""Numerical pieces shared by several scores: the reference PCA reduction, standardization, and a
thin SVD through the smaller Gram matrix."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from ._validate import Inputs

# The PARC repository's feature_reduce (methods.py) fixes these; keeping them makes PCA-reduced
# scores reproduce the reference numbers (randomized PCA is an approximation that depends on them).
_REFERENCE_PCA = {"svd_solver": "randomized", "random_state": 1919, "iterated_power": 1}


def pca_reduce(inputs: Inputs, n_dims: int | None) -> np.ndarray:
    """PARC-repository ``feature_reduce``: features [N, D] -> PCA scores [N, k], k = min(n_dims, N, D).

    ``n_dims=None`` returns the features unchanged. The reference clamps to N only and crashes when
    D < n_dims; here k is also clamped to D (then it is a full rotation, as the reference does at
    D == n_dims). Identical rows have no principal axes: they map to zeros instead of a PCA of a zero
    matrix. As in the reference, when N < D and k < N the randomized range finder draws its test
    matrix per sample, so reordering the samples moves the result slightly (for N > D, or k = min(N, D),
    the reduction is exactly order-independent).
    """
    x = inputs.features
    if n_dims is None:
        return x
    k = min(n_dims, *x.shape)
    if inputs.constant_features:
        return np.zeros((len(x), k))
    return PCA(n_components=k, **_REFERENCE_PCA).fit_transform(x)


def standardize(x: np.ndarray) -> np.ndarray:
    """Columns to zero mean, unit (population) variance; constant columns become 0 (sklearn StandardScaler,
    as the references use it, including its tolerance for what counts as constant)."""
    return StandardScaler().fit_transform(x)


def left_singular(
    x: np.ndarray, keep: Callable[[np.ndarray], np.ndarray], *, svd_when_tall: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Squared singular values and left singular vectors of x [N, D] through the smaller Gram matrix.

    ``keep(s)`` gets all min(N, D) singular values in descending order and returns a boolean mask of
    those to return. Returns ``sigma`` [k] (= s**2, descending) and ``u`` [N, k]; when N > D, u = x v / s,
    so the mask must exclude s = 0.

    ``eigh`` of the Gram matrix is several times cheaper than ``svd(x)`` at probe shapes (500 x 2048)
    and gives the same sigma and u to rounding; a true 0 comes out as |+-1e-16 * max|, as an SVD would
    see it. ``svd_when_tall`` (N > D) takes the LogME reference's ``truncated_svd`` instead, an SVD of
    the D x D Gram matrix: with an absolute threshold like s > 1e-10, whether a null direction of
    rank-deficient features survives depends on the rounding noise of that exact decomposition, and
    it moves the score.
    """
    n, d = x.shape
    gram = x @ x.T if n <= d else x.T @ x
    if n > d and svd_when_tall:
        _, lam, vh = np.linalg.svd(gram)
        vec = vh.T
    else:
        lam, vec = np.linalg.eigh(gram)
        order = np.argsort(-np.abs(lam), kind="stable")
        lam, vec = np.abs(lam[order]), vec[:, order]
    s = np.sqrt(lam)
    mask = keep(s)
    if n <= d:
        return s[mask] ** 2, vec[:, mask]
    return s[mask] ** 2, (x @ vec[:, mask]) / s[mask]
