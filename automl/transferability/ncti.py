"""NCTI: Neural Collapse informed Transferability Index (Wang, Luo, Zheng, Huang, Baktashmotlagh; ICCV 2023,
"How Far Pre-trained Models Are from Neural Collapse on the Target Dataset Informs their Transferability").

How close the features f [N, D] are to neural collapse on the target classes, from three terms computed
on a PCA reduction and a linear discriminant analysis (LDA) of it:

1. x = the first k = min(n_dims, N, D) principal-component scores of f (n_dims = 64), components with
   zero variance (to rounding) left out;
2. shrinkage t = max(exp(-sum of the 32 largest PCA variances), 1e-10); LDA of x: sklearn
   ``LinearDiscriminantAnalysis(solver='svd')`` when t is at its floor 1e-10 (features whose 32 top
   variances sum to 23 or more, i.e. nearly every real network), else ``solver='eigen', shrinkage=t``;
3. seli = |H|_* : nuclear norm of the LDA projection H [N, r] (r <= C - 1 discriminant directions),
   centred; the paper's simplex-encoding term ("Simplex ETF"), higher = class means further apart;
   ncc = mean_i p(y_i | x_i) : the LDA (nearest-class-centre) posterior of the true class;
   vc  = log sum_c |P_c|_* : P_c [n_c, C] the LDA posteriors of class c's samples; the paper's
   within-class variability term, lower = more collapsed.

The reference returns the triple (seli, ncc, vc) per model and ranks a bank by
``minmax(seli) + minmax(ncc) - minmax(vc)``, each term min-max normalized over the bank's models.
A score here sees one model, so the registered ``ncti`` is a per-model value with fixed weights:

    ncti = ncc + log(seli / (sqrt(N) r)) - (vc - log sum_c sqrt(n_c))

i.e. the reference's three terms with weight 1 each, seli on a log scale. Why: the raw sum
seli + ncc - vc would be the nuclear norm alone (seli is ~ sqrt(N) (C - 1), hundreds to thousands;
ncc is in (0, 1] and vc moves by ~0.5 between models), while the reference gives the terms equal say.
On the log scale the three terms move by comparable amounts across models (each by O(0.1 - 1) on
500-image probes), the closest fixed-weight stand-in for the bank normalization. The two constants
depend only on the probe (N, class counts, r = min(C - 1, rank), the same for every model of a bank),
so they do not change a ranking; they make the terms read as: seli term = log mean_i sqrt(1 + lambda_i)
over the Fisher ratios lambda_i of the discriminant directions (sklearn's svd solver whitens the
within-class scatter to 1/N), >= 0 and 0 without separation; vc term = 0 at perfect collapse (every
sample predicted one-hot in its own class), within +-log(C) / 2 (uniform posteriors give +log(C) / 2:
the reference's nuclear-norm proxy counts identical rows as collapsed). Scale: unbounded, higher =
better. The LDA is fitted and evaluated on the probe itself, so the level depends on N, C and k
(N = 500, D = 2048, Gaussian classes: about 0.03 without class information and 2 - 4 for well
separated classes at C = 10; 1.0 and 2 - 3 at C = 100, where 5 images per class overfit 64 dimensions);
compare models on the same probe. The reference's bank-level score is :func:`ncti_bank` over the
:func:`ncti_terms` of every model.

Reference: github.com/BUserName/NCTI, metrics.py, ``NCTI_Score`` (the three terms), and
evaluate_metric_group1_cpu.py (the bank combination). Deviations:

* The PCA is exact (a symmetric eigendecomposition of the smaller Gram matrix, only the top k
  eigenpairs). The reference calls sklearn ``PCA(n_components=64)``, whose 'auto' solver is exact for
  inputs up to 500 x 500 but a randomized, unseeded approximation above (500 x 2048 probes): its score
  changes from run to run. The exact PCA is its deterministic limit and independent of sample order.
  LDA is invariant to rotations of its input, so only the PCA subspace and variances matter.
* k is clamped to min(N, D) (the reference's PCA fails below 64 samples or features), and principal
  components with variance below max(N, D) * eps * largest variance (rounding noise of the Gram
  matrix, e.g. the N-th component of N <= D centred samples, or duplicated columns) are dropped:
  sklearn's svd LDA would standardize such a noise column to unit variance and treat it as a feature.
* The LDA is this environment's scikit-learn; its svd solver normalizes the within-class scatter by
  1/N (older releases, which the reference ran on, by 1/(N - C)), which multiplies seli by a constant.
* The per-model combination above instead of the bank's min-max sum (see :func:`ncti_bank` for that).

Limits: every sample identical (constant features): no principal component, no discriminant
direction: seli = 0 and ncti = -inf, ranking such a model last (for the raw terms the LDA's posteriors
are taken as the class priors p: ncc = sum_c p_c^2, vc = log(|p| sum_c sqrt(n_c))). The opposite end,
every sample equal to its class mean (perfect collapse; here: a within-class scatter of the PCA scores
below max(N, D) * eps of their total, a spread ratio under ~1e-7), where the reference's LDA fails
with LinAlgError, raises ValueError. Needs 2 samples per class (LDA needs N > C). With fewer than
C + k samples the within-class scatter of the k PCA dimensions is singular and the LDA separates the
probe by construction, as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.utils.extmath import svd_flip

from ._registry import register_score
from ._validate import Inputs, check_int_option

_PCA_DIMS = 64  # NCTI_Score: PCA(n_components=64)
_SHRINKAGE_DIMS = 32  # shrinkage from the 32 largest PCA variances
_SHRINKAGE_FLOOR = 1e-10
_COLLAPSED = (
    "ncti: every sample equals its class mean (within-class scatter zero to rounding), where the "
    "discriminant analysis is undefined (the limit of the score is +inf)"
)


@register_score("ncti", min_per_class=2)
def ncti(inputs: Inputs, *, n_dims: int = _PCA_DIMS) -> float:
    """Per-model NCTI: ncc + log seli + within-class collapse term, normalized by probe constants
    (see the module docstring); ``n_dims`` PCA dimensions (clamped to min(N, D))."""
    check_int_option("ncti", "n_dims", n_dims, 1)
    seli, ncc, vc, directions = _terms(inputs, n_dims)
    if seli == 0:
        return -np.inf
    counts = inputs.counts.astype(np.float64)
    seli_term = np.log(seli / (np.sqrt(inputs.n_samples) * directions))
    collapse_term = np.log(np.sqrt(counts).sum()) - vc
    return float(ncc + seli_term + collapse_term)


def ncti_terms(inputs: Inputs, *, n_dims: int = _PCA_DIMS) -> tuple[float, float, float]:
    """The reference's raw per-model triple (seli, ncc, vc) of validated inputs (see the module docstring),
    for :func:`ncti_bank`."""
    check_int_option("ncti", "n_dims", n_dims, 1)
    return _terms(inputs, n_dims)[:3]


def ncti_bank(terms: Sequence[Sequence[float]]) -> np.ndarray:
    """The reference's bank-level NCTI: ``minmax(seli) + minmax(ncc) - minmax(vc)`` over the models'
    :func:`ncti_terms` [M, 3] -> [M], each term min-max normalized across the M models. A term with the
    same value for every model contributes 0 (the reference divides 0 by 0 there)."""
    values = np.asarray(terms, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != 3:
        raise ValueError(f"ncti_bank needs one (seli, ncc, vc) triple per model, got shape {values.shape}")
    low = values.min(axis=0)
    spread = values.max(axis=0) - low
    scaled = np.divide(values - low, spread, out=np.zeros_like(values), where=spread > 0)
    return scaled[:, 0] + scaled[:, 1] - scaled[:, 2]


def principal_scores(features: np.ndarray, n_dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact PCA: the scores [N, k] of the first k = min(n_dims, N, D) principal components of features
    [N, D] and their variances [k] (1/(N - 1), sklearn's ``explained_variance_``), largest first;
    components at the rounding level of the Gram matrix (variance <= max(N, D) * eps * largest) are left
    out, so k can be smaller (0 for constant features).

    Only the top k eigenpairs of the smaller Gram matrix are computed (LAPACK ``syevr``), cheaper than
    sklearn's full SVD (190 ms at 500 x 2048) and exact, unlike its randomized solver. Scores are x v
    (N > D) or u s (N <= D), with sklearn's sign convention (``svd_flip`` on the loadings: the largest
    loading of each component is positive), so they equal ``PCA(k, svd_solver='full').fit_transform``
    to rounding and do not depend on the order of the samples."""
    x = features - features.mean(axis=0)
    n, d = x.shape
    k = min(n_dims, n, d)
    gram = x.T @ x if n > d else x @ x.T
    size = len(gram)
    lam, vec = scipy.linalg.eigh(gram, subset_by_index=[size - k, size - 1])
    lam, vec = lam[::-1], vec[:, ::-1]
    keep = lam > _rounding(x) * lam[0] if lam[0] > 0 else np.zeros(k, dtype=bool)
    lam, vec = lam[keep], vec[:, keep]
    if n > d:
        scores, loadings = x @ vec, vec
    else:
        scores, loadings = vec * np.sqrt(lam), x.T @ vec  # loadings up to a positive factor per column
    scores, _ = svd_flip(scores, loadings.T, u_based_decision=False)
    return scores, lam / (n - 1)


def _rounding(x: np.ndarray) -> float:
    """Relative size of rounding in a Gram matrix of x [N, D] (a variance ratio below it is noise)."""
    return max(x.shape) * np.finfo(np.float64).eps


def _terms(inputs: Inputs, n_dims: int) -> tuple[float, float, float, int]:
    """(seli, ncc, vc, r): the reference's three terms and the number of discriminant directions."""
    labels = inputs.labels
    n = inputs.n_samples
    if inputs.constant_features:  # no direction (centring leaves only rounding): posteriors = priors
        priors = inputs.counts / n
        vc = np.log(np.linalg.norm(priors) * np.sqrt(inputs.counts).sum())
        return 0.0, float(priors @ priors), float(vc), 0
    x, variances = principal_scores(inputs.features, n_dims)
    within = x - (inputs.class_sums(x) / inputs.counts[:, None])[labels]
    if np.sum(within**2) <= _rounding(x) * np.sum(x**2):
        raise ValueError(_COLLAPSED)
    shrinkage = max(np.exp(-variances[:_SHRINKAGE_DIMS].sum()), _SHRINKAGE_FLOOR)
    if shrinkage == _SHRINKAGE_FLOOR:
        lda = LinearDiscriminantAnalysis(solver="svd")
    else:
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=float(shrinkage))
    projection = lda.fit_transform(x, labels)
    projection -= projection.mean(axis=0)
    seli = np.linalg.svd(projection, compute_uv=False).sum()
    posteriors = lda.predict_proba(x)
    ncc = posteriors[np.arange(n), labels].mean()
    vc = np.log(_class_nuclear_norms(posteriors, inputs).sum())
    return float(seli), float(ncc), float(vc), projection.shape[1]


def _class_nuclear_norms(rows: np.ndarray, inputs: Inputs) -> np.ndarray:
    """|rows[labels == c]|_* for every class c -> [C], as one batched SVD: each class's rows go into a
    zero-padded [max n_c, C'] block (zero rows leave the singular values unchanged)."""
    labels, counts = inputs.labels, inputs.counts
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    blocks = np.zeros((inputs.n_classes, counts.max(), rows.shape[1]))
    blocks[labels[order], np.arange(len(order)) - starts[labels[order]]] = rows[order]
    return np.linalg.svd(blocks, compute_uv=False).sum(axis=1)
