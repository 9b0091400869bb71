"""The transferability scores as their published reference code computes them, written out plainly: the
tests compare ``automl.transferability.score`` with these (tests/transferability/), and the speed
benchmark times the library against them (``python -m benchmarks.speed.scores``).

Every function takes ``(features, labels, probs=None, **options)`` as ``score(name, ...)`` does, with the
library's option names and defaults, and follows its reference line by line:

* PARC, H-score, kNN and the PCA they share (``feature_reduce``): dbolya/parc methods.py;
* LogME, LEEP, NCE: thuml/LogME (LogME.py ``_fit_fixed_point`` with ``truncated_svd``, LEEP.py, NCE.py);
* the shrinkage H-score: thuml/Transfer-Learning-Library, tllib/ranking/hscore.py ``regularized_h_score``;
* N-LEEP: a PCA keeping 80% of the variance and a Gaussian mixture of 5 C components, as in
  TencentARC/SFDA metrics.py, with this library's settings (at most N // 2 components, diagonal
  covariances, seeded);
* the linear probe: the scikit-learn steps (PCA, then per fold a scaler and a logistic regression);
* SFDA: TencentARC/SFDA metrics.py ``SFDA_Score`` (class ``SFDA``, ``_cov``, utils.py ``iterative_A``);
* NCTI: BUserName/NCTI metrics.py ``NCTI_Score`` and the bank combination of
  evaluate_metric_group1_cpu.py.

They leave the reference code only where the library documents a deviation because the reference gives
no usable number there (each score's module docstring in ``automl/transferability/`` says why):

* PARC: the label dissimilarity is built exactly (two values), not with ``np.corrcoef`` of one-hot rows,
  and the feature dissimilarities are rounded to 1e-12 before ranking, so the exact mathematical ties of
  degenerate features rank as ties instead of by rounding noise;
* kNN: each image itself is left out explicitly and distance ties go to the lower sample index (a stable
  sort; the reference's ``argsort`` leaves both open);
* SFDA and NCTI: an exact PCA (sklearn's full SVD) to k = min(n_dims, N - 1, D) dimensions first. NCTI's
  reference uses sklearn's 'auto' PCA (the same up to 500 x 500) and needs N, D >= 64; SFDA's has no PCA
  (``n_dims=None``).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats
from scipy import linalg
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import pairwise_distances
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

# ---------------------------------------------------------------- dbolya/parc methods.py


def feature_reduce(features: np.ndarray, n_dims: int | None) -> np.ndarray:
    """methods.py ``feature_reduce``: the randomized PCA every PCA-reduced score shares."""
    if n_dims is None:
        return features
    n_dims = min(n_dims, features.shape[0])
    return PCA(
        n_components=n_dims, svd_solver="randomized", random_state=1919, iterated_power=1
    ).fit_transform(features)


def reference_parc(features, labels, probs=None, *, n_dims: int | None = 32) -> float:
    """``PARC.forward`` + ``get_parc_correlation``, with the exact label dissimilarity and rounded
    feature dissimilarities (see the module docstring)."""
    f = StandardScaler().fit_transform(feature_reduce(features, n_dims))
    n_classes = labels.max() + 1
    rdm1 = np.round(1 - np.corrcoef(f), 12)
    rdm2 = (labels[:, None] != labels[None, :]) * (n_classes / (n_classes - 1))
    upper = np.triu_indices(len(labels), 1)
    return scipy.stats.spearmanr(rdm1[upper], rdm2[upper])[0] * 100


def covariance(x: np.ndarray) -> np.ndarray:
    """``HScore.getCov``: centred, divided by N - 1."""
    centered = x - np.mean(x, axis=0, keepdims=True)
    return centered.T @ centered / (len(x) - 1)


def reference_hscore(features, labels, probs=None, *, n_dims: int | None = None) -> float:
    """``HScore.forward`` with ``get_hscore_fast`` (its default): PCA, StandardScaler, class means
    ``sum / (count + 1e-8)``, ``pinv(cov f, rcond=1e-15)``."""
    f = StandardScaler().fit_transform(feature_reduce(features, n_dims))
    one_hot = np.eye(labels.max() + 1)[labels]
    means = (one_hot.T @ f) / (one_hot.sum(axis=0)[:, None] + 1e-8)
    g = one_hot @ means
    return np.trace(np.linalg.pinv(covariance(f), rcond=1e-15) @ covariance(g))


def reference_knn(features, labels, probs=None, *, k: int = 1, n_dims: int | None = None) -> float:
    """``kNN.forward`` (metric 'l2'), the image itself left out and distance ties to the lower index."""
    dist = pairwise_distances(feature_reduce(features, n_dims), metric="l2")
    np.fill_diagonal(dist, np.inf)
    votes = labels[np.argsort(dist, axis=-1, kind="stable")[:, :k]]
    preds, counts = scipy.stats.mode(votes, axis=1)
    n = len(labels)
    preds = np.where(counts.reshape(n, -1) == 1, votes, preds.reshape(n, -1))
    return 100 * (preds == labels.reshape(n, -1)).mean()


# ---------------------------------------------------------------- thuml/LogME, tllib


def reference_logme(features, labels, probs=None) -> float:
    """LogME.py ``LogME.fit`` -> ``_fit_fixed_point`` (``truncated_svd`` when N > D)."""
    f = features.astype(np.float64)
    n, d = f.shape
    if n > d:
        _, s, vh = np.linalg.svd(f.T @ f)
        s = np.sqrt(s)
        k = int(np.sum(s > 1e-10))
        u = (f @ vh.T)[:, :k] / s[:k]
        s = s[:k]
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s.reshape(-1, 1) ** 2
    evidences = []
    for c in range(labels.max() + 1):
        y = (labels == c).astype(np.float64).reshape(-1, 1)
        x2 = (u.T @ y) ** 2
        res_x2 = (y**2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (
            d / 2.0 * np.log(alpha)
            + n / 2.0 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sigma))
            - beta / 2.0 * res2
            - alpha / 2.0 * m2
            - n / 2.0 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return np.mean(evidences)


def reference_leep(features, labels, probs) -> float:
    """LEEP.py: the empirical joint P(y, z), P(y | z), and the mean log of the expected prediction."""
    n, n_source = probs.shape
    n_classes = labels.max() + 1
    joint = np.zeros((n_classes, n_source))
    for c in range(n_classes):
        joint[c] = np.sum(probs[labels == c] / n, axis=0)
    conditional = (joint / joint.sum(axis=0, keepdims=True)).T
    prediction = probs @ conditional
    return np.mean(np.log(np.array([row[label] for row, label in zip(prediction, labels, strict=True)])))


def reference_nce(features, labels, probs) -> float:
    """NCE.py: -H(Y | Z) of the source model's hard predictions Z."""
    source = probs.argmax(axis=1)
    n = len(labels)
    joint = np.zeros((labels.max() + 1, source.max() + 1))
    for s, t in zip(source, labels, strict=True):
        joint[t, s] += 1.0 / n
    p_z = joint.sum(axis=0, keepdims=True)
    mask = p_z.reshape(-1) != 0
    conditional = (joint[:, mask] / p_z[:, mask]).T + 1e-20
    entropy = np.sum(-conditional * np.log(conditional), axis=1, keepdims=True)
    return -np.sum(entropy * p_z.reshape(-1, 1)[mask])


def reference_hscore_shrink(features, labels, probs=None) -> float:
    """tllib ``regularized_h_score``: centred features, Ledoit-Wolf covariance, ``np.cov(g)``, pinv."""
    f = features.astype(np.float64)
    f = f - np.mean(f, axis=0, keepdims=True)
    lw = LedoitWolf(assume_centered=False).fit(f)
    g = np.zeros_like(f)
    for c in range(labels.max() + 1):
        g[labels == c] = np.mean(f[labels == c], axis=0)
    cov_g = np.cov(g, rowvar=False)
    return np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * cov_g))


def reference_nleep(features, labels, probs=None) -> float:
    """N-LEEP: LEEP of the posteriors of a seeded diagonal Gaussian mixture on the 80%-variance PCA."""
    reduced = PCA(n_components=0.8).fit_transform(features)
    n_components = min(5 * (labels.max() + 1), len(labels) // 2)
    mixture = GaussianMixture(n_components, covariance_type="diag", random_state=0).fit(reduced)
    return reference_leep(None, labels, mixture.predict_proba(reduced))


def reference_linear(features, labels, probs=None, *, n_dims: int | None = 64, folds: int = 5) -> float:
    """The linear probe written out: PCA, then per fold a scaler and a logistic regression fitted on the
    training part and scored on the held-out part."""
    x = feature_reduce(features, None if n_dims is None else min(n_dims, features.shape[1]))
    splits = StratifiedKFold(n_splits=min(folds, np.bincount(labels).min()), shuffle=True, random_state=0)
    accuracies = []
    for train, test in splits.split(x, labels):
        scaler = StandardScaler().fit(x[train])
        probe = LogisticRegression(C=1.0, max_iter=300).fit(scaler.transform(x[train]), labels[train])
        accuracies.append(np.mean(probe.predict(scaler.transform(x[test])) == labels[test]))
    return 100 * np.mean(accuracies)


# ---------------------------------------------------------------- TencentARC/SFDA metrics.py


def exact_pca(features, n_dims):
    """The exact PCA the library uses: sklearn's full SVD, k = min(n_dims, N - 1, D) (the N-th component
    of N <= D centred samples has zero variance and is left out); returns (scores, explained variances)."""
    k = min(n_dims, features.shape[0] - 1, features.shape[1])
    pca = PCA(n_components=k, svd_solver="full")
    return pca.fit_transform(features), pca.explained_variance_


def reference_cov(x, shrinkage=-1.0):
    """metrics.py ``_cov``: np.cov with bias=1, optionally shrunk towards tr / D times the identity."""
    emp_cov = np.atleast_2d(np.cov(np.asarray(x).T, bias=1))
    if shrinkage < 0:
        return emp_cov
    n_features = emp_cov.shape[0]
    mu = np.trace(emp_cov) / n_features
    shrunk_cov = (1.0 - shrinkage) * emp_cov
    shrunk_cov.flat[:: n_features + 1] += shrinkage * mu
    return shrunk_cov


def reference_iterative_a(a, max_iterations=3):
    """utils.py ``iterative_A``: power estimate of the largest eigenvalue of a, started at its row sums."""
    x = a.sum(axis=1)
    for _ in range(max_iterations):
        temp = a @ x
        y = temp / np.linalg.norm(temp, 2)
        temp = a @ y
        x = temp / np.linalg.norm(temp, 2)
    return x @ a @ y


def reference_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def reference_sfda_fit_proba(x, y, shrinkage=None):
    """class ``SFDA``: fit (``_solve_eigen``) then predict_proba on the same x; returns (probs, shrinkage)."""
    classes = sorted(set(y.tolist()))
    n, d = x.shape
    priors = np.array([np.sum(y == c) / n for c in classes])
    means = np.array([x[y == c].mean(axis=0) for c in classes])
    sw = np.zeros((d, d))
    for idx, c in enumerate(classes):
        sw += priors[idx] * reference_cov(x[y == c])
    if shrinkage is None:
        shrinkage = max(np.exp(-5 * reference_iterative_a(sw, 3)), 1e-10)
    st = reference_cov(x, shrinkage)
    mu = np.trace(sw) / d
    shrunk_sw = (1.0 - shrinkage) * sw
    shrunk_sw.flat[:: d + 1] += shrinkage * mu
    sb = st - shrunk_sw
    evals, evecs = linalg.eigh(sb, shrunk_sw)
    evecs = evecs[:, np.argsort(evals)[::-1]]
    coef = means @ evecs @ evecs.T
    intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
    return reference_softmax(x @ coef.T + intercept), shrinkage


def reference_sfda(features, labels, probs=None, *, n_dims: int | None = 64, shrinkage=None) -> float:
    """``SFDA_Score`` after the exact PCA (``n_dims=None``: none): fit, soften, ConfMix class by class,
    refit with the same shrinkage, mean p(y | x)."""
    x = np.array(features if n_dims is None else exact_pca(features, n_dims)[0], dtype=np.float64)
    n, n_classes = len(labels), labels.max() + 1  # the reference mixes x in place
    prob, shrinkage = reference_sfda_fit_proba(x, labels, shrinkage)
    prob = np.exp(prob) / np.exp(prob).sum(axis=1, keepdims=True)
    means = np.array([x[labels == c].mean(axis=0) for c in range(n_classes)])
    others = np.zeros_like(means)
    for c in range(n_classes):
        others[c] = (np.sum(means, axis=0) - means[c]) / (n_classes - 1)
    for c in range(n_classes):
        indices = np.where(labels == c)[0]
        confidence = prob[indices, c].reshape(-1, 1)
        x[indices] = confidence * x[indices] + (1 - confidence) * others[c]
    prob, _ = reference_sfda_fit_proba(x, labels, shrinkage)
    return np.sum(prob[np.arange(n), labels]) / n


# ---------------------------------------------------------------- BUserName/NCTI metrics.py


def reference_ncti_terms(features, labels, n_dims=64):
    """``NCTI_Score`` -> (seli, ncc, vc, solver, directions), with the exact PCA in place of the
    reference's 'auto' one and k clamped as above."""
    n_classes = len(np.unique(labels))
    x, explained = exact_pca(features, n_dims)
    temp = max(np.exp(-explained[:32].sum()), 1e-10)
    if temp == 1e-10:
        clf = LinearDiscriminantAnalysis(solver="svd")
    else:
        clf = LinearDiscriminantAnalysis(solver="eigen", shrinkage=float(temp))
    low_feat = clf.fit_transform(x, labels)
    low_feat = low_feat - np.mean(low_feat, axis=0, keepdims=True)
    all_lowfeat_nuc = np.linalg.norm(low_feat, ord="nuc")
    low_pred = clf.predict_proba(x)
    ncc = np.sum(low_pred[np.arange(x.shape[0]), labels]) / x.shape[0]
    class_pred_nuc = 0.0
    for c in range(n_classes):
        class_pred_nuc += np.linalg.norm(low_pred[labels == c], ord="nuc")
    return all_lowfeat_nuc, ncc, np.log(class_pred_nuc), clf.solver, low_feat.shape[1]


def reference_ncti(features, labels, probs=None, *, n_dims: int = 64) -> float:
    """The documented per-model combination of the reference's three terms (automl/transferability/ncti.py)."""
    seli, ncc, vc, _, directions = reference_ncti_terms(features, labels, n_dims)
    n = len(labels)
    collapsed = sum(math.sqrt(np.sum(labels == c)) for c in range(labels.max() + 1))
    return ncc + math.log(seli / (math.sqrt(n) * directions)) - (vc - math.log(collapsed))


def reference_ncti_bank(score_dict):
    """evaluate_metric_group1_cpu.py: min-max each term over the models, mcscore + mascore - cpscore."""
    models = list(score_dict)
    all_score = np.array([score_dict[m][0] for m in models])
    cls_score = np.array([score_dict[m][1] for m in models])
    cls_compact = np.array([score_dict[m][2] for m in models])
    result = {}
    for m in models:
        mascore = (score_dict[m][0] - all_score.min()) / (all_score.max() - all_score.min())
        mcscore = (score_dict[m][1] - cls_score.min()) / (cls_score.max() - cls_score.min())
        cpscore = (score_dict[m][2] - cls_compact.min()) / (cls_compact.max() - cls_compact.min())
        result[m] = mcscore + mascore - cpscore
    return result


REFERENCES = {
    "hscore": reference_hscore,
    "hscore_shrink": reference_hscore_shrink,
    "knn": reference_knn,
    "leep": reference_leep,
    "linear": reference_linear,
    "logme": reference_logme,
    "nce": reference_nce,
    "ncti": reference_ncti,
    "nleep": reference_nleep,
    "parc": reference_parc,
    "sfda": reference_sfda,
}
