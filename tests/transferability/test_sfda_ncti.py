"""automl.transferability sfda and ncti: each against the transcription of its reference code in
benchmarks/reference_scores.py (TencentARC/SFDA metrics.py ``SFDA_Score``; BUserName/NCTI metrics.py
``NCTI_Score`` and the bank combination of evaluate_metric_group1_cpu.py), properties the formulas imply,
and input validation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from automl.transferability import score, score_spec
from automl.transferability._validate import validate
from automl.transferability.ncti import ncti_bank, ncti_terms
from benchmarks.reference_scores import (
    exact_pca,
    reference_ncti,
    reference_ncti_bank,
    reference_ncti_terms,
    reference_sfda,
)

# ---------------------------------------------------------------- data


def clusters(n: int, d: int, n_classes: int, scale: float = 1.0, separation: float = 0.2, seed: int = 0):
    """Gaussian class clusters, labels shuffled: features [N, D] (times ``scale``) and labels [N]."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % n_classes)
    centers = rng.normal(size=(n_classes, d))
    return scale * (centers[labels] * separation + rng.normal(size=(n, d))), labels


# (N, D, C, scale): N > D and N < D, 2 to 9 classes, small scales (strong SFDA regularization, NCTI's
# eigen solver) and unit scale (weak regularization, NCTI's svd solver once D >= 32)
SHAPES = [
    (36, 7, 3, 1.0),
    (60, 20, 4, 0.3),
    (40, 12, 2, 1.0),
    (45, 30, 9, 0.5),
    (100, 80, 5, 1.0),
    (30, 50, 3, 0.2),
    (90, 150, 6, 0.1),
    (120, 200, 10, 1.0),
]
SHAPE_IDS = [f"N{n}-D{d}-C{c}-x{s}" for n, d, c, s in SHAPES]


def terms(features, labels, **options):
    return ncti_terms(validate(score_spec("ncti"), features, labels, None), **options)


# ---------------------------------------------------------------- agreement: SFDA


@pytest.mark.parametrize(("n", "d", "c", "scale"), SHAPES, ids=SHAPE_IDS)
def test_sfda_without_pca_matches_reference_transcription(n, d, c, scale):
    features, labels = clusters(n, d, c, scale, seed=n + d)
    expected = reference_sfda(features, labels, n_dims=None)
    assert score("sfda", features, labels, n_dims=None) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("n", "d", "c", "scale"), SHAPES, ids=SHAPE_IDS)
def test_sfda_matches_reference_transcription_after_exact_pca(n, d, c, scale):
    features, labels = clusters(n, d, c, scale, seed=n + d)
    expected = reference_sfda(features, labels)  # after the exact PCA to 64 dimensions
    assert score("sfda", features, labels) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    reduced = reference_sfda(features, labels, n_dims=5)
    assert score("sfda", features, labels, n_dims=5) == pytest.approx(reduced, rel=1e-9, abs=1e-12)


def test_sfda_cases_are_not_all_saturated():
    """The agreement above is not only 1.0 == 1.0: most shapes give values well inside (0, 1)."""
    values = [score("sfda", *clusters(n, d, c, s, seed=n + d), n_dims=None) for n, d, c, s in SHAPES]
    assert sum(v < 0.99 for v in values) >= 6, values


def test_sfda_of_the_reference_saturates_when_features_outnumber_samples():
    """The documented reason for n_dims=64: D > N - C, unit-scale features -> exactly 1.0 whatever the
    class separation, in the reference and here; after the PCA the separations are told apart."""
    raw, reduced = [], []
    for separation in (0.0, 0.1, 0.3):
        features, labels = clusters(60, 120, 4, 1.0, separation, seed=3)
        assert reference_sfda(features, labels, n_dims=None) == 1.0
        raw.append(score("sfda", features, labels, n_dims=None))
        reduced.append(score("sfda", features, labels, n_dims=8))
    assert raw == [1.0, 1.0, 1.0]
    assert reduced[0] < reduced[1] < reduced[2] < 1.0, reduced


def test_sfda_uses_the_exact_largest_eigenvalue_when_the_power_iteration_has_no_start():
    """Two columns u, -u: the rows of S_w sum to 0, the reference's iteration gives NaN."""
    rng = np.random.default_rng(4)
    u = rng.normal(size=(24, 1))
    features = np.hstack([u, -u, rng.normal(size=(24, 1)) * 0.0])
    labels = np.arange(24) % 3
    within = features - np.array([features[labels == c].mean(axis=0) for c in range(3)])[labels]
    largest = np.linalg.eigvalsh(within.T @ within / 24).max()
    expected = reference_sfda(features, labels, n_dims=None, shrinkage=max(np.exp(-5 * largest), 1e-10))
    assert score("sfda", features, labels, n_dims=None) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- agreement: NCTI


@pytest.mark.parametrize(("n", "d", "c", "scale"), SHAPES, ids=SHAPE_IDS)
def test_ncti_terms_match_reference_transcription(n, d, c, scale):
    features, labels = clusters(n, d, c, scale, seed=n + d)
    seli, ncc, vc, _, _ = reference_ncti_terms(features, labels)
    assert terms(features, labels) == pytest.approx((seli, ncc, vc), rel=1e-9)


@pytest.mark.parametrize(("n", "d", "c", "scale"), SHAPES, ids=SHAPE_IDS)
def test_ncti_matches_reference_terms_combined_per_model(n, d, c, scale):
    features, labels = clusters(n, d, c, scale, seed=n + d)
    assert score("ncti", features, labels) == pytest.approx(reference_ncti(features, labels), rel=1e-9)


def test_ncti_cases_cover_both_lda_solvers_and_a_real_reduction():
    solvers = {reference_ncti_terms(*clusters(n, d, c, s, seed=n + d))[3] for n, d, c, s in SHAPES}
    assert solvers == {"svd", "eigen"}
    assert exact_pca(clusters(120, 200, 10)[0], 64)[0].shape[1] == 64  # 200 dimensions -> 64


def test_ncti_n_dims_matches_reference_transcription():
    features, labels = clusters(100, 80, 5, seed=5)
    seli, ncc, vc, _, _ = reference_ncti_terms(features, labels, n_dims=10)
    assert terms(features, labels, n_dims=10) == pytest.approx((seli, ncc, vc), rel=1e-9)


def test_ncti_bank_matches_reference_combination():
    bank = {
        f"m{i}": terms(*clusters(80, 40, 4, separation=s, seed=6)) for i, s in enumerate((0.1, 0.3, 0.6, 1))
    }
    expected = reference_ncti_bank(bank)
    np.testing.assert_allclose(ncti_bank(list(bank.values())), list(expected.values()), rtol=1e-12)


def test_ncti_bank_term_without_spread_contributes_zero():
    values = ncti_bank([(10.0, 0.5, 2.0), (20.0, 0.5, 1.0), (15.0, 0.5, 3.0)])
    np.testing.assert_allclose(values, [0.0 + 0 - 0.5, 1.0 + 0 - 0.0, 0.5 + 0 - 1.0])
    with pytest.raises(ValueError, match=r"one \(seli, ncc, vc\) triple per model, got shape \(2, 2\)"):
        ncti_bank([(1.0, 2.0), (3.0, 4.0)])


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize(("name", "options"), [("sfda", {}), ("sfda", {"n_dims": None}), ("ncti", {})])
def test_better_separated_clusters_score_higher_on_a_probe_like_shape(name, options):
    """N = 200 < D = 300 (N > D for sfda without PCA, whose raw score saturates otherwise)."""
    d = 40 if options.get("n_dims", 64) is None else 300
    values = [score(name, *clusters(200, d, 5, 1.0, s, seed=7), **options) for s in (0.05, 0.15, 0.3, 0.6)]
    assert all(a < b for a, b in itertools.pairwise(values)), values


@pytest.mark.parametrize(("name", "options"), [("sfda", {}), ("sfda", {"n_dims": None}), ("ncti", {})])
@pytest.mark.parametrize(("n", "d"), [(60, 20), (40, 90)], ids=["N>D", "N<D"])
def test_permuting_samples_leaves_score_unchanged(name, options, n, d):
    features, labels = clusters(n, d, 4, 0.3, seed=8)
    order = np.random.default_rng(8).permutation(n)
    before = score(name, features, labels, **options)
    assert score(name, features[order], labels[order], **options) == pytest.approx(before, rel=1e-9)


@pytest.mark.parametrize(("name", "options"), [("sfda", {}), ("sfda", {"n_dims": None}), ("ncti", {})])
def test_relabelling_classes_leaves_score_unchanged(name, options):
    features, labels = clusters(60, 20, 5, 0.3, seed=9)
    relabelled = np.array([3, 0, 4, 1, 2])[labels]
    before = score(name, features, labels, **options)
    assert score(name, features, relabelled, **options) == pytest.approx(before, rel=1e-9)


@pytest.mark.parametrize(("name", "options"), [("sfda", {}), ("sfda", {"n_dims": None}), ("ncti", {})])
def test_shifting_every_feature_vector_leaves_score_unchanged(name, options):
    features, labels = clusters(50, 30, 3, 0.3, seed=10)
    shift = np.random.default_rng(10).normal(size=30) * 5
    before = score(name, features, labels, **options)
    assert score(name, features + shift, labels, **options) == pytest.approx(before, rel=1e-7)


def test_ncti_is_invariant_to_rotating_the_feature_space():
    """PCA and LDA depend on the features only through inner products."""
    features, labels = clusters(80, 40, 4, 1.0, seed=11)
    rotation, _ = np.linalg.qr(np.random.default_rng(11).normal(size=(40, 40)))
    before = score("ncti", features, labels)
    assert score("ncti", features @ rotation, labels) == pytest.approx(before, rel=1e-9)


def test_sfda_is_a_probability():
    for n, d, c, s in SHAPES:
        value = score("sfda", *clusters(n, d, c, s, seed=n))
        assert 0.0 < value <= 1.0


def test_ncti_seli_term_is_near_zero_without_class_information():
    """log(seli / (sqrt(N) r)) = log mean sqrt(1 + Fisher ratio) >= 0 with sklearn's svd solver; pure
    noise has Fisher ratios of order k / N only."""
    features, labels = clusters(400, 60, 3, 1.0, 0.0, seed=12)
    seli, _, _ = terms(features, labels)
    assert 0.0 <= math.log(seli / (math.sqrt(400) * 2)) < 0.15


# ---------------------------------------------------------------- degenerate features


def test_constant_features_give_the_documented_limits():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    features = np.full((8, 5), 0.7)
    priors = np.bincount(labels) / 8
    assert score("sfda", features, labels) == pytest.approx(float(priors @ priors))
    assert score("sfda", features, labels, n_dims=None) == pytest.approx(float(priors @ priors))
    assert score("ncti", features, labels) == -math.inf
    collapsed = np.sqrt(np.bincount(labels)).sum()
    assert terms(features, labels) == pytest.approx(
        (0.0, priors @ priors, np.log(np.linalg.norm(priors) * collapsed))
    )


def test_sfda_of_features_equal_to_their_class_means():
    """S_w = 0 exactly (the reference gets NaN): nearest class mean, ties split by the priors."""
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    features = np.eye(3)[labels] * 2.0
    assert score("sfda", features, labels, n_dims=None) == 1.0
    assert score("sfda", features, labels) == 1.0
    tied = features.copy()
    tied[labels == 2] = tied[labels == 1]  # classes 1 and 2 share a mean: p(y | x) = 1/2 there
    assert score("sfda", tied, labels, n_dims=None) == pytest.approx((2 * 1.0 + 6 * 0.5) / 8)


@pytest.mark.parametrize("noise", [0.0, 1e-15, 1e-12])
def test_ncti_of_collapsed_features_raises(noise):
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    features = np.eye(3)[labels] * 2.0 + noise * np.random.default_rng(13).normal(size=(8, 3))
    with pytest.raises(ValueError, match=r"ncti: every sample equals its class mean"):
        score("ncti", features, labels)


def test_dead_and_duplicated_columns_drop_out_of_the_ncti_pca():
    features, labels = clusters(60, 10, 3, 1.0, seed=14)
    degenerate = np.hstack([features, features[:, :4], np.zeros((60, 2)), np.full((60, 1), 3.0)])
    assert math.isfinite(score("ncti", degenerate, labels))
    assert math.isfinite(score("sfda", degenerate, labels, n_dims=None))
    # the duplicated columns change the PCA (their variance counts twice), not its rank: 10 components
    assert score("ncti", degenerate, labels, n_dims=64) == pytest.approx(
        score("ncti", degenerate, labels, n_dims=10)
    )


def test_two_classes_and_one_dimension():
    features, labels = clusters(20, 1, 2, 1.0, 1.0, seed=15)
    for name in ("sfda", "ncti"):
        assert math.isfinite(score(name, features, labels))
    assert score("sfda", features, labels) == pytest.approx(reference_sfda(features, labels, n_dims=None), rel=1e-9)


# ---------------------------------------------------------------- validation


def test_registry_entries():
    assert score_spec("sfda").options == ("n_dims",)
    assert score_spec("ncti").options == ("n_dims",)
    assert score_spec("ncti").min_per_class == 2
    assert not score_spec("sfda").needs_probs and not score_spec("ncti").needs_probs


@pytest.mark.parametrize("name", ["sfda", "ncti"])
@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        ("nan", None, r"features contain NaN or inf in 1 of 6 rows \(first: row 2\)"),
        (None, None, r"needs features \[N, D\]"),
        ("random", np.zeros(6, dtype=int), r"needs at least 2 classes, got 1"),
        ("random", np.array([0, 0, 2, 2, 2, 0]), r"missing class 1"),
        ("random", np.array([0.0, 0, 1, 1, 2, 2]), r"labels must be integers"),
        ("int", None, r"features must be a float array"),
    ],
)
def test_bad_input_raises_value_error(name, features, labels, message):
    labels = np.array([0, 0, 1, 1, 2, 2]) if labels is None else labels
    array = np.random.default_rng(0).normal(size=(len(labels), 3))
    if features == "nan":
        array[2, 1] = np.nan
    elif features == "int":
        array = array.astype(int)
    with pytest.raises(ValueError, match=message):
        score(name, None if features is None else array, labels)


def test_ncti_needs_two_samples_per_class():
    features = np.random.default_rng(0).normal(size=(6, 3))
    with pytest.raises(ValueError, match=r"ncti needs at least 2 samples per class; class 0 has 1"):
        score("ncti", features, np.array([0, 1, 1, 2, 2, 2]))
    assert math.isfinite(score("sfda", features, np.array([0, 1, 1, 2, 2, 2])))


@pytest.mark.parametrize(
    ("name", "options", "error", "message"),
    [
        ("sfda", {"n_dims": 0}, ValueError, r"sfda: option n_dims must be an integer >= 1 or None, got 0"),
        ("sfda", {"n_dims": 2.5}, ValueError, r"sfda: option n_dims must be an integer"),
        ("ncti", {"n_dims": None}, ValueError, r"ncti: option n_dims must be an integer >= 1, got None"),
        ("ncti", {"n_dims": True}, ValueError, r"ncti: option n_dims must be an integer"),
        ("sfda", {"k": 3}, TypeError, r"'sfda' got unknown option\(s\) k; its options: n_dims"),
        (
            "ncti",
            {"shrinkage": 0.1},
            TypeError,
            r"'ncti' got unknown option\(s\) shrinkage; its options: n_dims",
        ),
    ],
)
def test_bad_options(name, options, error, message):
    features, labels = clusters(12, 3, 3, seed=16)
    with pytest.raises(error, match=message):
        score(name, features, labels, **options)
