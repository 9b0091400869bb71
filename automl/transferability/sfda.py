"""SFDA: Self-challenging Fisher Discriminant Analysis (Shao, Zhao, Ge, Shan, Luo, Yuan; ECCV 2022, "Not All
Models Are Equal: Predicting Model Transferability in a Self-challenging Fisher Space").

On features x [N, D] (the first ``n_dims`` principal components of f, see below) with class means mu_c,
priors p_c = n_c / N and within-class scatter S_w = sum_i (x_i - mu_{y_i})(x_i - mu_{y_i})^T / N:

1. regularization lambda = max(exp(-5 a), 1e-10), a = the reference's estimate of the largest eigenvalue
   of S_w (three steps of the power iteration from S_w 1, each step two products, then x^T S_w y);
2. Fisher classifier with the shrunk scatter S = (1 - lambda) S_w + lambda tr(S_w) / D I:
   p(c | x) = softmax_c(x^T S^-1 mu_c - mu_c^T S^-1 mu_c / 2 + log p_c);
3. ConfMix (the self-challenge): with q_i = softmax_c(p(c | x_i))[y_i] (the posteriors softened once
   more), every sample moves towards the mean of the other classes' means,
   x_i <- q_i x_i + (1 - q_i) nu_{y_i}, nu_c = sum_{c' != c} mu_c' / (C - 1);
4. the same classifier (same lambda, S_w and means recomputed) fitted on the mixed features;
   SFDA = mean_i p(y_i | x_i) on them.

Scale: a mean probability in (0, 1]; higher = better.

Reference: github.com/TencentARC/SFDA, metrics.py, ``SFDA_Score`` with its class ``SFDA`` (``fit``,
``_solve_eigen``, ``predict_proba``), ``_class_means``, ``_cov`` and utils.py ``iterative_A``; the
formula and constants above are theirs. The reference solves the generalized eigenproblem
S_b v = e S v for the Fisher directions V and predicts with coef = means V V^T; with all D directions
kept V^T S V = I, so V V^T = S^-1 and the prediction depends on S alone (S_b never enters p(y | x)).
Here S^-1 means^T is one symmetric solve: with S_w = X_w^T X_w / N, a D x D system when D <= N, else
N x N through the Woodbury identity (X_w S^-1 M^T = (b X_w X_w^T + a I)^-1 X_w M^T, b = (1 - lambda) / N,
a = lambda tr(S_w) / D), instead of a D x D generalized eigendecomposition (3.5 s at D = 2048). Logits
are computed around the grand mean (a per-sample shift that softmax ignores).

Deliberate deviation, the default ``n_dims=64``: the features are first reduced to their top 64
principal components (exact PCA, ``ncti.principal_scores``, as NCTI's reference does before its
discriminant analysis). The reference applies the classifier to the raw features, which the paper
ran with N >> D. On probes with D > N - C (500 images, D >= 512) the within-class scatter is singular,
lambda of real features is at its 1e-10 floor, and the classifier separates the training probe
perfectly in the null space of S_w: the reference returns exactly 1.0 for every such model (measured:
N = 500, D = 512 and 2048, class separations 0.1 - 1), while models with D < N get values below 1, a
ranking by feature width rather than transfer. ``n_dims=None`` is the reference, raw features. The
power iteration's start S_w 1 depends on the basis, so the PCA's sign convention enters lambda; it is
sklearn's (``principal_scores``), which makes the score independent of the sample order.

The score saturates: once the (reduced) features separate the probe's classes linearly, every posterior
is ~1 and SFDA is 1.0 to rounding (N = 500, D = 2048, C = 10 Gaussian classes in 64 dimensions: 0.13
without class information, 0.52 at separation 0.1, 1.0 from 0.4 on); models that all reach it tie.

Limits: every sample identical (constant features) -> sum_c p_c^2, the accuracy of guessing from the
priors. Classes of one sample are fine. Where the reference divides 0 by 0 and returns NaN: S_w exactly
zero (every sample equal to its class mean) takes the classifier's limit for S = eps I, the nearest
class mean (p(c | x_i) proportional to p_c over the classes whose mean equals x_i); S_w 1 = 0 with
S_w != 0 (the power iteration has no start) takes the exact largest eigenvalue of S_w for a.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.special import softmax

from ._registry import register_score
from ._validate import Inputs, check_int_option
from .ncti import principal_scores

_POWER_STEPS = 3  # utils.py iterative_A(max_iterations=3)
_DECAY = 5.0  # lambda = exp(-5 a)
_FLOOR = 1e-10


@register_score("sfda")
def sfda(inputs: Inputs, *, n_dims: int | None = 64) -> float:
    """SFDA in (0, 1]; ``n_dims`` principal components first (None: raw features, the reference)."""
    check_int_option("sfda", "n_dims", n_dims, 1, allow_none=True)
    if inputs.constant_features:
        priors = inputs.counts / inputs.n_samples
        return float(priors @ priors)
    x = inputs.features if n_dims is None else principal_scores(inputs.features, n_dims)[0]
    labels = inputs.labels
    means = _class_means(x, inputs)
    within = x - means[labels]
    shrinkage = _shrinkage(within)
    posteriors = _posteriors(within, means, inputs, shrinkage)
    # ConfMix: soften the posteriors once more, pull each sample towards the other classes' mean
    confidence = softmax(posteriors, axis=1)[np.arange(inputs.n_samples), labels][:, None]
    others = (means.sum(axis=0) - means) / (inputs.n_classes - 1)
    mixed = confidence * x + (1.0 - confidence) * others[labels]
    means = _class_means(mixed, inputs)
    posteriors = _posteriors(mixed - means[labels], means, inputs, shrinkage)
    return float(posteriors[np.arange(inputs.n_samples), labels].mean())


def _class_means(x: np.ndarray, inputs: Inputs) -> np.ndarray:
    return inputs.class_sums(x) / inputs.counts[:, None]


def _shrinkage(within: np.ndarray) -> float:
    """max(exp(-5 a), 1e-10), a the reference's three-step power estimate of the largest eigenvalue of
    S_w = within^T within / N (``iterative_A``), with S_w applied as two thin products."""
    n = len(within)

    def apply(v: np.ndarray) -> np.ndarray:
        return within.T @ (within @ v) / n

    x = apply(np.ones(within.shape[1]))  # the row sums of S_w
    if not x.any():  # S_w = 0, or its rows sum to 0: the reference gets 0 / 0
        largest = np.linalg.norm(within, 2) ** 2 / n if within.any() else 0.0
    else:
        for _ in range(_POWER_STEPS):
            y = apply(x)
            y /= np.linalg.norm(y)
            x = apply(y)
            x /= np.linalg.norm(x)
        largest = x @ apply(y)
    return max(float(np.exp(-_DECAY * largest)), _FLOOR)


def _posteriors(within: np.ndarray, means: np.ndarray, inputs: Inputs, shrinkage: float) -> np.ndarray:
    """p(c | x_i) [N, C] of the shrunk Fisher classifier, from the within-class residuals [N, D] and the
    class means [C, D] (x_i = means[y_i] + within_i)."""
    labels, priors = inputs.labels, inputs.counts / inputs.n_samples
    n, d = within.shape
    centred = means - priors @ means  # [C, D], class means around the grand mean
    a = shrinkage * np.sum(within**2) / (n * d)  # lambda tr(S_w) / D
    b = (1.0 - shrinkage) / n
    if a == 0:  # S_w = 0: the limit of S = eps I, nearest class mean, ties split by the priors
        tied = (means[:, None, :] == means[None, :, :]).all(axis=2)
        return tied[labels] * priors / (tied @ priors)[labels, None]
    if d <= n:
        scatter = b * (within.T @ within)
        scatter.flat[:: d + 1] += a
        solved = scipy.linalg.solve(scatter, centred.T, assume_a="sym")  # S^-1 M^T [D, C]
        along = within @ solved  # within_i^T S^-1 m_c
        between = centred @ solved  # m_c'^T S^-1 m_c
    else:  # Woodbury through the N x N Gram matrix
        gram = b * (within @ within.T)
        gram.flat[:: n + 1] += a
        projected = within @ centred.T  # [N, C]
        along = scipy.linalg.solve(gram, projected, assume_a="sym")
        between = (centred @ centred.T - b * projected.T @ along) / a
    logits = along + between[labels] - 0.5 * np.diag(between) + np.log(priors)
    return softmax(logits, axis=1)
