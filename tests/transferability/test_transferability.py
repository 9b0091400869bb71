"""automl.transferability: each score against the transcription of its reference code
(benchmarks/reference_scores.py) on small inputs, properties every score must have, and the input
validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automl.transferability import available, needs_probs, score, score_spec
from benchmarks.reference_scores import (
    feature_reduce,
    reference_hscore,
    reference_hscore_shrink,
    reference_knn,
    reference_leep,
    reference_linear,
    reference_logme,
    reference_nce,
    reference_nleep,
    reference_parc,
)

FEATURE_SCORES = [name for name in available() if score_spec(name).uses_features]
PROB_SCORES = [name for name in available() if needs_probs(name)]


# ---------------------------------------------------------------- data


def clusters(n_per_class: int, n_classes: int, dim: int, separation: float, seed: int = 0):
    """Gaussian class clusters: features [N, D] and labels [N] (class-sorted)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    centers = rng.normal(size=(n_classes, dim))
    return centers[labels] * separation + rng.normal(size=(len(labels), dim)), labels


def source_probs(labels: np.ndarray, n_source: int, informative: float, seed: int = 0) -> np.ndarray:
    """Source-class probabilities [N, Cs]: a mix of a Dirichlet draw and a one-hot on a source class
    tied to the target class, with weight ``informative`` in [0, 1]."""
    rng = np.random.default_rng(seed)
    noise = rng.dirichlet(np.full(n_source, 0.5), size=len(labels))
    tied = np.eye(n_source)[(labels * 3 + 1) % n_source]
    return (1 - informative) * noise + informative * tied


@pytest.fixture(scope="module")
def small():
    """N = 36 > D = 7, 3 classes of 12, plus source probabilities over 5 classes."""
    features, labels = clusters(12, 3, 7, 1.0, seed=1)
    return features, labels, source_probs(labels, 5, 0.4, seed=2)


# ---------------------------------------------------------------- registry and API


def test_available_lists_the_required_scores_sorted():
    names = available()
    assert names == sorted(names)
    assert {"parc", "logme", "leep", "nleep", "nce", "hscore", "hscore_shrink", "knn"} <= set(names)


def test_unknown_score_lists_available_names(small):
    features, labels, _ = small
    with pytest.raises(ValueError, match=r"unknown transferability score 'nope'; available: hscore, "):
        score("nope", features, labels)


def test_unknown_option_names_score_and_option(small):
    features, labels, _ = small
    with pytest.raises(TypeError, match=r"'parc' got unknown option\(s\) k; its options: n_dims"):
        score("parc", features, labels, k=3)
    with pytest.raises(TypeError, match=r"'logme' got unknown option\(s\) n_dims; its options: none"):
        score("logme", features, labels, n_dims=4)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("parc", {"n_dims": 1}, r"parc: option n_dims must be an integer >= 2 or None, got 1"),
        ("parc", {"n_dims": 4.0}, r"option n_dims must be an integer"),
        ("hscore", {"n_dims": True}, r"option n_dims must be an integer"),
        ("knn", {"k": 0}, r"knn: option k must be an integer in 1\.\.35, got 0"),
        ("knn", {"k": 36}, r"option k must be an integer in 1\.\.35"),
        ("nleep", {"covariance_type": "bogus"}, r"covariance_type must be one of"),
        ("nleep", {"n_components": 37}, r"option n_components must be an integer in 1\.\.36"),
    ],
)
def test_bad_option_values(small, name, options, message):
    features, labels, _ = small
    with pytest.raises(ValueError, match=message):
        score(name, features, labels, **options)


def test_needs_probs_and_spec():
    assert needs_probs("leep") and needs_probs("nce")
    assert not needs_probs("parc")
    assert score_spec("parc").min_per_class == 2
    assert score_spec("nleep").options == ("n_dims", "n_components", "covariance_type", "random_state")


# ---------------------------------------------------------------- agreement with the references


def test_parc_matches_reference_transcription_without_pca():
    features, labels = clusters(3, 2, 4, 0.8, seed=3)
    expected = reference_parc(features, labels, n_dims=None)
    assert score("parc", features, labels, n_dims=None) == pytest.approx(expected, rel=1e-12)


def test_parc_matches_reference_transcription_after_reference_pca():
    features, labels = clusters(10, 4, 50, 0.5, seed=4)
    expected = reference_parc(features, labels, n_dims=8)
    assert score("parc", features, labels, n_dims=8) == pytest.approx(expected, rel=1e-12)


def test_parc_matches_literal_reference_when_its_label_matrix_is_two_valued():
    """methods.py PARC.get_parc_correlation as written; its np.corrcoef label matrix is exactly
    two-valued for C = 2 here, so no rounding splits the ties (see parc.py)."""
    from scipy.stats import spearmanr
    from sklearn.preprocessing import StandardScaler

    features, labels = clusters(20, 2, 40, 0.5, seed=5)
    reduced = feature_reduce(features, 32)
    rdm1 = 1 - np.corrcoef(StandardScaler().fit_transform(reduced))
    rdm2 = 1 - np.corrcoef(np.eye(2)[labels])
    upper = np.triu_indices(len(labels), 1)
    assert len(np.unique(rdm2[upper])) == 2
    expected = spearmanr(rdm1[upper], rdm2[upper])[0] * 100
    assert score("parc", features, labels) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(("n", "d"), [(12, 3), (5, 8), (9, 9)], ids=["N>D", "N<D", "N=D"])
def test_logme_matches_reference_transcription(n, d):
    rng = np.random.default_rng(n * d)
    features = rng.normal(size=(n, d)) + 0.5
    labels = np.arange(n) % 3
    assert score("logme", features, labels) == pytest.approx(reference_logme(features, labels), rel=1e-9)


def test_logme_rank_deficient_features_match_reference_decomposition():
    rng = np.random.default_rng(6)
    base = rng.normal(size=(40, 6))
    features = np.hstack([base, base[:, :2], np.zeros((40, 2))])  # duplicated and dead columns
    labels = np.arange(40) % 4
    assert score("logme", features, labels) == pytest.approx(reference_logme(features, labels), rel=1e-9)


def test_leep_matches_reference_transcription(small):
    _, labels, probs = small
    assert score("leep", None, labels, probs) == pytest.approx(
        reference_leep(None, labels, probs), rel=1e-12
    )


def test_nce_matches_reference_transcription(small):
    _, labels, probs = small
    assert score("nce", None, labels, probs) == pytest.approx(
        reference_nce(None, labels, probs), rel=1e-12
    )


def test_nce_of_a_deterministic_source_is_zero():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(4)[[3, 3, 0, 0, 1, 1]]
    assert score("nce", None, labels, probs) == 0.0


def test_hscore_matches_reference_transcription(small):
    features, labels, _ = small
    assert score("hscore", features, labels) == pytest.approx(
        reference_hscore(features, labels), rel=1e-10
    )


def test_hscore_with_pca_matches_reference_transcription(small):
    features, labels, _ = small
    expected = reference_hscore(features, labels, n_dims=4)
    assert score("hscore", features, labels, n_dims=4) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(("n", "d"), [(36, 7), (12, 30)], ids=["N>D", "N<D"])
def test_hscore_shrink_matches_reference_transcription(n, d):
    features, labels = clusters(n // 3, 3, d, 1.0, seed=7)
    expected = reference_hscore_shrink(features, labels)
    assert score("hscore_shrink", features, labels) == pytest.approx(expected, rel=1e-10)


def test_hscore_is_c_minus_1_when_features_outnumber_samples():
    features, labels = clusters(4, 3, 40, 1.0, seed=8)
    assert score("hscore", features, labels) == pytest.approx(2.0, rel=1e-8)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_knn_matches_reference_transcription(small, k):
    features, labels, _ = small
    assert score("knn", features, labels, k=k) == pytest.approx(
        reference_knn(features, labels, k=k)
    )


def test_knn_partial_credit_when_all_votes_differ():
    """The reference's ``counts == 1`` branch: 3 distinct votes, one right -> 1/3 per sample."""
    features = np.array([[0.0], [1.0], [2.1], [3.3], [10.0], [11.1], [12.3], [13.6]])
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    assert score("knn", features, labels, k=1) == 0.0
    assert score("knn", features, labels, k=3) == pytest.approx(
        reference_knn(features, labels, k=3)
    )


def test_nleep_is_leep_of_the_seeded_mixture(small):
    features, labels, _ = small
    expected = reference_nleep(features, labels)  # a mixture of 5 C = 15 <= N // 2 components
    assert score("nleep", features, labels) == pytest.approx(expected, rel=1e-12)


def test_linear_is_the_mean_held_out_accuracy_of_a_logistic_probe(small):
    features, labels, _ = small
    expected = reference_linear(features, labels, n_dims=4)  # 5 folds of a scaler and a logistic regression
    assert score("linear", features, labels, n_dims=4) == pytest.approx(expected, rel=1e-12)
    assert 0 <= score("linear", features, labels) <= 100


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("name", [name for name in available() if name not in ("nleep", "linear")])
def test_permuting_samples_leaves_score_unchanged(small, name):
    """(nleep is excluded: its k-means++ start picks samples by position, like any seeded mixture;
    linear too: its seeded cross-validation folds are drawn by position.)"""
    features, labels, probs = small
    order = np.random.default_rng(9).permutation(len(labels))
    before = score(name, features, labels, probs)
    after = score(name, features[order], labels[order], probs[order])
    assert after == pytest.approx(before, rel=1e-9, abs=1e-12)


def test_permuting_samples_leaves_reduced_parc_unchanged():
    features, labels = clusters(15, 3, 12, 0.7, seed=10)
    order = np.random.default_rng(10).permutation(len(labels))
    before = score("parc", features, labels, n_dims=5)
    assert score("parc", features[order], labels[order], n_dims=5) == pytest.approx(before, rel=1e-9)


@pytest.mark.parametrize("name", FEATURE_SCORES)
def test_better_separated_clusters_score_higher(name):
    values = [score(name, *clusters(20, 4, 10, separation, seed=11)) for separation in (0.1, 0.6, 2.0)]
    assert values[0] < values[1] < values[2], values


@pytest.mark.parametrize("name", PROB_SCORES)
def test_more_informative_probs_score_higher(name):
    labels = np.repeat(np.arange(4), 20)
    features = np.zeros((len(labels), 1))
    values = [score(name, features, labels, source_probs(labels, 7, w, seed=12)) for w in (0.0, 0.4, 0.9)]
    assert values[0] < values[1] < values[2], values


@pytest.mark.parametrize("seed", range(5))
def test_leep_family_is_at_most_zero(seed):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(30) % 3)
    probs = rng.dirichlet(np.full(6, 0.3), size=30)
    assert score("leep", None, labels, probs) <= 0
    assert -math.log(3) - 1e-12 <= score("nce", None, labels, probs) <= 0
    assert score("nleep", rng.normal(size=(30, 5)), labels) <= 0


@pytest.mark.parametrize("k", [1, 3, 6])
def test_knn_is_a_percentage(k):
    features, labels = clusters(6, 3, 4, 0.5, seed=k)
    assert 0 <= score("knn", features, labels, k=k) <= 100


def test_n_dims_is_clamped_to_the_feature_dimension():
    features, labels = clusters(8, 3, 5, 1.0, seed=13)  # D = 5 < 32, the reference crashes here
    assert score("parc", features, labels) == score("parc", features, labels, n_dims=5)
    assert score("hscore", features, labels, n_dims=50) == score("hscore", features, labels, n_dims=5)
    assert score("knn", features, labels, n_dims=50) == score("knn", features, labels, n_dims=5)


def test_n_dims_is_clamped_to_the_sample_count():
    features, labels = clusters(3, 2, 40, 1.0, seed=14)  # N = 6
    assert score("parc", features, labels, n_dims=32) == score("parc", features, labels, n_dims=6)


def test_nleep_is_deterministic(small):
    features, labels, _ = small
    assert score("nleep", features, labels) == score("nleep", features, labels)
    assert score("nleep", features, labels, random_state=3) == score(
        "nleep", features, labels, random_state=3
    )


def test_float32_features_and_any_integer_labels(small):
    features, labels, probs = small
    single, single_probs = features.astype(np.float32), probs.astype(np.float32)
    for name in available():
        expected = score(name, single.astype(np.float64), labels, single_probs.astype(np.float64))
        assert score(name, single, labels.astype(np.uint8), single_probs) == expected
        assert score(name, single, labels.astype(np.int32), single_probs) == expected


def test_thread_limits_are_restored(small):
    from threadpoolctl import threadpool_info

    before = [pool["num_threads"] for pool in threadpool_info()]
    score("parc", *small[:2])
    assert [pool["num_threads"] for pool in threadpool_info()] == before


def test_inputs_are_not_modified(small):
    features, labels, probs = small
    copies = [features.copy(), labels.copy(), probs.copy()]
    for name in available():
        score(name, features, labels, probs)
    for original, copy in zip((features, labels, probs), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


# ---------------------------------------------------------------- constant and duplicated features


def test_constant_features_give_the_documented_limits():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    features = np.full((8, 5), 0.7)
    assert score("parc", features, labels) == 0.0
    assert score("hscore", features, labels) == 0.0
    assert score("hscore_shrink", features, labels) == 0.0
    p = np.bincount(labels) / len(labels)
    assert score("nleep", features, labels) == pytest.approx(float(np.sum(p * np.log(p))))
    assert math.isfinite(score("logme", features, labels))
    # all distances tie: the neighbours are the lowest-index other images (reference_knn sorts stably)
    for k in (1, 3):
        expected = reference_knn(features, labels, k=k)
        assert score("knn", features, labels, k=k) == pytest.approx(expected)


def test_zero_features_give_the_feature_free_logme_evidence():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    counts = np.bincount(labels)
    expected = np.mean(0.5 * (np.log(8 / counts) - 1 - np.log(2 * np.pi)))
    assert score("logme", np.zeros((8, 3)), labels) == pytest.approx(expected)
    assert score("logme", np.zeros((8, 30)), labels) == pytest.approx(expected)


@pytest.mark.parametrize("name", FEATURE_SCORES)
def test_dead_and_duplicated_columns_are_finite(small, name):
    features, labels, _ = small
    degenerate = np.hstack(
        [features, features[:, :3], np.zeros((len(labels), 2)), np.full((len(labels), 1), 4.0)]
    )
    assert math.isfinite(score(name, degenerate, labels))


def test_duplicating_a_column_leaves_hscore_unchanged(small):
    features, labels, _ = small
    duplicated = np.hstack([features, features[:, [2]]])
    assert score("hscore", duplicated, labels) == pytest.approx(score("hscore", features, labels), rel=1e-9)


def test_parc_with_two_effective_dimensions_ranks_exact_ties():
    """D = 2: every standardized, row-centred sample is +-(a, -a), so every correlation is exactly +-1."""
    features, labels = clusters(4, 2, 2, 1.0, seed=15)
    expected = reference_parc(features, labels, n_dims=None)
    assert score("parc", features, labels, n_dims=None) == pytest.approx(expected, rel=1e-12)


def test_parc_needs_two_dimensions():
    features, labels = clusters(4, 2, 1, 1.0, seed=16)
    with pytest.raises(ValueError, match="parc needs at least 2 feature dimensions"):
        score("parc", features, labels)
    for name in set(FEATURE_SCORES) - {"parc"}:
        assert math.isfinite(score(name, features, labels))


def test_duplicated_images_are_each_others_nearest_neighbours():
    features = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 5.0], [9.0, 0.0], [9.0, 0.1]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert score("knn", features, labels) == 100.0


# ---------------------------------------------------------------- validation


_RANDOM = object()


def _call(name="parc", features=_RANDOM, labels=None, probs=None, **options):
    labels = np.array([0, 0, 1, 1, 2, 2]) if labels is None else labels
    if features is _RANDOM:
        features = np.random.default_rng(0).normal(size=(len(labels), 3))
    return score(name, features, labels, probs, **options)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": np.zeros(6)}, r"features must be 2-D \[N, D\], got shape \(6,\)"),
        ({"features": np.zeros((6, 2), dtype=int)}, r"features must be a float array .* got dtype int64"),
        ({"features": np.zeros((6, 2), dtype=bool)}, r"features must be a float array .* got dtype bool"),
        ({"features": np.zeros((6, 2), dtype=object)}, r"features must be a float array .* got dtype object"),
        ({"features": np.zeros((6, 2), dtype=complex)}, r"got dtype complex128"),
        ({"features": np.zeros((5, 2))}, r"features has 5 rows but labels has 6 entries"),
        ({"features": np.zeros((6, 0))}, r"features has no columns"),
        ({"labels": np.array([0, 0, 2, 2, 2, 0])}, r"labels must be 0\.\.C-1, missing class 1"),
        ({"labels": np.array([0, 0, 3, 3, 4, 4])}, r"missing classes 1, 2"),
        ({"labels": np.array([0, 0, -1, -1, 1, 1])}, r"negative label -1"),
        ({"labels": np.array([0, 0, 1, 1, 9, 9])}, r"got label 9 for 6 samples"),
        ({"labels": np.zeros(6, dtype=int)}, r"parc needs at least 2 classes, got 1"),
        ({"labels": np.array([0.0, 0, 1, 1, 2, 2])}, r"labels must be integers 0\.\.C-1, got dtype float64"),
        ({"labels": np.array([True, False] * 3)}, r"labels must be integers .* got dtype bool"),
        ({"labels": np.zeros((6, 1), dtype=int)}, r"labels must be 1-D \[N\], got shape \(6, 1\)"),
        ({"labels": np.array([], dtype=int), "features": np.zeros((0, 3))}, r"labels is empty"),
        ({"labels": np.array([0, 0, 1, 2, 2, 2])}, r"parc needs at least 2 samples per class; class 1 has 1"),
        (
            {"name": "knn", "labels": np.array([0, 1, 2, 2, 2, 2])},
            r"knn needs .* class 0 has 1, class 1 has 1",
        ),
        ({"name": "logme", "features": None}, r"logme needs features \[N, D\]"),
    ],
)
def test_bad_input_raises_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _call(**kwargs)


def test_single_sample_classes_are_fine_where_not_needed():
    labels = np.array([0, 1, 1, 2, 2, 2])
    for name in ("logme", "hscore", "hscore_shrink", "nleep"):
        assert math.isfinite(_call(name, labels=labels))


def test_non_finite_features_name_the_rows():
    features = np.random.default_rng(0).normal(size=(6, 3))
    features[3, 1] = np.nan
    features[5, 0] = np.inf
    with pytest.raises(ValueError, match=r"features contain NaN or inf in 2 of 6 rows \(first: row 3\)"):
        _call(features=features)


@pytest.mark.parametrize("name", PROB_SCORES)
def test_missing_probs(name):
    with pytest.raises(ValueError, match=rf"{name} needs probs \[N, Cs\] source-class probabilities"):
        _call(name)


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (
            np.full((6, 4), 0.3),
            r"probs rows must sum to 1 \(tolerance 0\.001\); 6 of 6 rows do not \(row 0 sums to 1\.2\)",
        ),
        (np.array([[1.2, -0.2]] + [[0.5, 0.5]] * 5), r"probs must be non-negative; 1 of 6 rows"),
        (
            np.array([[np.nan, 1.0]] + [[0.5, 0.5]] * 5),
            r"probs contain NaN or inf in 1 of 6 rows \(first: row 0\)",
        ),
        (np.full((5, 2), 0.5), r"probs has 5 rows but labels has 6 entries"),
        (np.full(6, 1.0), r"probs must be 2-D \[N, Cs\]"),
        (np.ones((6, 1), dtype=int), r"probs must be a float array"),
    ],
)
def test_bad_probs(probs, message):
    with pytest.raises(ValueError, match=message):
        _call("leep", probs=probs)


def test_probs_within_tolerance_and_unused_probs_are_accepted():
    probs = np.full((6, 4), 0.25)
    probs[0] += 0.0002
    assert _call("leep", probs=probs) <= 1e-3
    assert math.isfinite(_call("parc", probs=np.full((6, 4), 7.0)))  # parc never reads probs
