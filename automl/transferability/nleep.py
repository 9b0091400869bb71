"""N-LEEP: Gaussian LEEP (Li, Jia, Sun, Ruan, Huang, Gong; "Ranking Neural Checkpoints", CVPR 2021).

LEEP with the source classifier replaced by a Gaussian mixture fitted to the features:

1. PCA of f [N, D] keeping the fewest components that explain more than 80 % of the variance (the
   paper; sklearn ``PCA(n_components=0.8)`` as in TencentARC/SFDA metrics.py), or with ``n_dims`` the
   reference PCA of the other scores (``_common.pca_reduce``);
2. a ``sklearn.mixture.GaussianMixture`` with K components fitted on those scores, seeded by
   ``random_state`` (default 0) so the score is deterministic;
3. N-LEEP = LEEP(posteriors [N, K], labels), see ``leep.py``.

Scale: mean log-likelihood, <= 0; higher = better.

Choices (no single reference code): K = 5 * C as in the paper (also google-research
stable_transfer/transferability/nleep.py and TencentARC/SFDA metrics.py), capped at N // 2 so that
every component has two samples on average (a 500-image probe of 100 classes would otherwise ask
for one component per image). ``covariance_type`` defaults to 'diag' rather than sklearn's 'full':
with a few hundred PCA dimensions and K up to N / 2, full covariances cost O(K d^3) per EM step and
are singular with so few samples per component; pass covariance_type='full' for the paper's setting.
N-LEEP is chaotic in its input: the mixture fit (k-means++ start, EM) can land in another local
optimum when the PCA scores move by 1e-16 relative, changing the score by ~1e-2. So the PCA is
sklearn's own, which reproduces implementations built on it bit for bit, rather than a faster Gram
eigendecomposition; at D = 2048 that SVD dominates the run time.

Limits: every sample identical (constant features) -> the LEEP of a source that predicts nothing,
sum_c (n_c / N) log(n_c / N) = -H(Y), without fitting a mixture to a single point.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from ._common import pca_reduce
from ._registry import register_score
from ._validate import Inputs, check_int_option
from .leep import leep_from_probs

_VARIANCE = 0.8  # fraction of the variance the PCA keeps (the paper)
_COMPONENTS_PER_CLASS = 5
_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@register_score("nleep")
def nleep(
    inputs: Inputs,
    *,
    n_dims: int | None = None,
    n_components: int | None = None,
    covariance_type: str = "diag",
    random_state: int | None = 0,
) -> float:
    """N-LEEP, <= 0. ``n_dims``: PCA dimensions (None: 80 % of the variance); ``n_components``:
    mixture size (None: min(5 C, N // 2)); ``random_state``: mixture seed (None: not reproducible)."""
    n = inputs.n_samples
    check_int_option("nleep", "n_dims", n_dims, 1, allow_none=True)
    check_int_option("nleep", "n_components", n_components, 1, n, allow_none=True)
    check_int_option("nleep", "random_state", random_state, 0, allow_none=True)
    if covariance_type not in _COVARIANCE_TYPES:
        raise ValueError(
            f"nleep: option covariance_type must be one of {_COVARIANCE_TYPES}, got {covariance_type!r}"
        )
    if inputs.constant_features:
        p = inputs.counts / n
        return float(np.sum(p * np.log(p)))
    if n_dims is None:
        scores = PCA(n_components=_VARIANCE).fit_transform(inputs.features)
    else:
        scores = pca_reduce(inputs, n_dims)
    if n_components is None:
        n_components = min(_COMPONENTS_PER_CLASS * inputs.n_classes, n // 2)
    mixture = GaussianMixture(n_components, covariance_type=covariance_type, random_state=random_state)
    posteriors = mixture.fit(scores).predict_proba(scores)
    return leep_from_probs(posteriors, inputs)
