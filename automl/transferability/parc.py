"""PARC: Pairwise Annotation Representation Comparison (Bolya, Mittapalli, Hoffman; NeurIPS 2021).

Formula, on features f [N, D] and labels y [N] with C classes:

1. reduce f to k = min(n_dims, N, D) principal components with the reference's randomized PCA
   (``_common.pca_reduce``; ``n_dims=None`` skips it), then standardize every column;
2. feature dissimilarity between probe images i, j: ``1 - corr(f_i, f_j)`` (Pearson across the k
   dimensions, ``np.corrcoef`` of the rows);
3. label dissimilarity: ``1 - corr(onehot(y_i), onehot(y_j))`` = 0 for the same class, C / (C - 1) otherwise;
4. PARC = 100 * Spearman rank correlation of the two upper triangles (N (N - 1) / 2 pairs).

Scale: [-100, 100], higher = features that separate the target classes better.

Reference: github.com/dbolya/parc, methods.py: ``feature_reduce``, ``PARC.forward`` and
``PARC.get_parc_correlation``. Deviations, both where the reference gives no usable number:

* ``n_dims`` is clamped to min(N, D) (the reference crashes when D < n_dims).
* The label dissimilarity is built exactly (two values). The reference computes it with ``np.corrcoef``
  on one-hot rows, whose rounding leaves 1-ulp differences between pairs that are mathematically tied
  (e.g. 0 and 2.2e-16, depending on the class), and ``spearmanr`` then ranks those as distinct values;
  how many split off depends on C and the BLAS, and it moves the score by up to several points
  (N = 500, C = 37: 5.5 instead of 13.3). Wherever the reference's label matrix has exactly two values
  the results agree to float precision.

Dissimilarities are rounded to 1e-12 before ranking. Generic features never have two pairs that
close (moving them changes the score by < 1e-9), but degenerate ones have exact mathematical ties,
which the reference orders by rounding noise: with 2 effective dimensions (D = 2, or duplicated
columns) every correlation is +-1.

Spearman against a two-valued variable needs only the ranks of the feature dissimilarities: with
average ranks R over M pairs and b = 1 for different-class pairs, rho = cov(R, b) / (sd(R) sd(b)),
where sd(R) includes the usual tie correction. One integer sort of the M pairs (dissimilarity and b
packed in one key) replaces ``rankdata`` + ``corrcoef``.

Limits: every sample identical (constant features) -> 0.0, the feature dissimilarities are all equal
and carry no rank information. Fewer than 2 dimensions (D = 1 or n_dims = 1), or a sample whose reduced
features are all equal, leave the correlation between images undefined -> ValueError.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._common import pca_reduce, standardize
from ._registry import register_score
from ._validate import Inputs, check_int_option

_DECIMALS = 12  # dissimilarities lie in [0, 2] and carry ~1e-15 rounding error


@register_score("parc", min_per_class=2)
def parc(inputs: Inputs, *, n_dims: int | None = 32) -> float:
    """PARC x100 in [-100, 100]; ``n_dims`` PCA dimensions (None: no PCA), clamped to min(N, D)."""
    check_int_option("parc", "n_dims", n_dims, 2, allow_none=True)
    if inputs.constant_features:
        return 0.0
    f = standardize(pca_reduce(inputs, n_dims))
    if f.shape[1] < 2:
        raise ValueError("parc needs at least 2 feature dimensions to correlate images, got D = 1")
    f = f - f.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(f, axis=1)
    if not norms.all():
        raise ValueError(
            f"parc: {int((norms == 0).sum())} samples have constant reduced features, so their correlation "
            "with other samples is undefined (use more dimensions: n_dims)"
        )
    f /= norms[:, None]
    rows, cols = _upper_triangle(len(f))
    corr = np.clip((f @ f.T)[rows, cols], -1.0, 1.0)
    # Integer keys on a 1e-12 grid: pairs that are mathematically tied rank as ties instead of by
    # rounding noise (only degenerate features have them: with 2 effective dimensions every correlation
    # is +-1). The lowest bit marks different-class pairs, so one sort orders values and groups.
    grid = np.rint((1.0 - corr) * 10.0**_DECIMALS).astype(np.int64)
    different = inputs.labels[rows] != inputs.labels[cols]
    return 100.0 * _spearman_with_binary(np.sort(grid << 1 | different))


@lru_cache(maxsize=4)
def _upper_triangle(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the strict upper triangle, cached: the probe size rarely changes."""
    return np.triu_indices(n, 1)


def _spearman_with_binary(keys: np.ndarray) -> float:
    """Spearman correlation (average ranks for ties) between a value and a two-valued variable, from
    the sorted int64 keys [M] ``value << 1 | high`` (``high`` = 1 where the two-valued variable is high)."""
    m = len(keys)
    values, high = keys >> 1, keys & 1
    starts = np.flatnonzero(values[1:] != values[:-1]) + 1
    if starts.size == 0:  # every value tied: no rank information
        return 0.0
    bounds = np.concatenate(([0], starts, [m]))
    ties = np.diff(bounds).astype(np.float64)
    twice_mean_rank = bounds[:-1] + bounds[1:] + 1.0  # first + last 1-based position of each tie group
    n_high = np.add.reduceat(high, bounds[:-1])  # high pairs per tie group
    p = high.sum() / m
    cov = np.dot(n_high, twice_mean_rank) / (2.0 * m) - p * (m + 1) / 2.0
    var_ranks = (m * m - 1) / 12.0 - np.sum(ties**3 - ties) / (12.0 * m)
    return float(cov / np.sqrt(var_ranks * p * (1.0 - p)))
