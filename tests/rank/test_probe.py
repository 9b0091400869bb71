from __future__ import annotations

import numpy as np
import pytest

from automl.rank.probe import sample_probe
from automl.settings import ProbeSettings, SettingsError


def test_budget_and_balance_with_plenty_of_images():
    labels = np.repeat(np.arange(7), 200)
    chosen = sample_probe(labels, ProbeSettings(budget=500, seed=0))
    counts = np.bincount(labels[chosen])
    assert len(chosen) == 500 and len(np.unique(chosen)) == 500
    assert counts.max() - counts.min() <= 1
    assert np.all(np.diff(chosen) > 0)


def test_small_classes_give_their_share_to_the_others():
    labels = np.concatenate([np.zeros(3, int), np.ones(1000, int), np.full(1000, 2)])
    counts = np.bincount(labels[sample_probe(labels, ProbeSettings(budget=300))])
    assert counts.tolist()[0] == 3 and counts.sum() == 300 and abs(counts[1] - counts[2]) <= 1


def test_whole_split_when_smaller_than_budget():
    labels = np.repeat(np.arange(4), 10)
    assert len(sample_probe(labels, ProbeSettings(budget=500))) == 40


def test_deterministic_for_a_seed_and_different_across_seeds():
    labels = np.random.default_rng(0).integers(0, 10, 3000)
    assert np.array_equal(sample_probe(labels, ProbeSettings(seed=3)), sample_probe(labels, ProbeSettings(seed=3)))
    assert not np.array_equal(sample_probe(labels, ProbeSettings(seed=3)), sample_probe(labels, ProbeSettings(seed=4)))


def test_too_many_classes_subsamples_classes_or_errors():
    labels = np.repeat(np.arange(400), 5)
    chosen = sample_probe(labels, ProbeSettings(budget=500, min_per_class=2))
    kept = np.unique(labels[chosen])
    assert len(kept) == 250 and len(chosen) == 500
    assert np.bincount(labels[chosen])[kept].min() == 2
    with pytest.raises(ValueError, match="400 classes but a probe budget of 500 allows at most 250"):
        sample_probe(labels, ProbeSettings(budget=500, subsample_classes=False))


def test_invalid_input():
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have fewer than 2"):
        sample_probe(np.array([0, 0, 1]))
    with pytest.raises(ValueError, match="1-D integer"):
        sample_probe(np.array([0.5, 1.0]))
    with pytest.raises(SettingsError, match=r"probe.budget=3 must be an integer >= 4"):
        ProbeSettings(budget=3)
    with pytest.raises(SettingsError, match=r"probe.budget=4 must hold 2 classes x probe.min_per_class=3"):
        ProbeSettings(budget=4, min_per_class=3)


def test_a_run_draws_the_probe_with_its_own_seed_unless_the_probe_sets_one():
    from automl.settings import compose, resolve

    assert resolve(compose(["seed=7"])).probe == ProbeSettings(seed=7)
    assert resolve(compose(["seed=7", "probe.seed=2", "probe.budget=100"])).probe == ProbeSettings(budget=100, seed=2)
