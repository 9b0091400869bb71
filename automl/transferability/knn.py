"""Leave-one-out k-nearest-neighbour accuracy ("k-NN CV" in Bolya et al., NeurIPS 2021).

Every probe image is classified by the labels of its k nearest other images (Euclidean distance on
the features, optionally PCA-reduced to ``n_dims`` with the reference's PCA):

* if one label gets the most votes, or several tie with more than one vote each, the prediction is the
  most voted label (the smallest one on a tie, ``scipy.stats.mode``) and the image scores 1 or 0;
* if all k votes are different labels, the reference compares each vote with the true label, so the
  image scores 1/k when its label is among them (k = 1 is plain 1-NN accuracy).

knn = 100 * mean over images. Scale: percent in [0, 100]; higher = better.

Reference: github.com/dbolya/parc, methods.py, ``kNN.forward`` (metric 'l2' = sklearn euclidean
distances, then ``argsort`` and ``idx[:, 1:k+1]``, ``scipy.stats.mode``, and the ``counts == 1``
broadcast that gives the 1/k rule above). The reference assumes each image sorts first in its own row;
here the image itself is excluded explicitly and ties in distance go to the lower sample index (the
reference's unstable argsort leaves both choices open, and with a duplicate image it may even vote
for itself).

Limits: duplicated images are each other's nearest neighbours at distance 0. Every sample identical
(constant features): all distances tie, each image's neighbours are the lowest-index other images.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics.pairwise import euclidean_distances

from ._common import pca_reduce
from ._registry import register_score
from ._validate import Inputs, check_int_option


@register_score("knn", min_per_class=2)
def knn(inputs: Inputs, *, k: int = 1, n_dims: int | None = None) -> float:
    """Leave-one-out k-NN accuracy in percent, [0, 100]."""
    n = inputs.n_samples
    check_int_option("knn", "k", k, 1, n - 1)
    check_int_option("knn", "n_dims", n_dims, 1, allow_none=True)
    dist = euclidean_distances(pca_reduce(inputs, n_dims))
    np.fill_diagonal(dist, np.inf)  # leave one out
    kth = dist.min(axis=1, keepdims=True) if k == 1 else np.partition(dist, k - 1, axis=1)[:, k - 1 : k]
    chosen = dist <= kth
    tied = chosen.sum(axis=1) > k
    if tied.any():  # keep the lowest-index images at the k-th distance (rare: needs exact ties)
        rows = chosen[tied]
        at_kth = dist[tied] == kth[tied]
        free = k - (rows & ~at_kth).sum(axis=1, keepdims=True)
        chosen[tied] = (rows & ~at_kth) | (at_kth & (np.cumsum(at_kth, axis=1) <= free))
    votes = inputs.class_sums(chosen.T).T  # [N, C] neighbours per label
    most = votes.max(axis=1)
    right = np.where(most == 1, votes[np.arange(n), inputs.labels] / k, votes.argmax(axis=1) == inputs.labels)
    return float(100.0 * right.mean())
