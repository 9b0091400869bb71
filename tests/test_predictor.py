from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from rich.console import Console

from automl.history import TransferRecord
from automl.predictor import (
    AccuracyPredictor,
    Candidate,
    bank_candidates,
    format_calibration,
    leave_one_task_out,
    measured_transfers,
    zscore_bank,
)

TASK_META = {"num_classes": 10, "num_train": 2000, "image_side": 64}


def candidate(name="m", linear=70.0, z=0.0, depth=50, task_meta=TASK_META, **model_meta) -> Candidate:
    return Candidate(name, {"parc": 10 * z, "linear": linear}, {"parc": z, "linear": 0.0},
                     {"depth": depth, "num_params": 1e7, **model_meta}, task_meta)


def synthetic_history(num_tasks: int, num_models: int = 8, seed: int = 0) -> list[TransferRecord]:
    """Measured transfers from a realistic generator: a latent model-task fit q drives the probe's linear
    accuracy and PARC/LogME (noisily); fine-tuning adds a task-level gain that grows with the training-set
    size (the prior's known bias), plus q, a depth effect and noise."""
    rng = np.random.default_rng(seed)
    records = []
    for t in range(num_tasks):
        task_meta = {"num_classes": int(rng.integers(5, 100)), "num_train": int(10 ** rng.uniform(2.7, 4.5)),
                     "image_side": int(rng.choice([32, 64, 224]))}
        gain = 3 + 6 * (np.log10(task_meta["num_train"]) - 3) + rng.normal(0, 1)
        q = rng.normal(size=num_models)
        depth = rng.integers(8, 120, size=num_models)
        linear = np.clip(75 + 8 * q + rng.normal(0, 3, num_models) - 5 * np.log10(task_meta["num_classes"]), 0, 100)
        finetuned = np.clip(linear + gain + 2 * q + 1.5 * (depth / 50 - 1) + rng.normal(0, 1.5, num_models), 0, 100)
        scores = {f"m{i}": {"parc": 10 * q[i] + rng.normal(0, 3), "logme": q[i] + rng.normal(0, 1),
                            "linear": float(linear[i])} for i in range(num_models)}
        model_meta = {f"m{i}": {"depth": int(depth[i]), "num_params": float(depth[i]) * 2e5,
                                "source_num_images": 1_281_167, "source_num_classes": 1000} for i in range(num_models)}
        for i, c in enumerate(bank_candidates(scores, model_meta, task_meta)):
            records.append(TransferRecord(
                run_id="synthetic", kind="oracle", task_name=f"task{t}", task_fingerprint=f"fp{t}",
                task_meta=task_meta, model_name=c.model_name, model_meta=c.model_meta, scores=c.scores,
                scores_z=c.scores_z, val_accuracy=float(finetuned[i]), test_accuracy=float(finetuned[i])))
    return records


def assert_valid(prediction, n):
    assert len(prediction) == n
    for values in (prediction.mean, prediction.low, prediction.high):
        assert values.shape == (n,) and np.all(np.isfinite(values))
        assert np.all((values >= 0) & (values <= 100))
    assert np.all(prediction.low <= prediction.mean) and np.all(prediction.mean <= prediction.high)


def test_zscore_bank():
    z = zscore_bank([{"parc": 1.0, "leep": 5.0}, {"parc": 2.0, "leep": math.nan}, {"parc": 3.0, "leep": 7.0},
                     {"parc": 6.0}])
    parc = np.array([row["parc"] for row in z])
    assert parc.mean() == pytest.approx(0) and parc.std(ddof=1) == pytest.approx(1)
    assert "leep" not in z[1] and "leep" not in z[3] and z[0]["leep"] == pytest.approx(-z[2]["leep"])
    assert zscore_bank([{"parc": 4.0}]) == [{"parc": 0.0}]


def test_prior_formula_interval_and_range():
    predictor = AccuracyPredictor(logits_per_z=0.5, plasticity=1.0)
    prediction = predictor.predict([candidate(linear=70.0, z=1.0, depth=100), candidate(linear=99.5, z=2.0),
                                    candidate(linear=99.5, z=1.0)])
    assert_valid(prediction, 3)
    logit = math.log(60 / 30) + 0.5 * (1.0 + 100 / 50 - 1)  # 70% is 60 of the 90 points above chance (10%);
    assert prediction.mean[0] == pytest.approx(10 + 90 / (1 + math.exp(-logit)))  # signal 2: z + capacity term
    assert 99.5 < prediction.mean[2] < prediction.mean[1] < 100.0  # near 100%: still ordered, never above
    default = AccuracyPredictor().predict([candidate(linear=55.0, z=1.0, depth=100)])
    assert default.mean[0] == pytest.approx(10 + 90 / (1 + math.exp(-1.6)))  # defaults: 1.6 logits per z, no depth
    assert prediction.high[0] - prediction.low[0] > 10  # honest: a wide interval without history
    assert not predictor.is_calibrated


def test_no_prediction_below_chance():
    eight_classes = {**TASK_META, "num_classes": 8}
    poor = [candidate(linear=16.0, z=z, task_meta=eight_classes) for z in (-3.0, -1.0)]
    for predictor in (AccuracyPredictor(), AccuracyPredictor().fit(synthetic_history(4))):
        prediction = predictor.predict(poor)
        assert np.all(prediction.low >= 12.5) and np.all(prediction.mean > 12.5)
    prior = AccuracyPredictor().predict(poor).mean
    assert prior[0] < prior[1] < 16.0  # the prior keeps the score's order, in the 3.5 points above chance
    unknown = Candidate("m", {"parc": -30.0, "linear": 16.0}, {"parc": -3.0})  # no class count: floor 0
    assert AccuracyPredictor().predict([unknown]).mean[0] < 12.5


def test_prior_ordering_follows_the_plasticity_ensemble():
    paper = AccuracyPredictor(logits_per_z=0.1, plasticity=1.0)
    by_score = paper.predict([candidate(z=z) for z in (-1.5, -0.2, 0.4, 1.7)]).mean
    assert np.all(np.diff(by_score) > 0)
    by_depth = paper.predict([candidate(depth=d) for d in (10, 30, 70, 150)]).mean
    assert np.all(np.diff(by_depth) > 0)
    # the ensemble: a much better score outweighs a somewhat shallower network, as in PARC
    shallow_good, deep_poor = paper.predict([candidate(z=1.5, depth=18), candidate(z=-0.5, depth=50)]).mean
    assert shallow_good > deep_poor
    # without the plasticity term depth does not move the prior
    flat = AccuracyPredictor().predict([candidate(depth=d) for d in (10, 30, 70, 150)]).mean
    assert np.ptp(flat) == 0


def test_bad_candidates_are_clear_errors():
    with pytest.raises(ValueError, match=r"\['nolinear'\] lack a finite 'linear'"):
        AccuracyPredictor().predict([candidate(), Candidate("nolinear", {"parc": 1.0}, {"parc": 0.1})])
    with pytest.raises(ValueError, match="primary score 'logme' is missing"):
        AccuracyPredictor(primary="logme").predict([candidate()])
    with pytest.raises(ValueError, match="no candidates"):
        AccuracyPredictor().predict([])
    with pytest.raises(ValueError, match="interval"):
        AccuracyPredictor(interval=1.0)


def test_measured_transfers_pick_the_best_trial_per_model_and_task():
    base = synthetic_history(1, num_models=2)
    trials = [dataclasses.replace(base[0], kind="finetune", trial=i, val_accuracy=val, test_accuracy=test)
              for i, (val, test) in enumerate([(60, 61), (80, 78), (70, 90)])]
    unmeasured = dataclasses.replace(base[1], val_accuracy=None, test_accuracy=None)
    chosen = measured_transfers([*trials, unmeasured])
    assert len(chosen) == 1 and chosen[0].trial == 1 and chosen[0].measured_accuracy == 78


def test_few_records_stay_close_to_the_prior():
    history = synthetic_history(1, num_models=2)
    candidates = [Candidate.from_record(r) for r in synthetic_history(3, seed=1)[16:]]
    prior = AccuracyPredictor().predict(candidates)

    one = AccuracyPredictor().fit(history[:1])
    assert not one.is_calibrated
    np.testing.assert_allclose(one.predict(candidates).mean, prior.mean)

    two = AccuracyPredictor().fit(history)  # one task: the prior keeps half the weight
    assert two.is_calibrated and two.n_tasks_ == 1 and two.weight_ == pytest.approx(0.5)
    residuals = [r.measured_accuracy - m for r, m in
                 zip(history, AccuracyPredictor().predict([Candidate.from_record(r) for r in history]).mean,
                     strict=True)]
    shift = two.predict(candidates).mean - prior.mean
    # half weight on a residual model that has seen two residuals: it moves at most half of the largest
    assert np.all(np.abs(shift) <= 0.5 * np.max(np.abs(residuals)) + 1.0)
    assert_valid(two.predict(candidates), len(candidates))


def test_calibration_beats_the_prior_leave_one_task_out():
    result = leave_one_task_out(synthetic_history(8), primary="parc")
    assert result["num_tasks"] == 8 and result["num_records"] == 64 and result["helps"]
    calibrated, prior = result["overall"]["calibrated"], result["overall"]["prior"]
    assert calibrated["mae"] < 0.6 * prior["mae"]
    assert calibrated["spearman"] > 0.8 and calibrated["coverage"] >= 0.7
    assert set(result["tasks"]) == {f"fp{t}" for t in range(8)}
    for row in result["rows"]:
        assert 0 <= row["calibrated_low"] <= row["calibrated"] <= row["calibrated_high"] <= 100

    console = Console(record=True, width=120)
    console.print(format_calibration(result))
    text = console.export_text()
    assert "task7" in text and "calibration helps" in text and f"{prior['mae']:.2f}" in text


def test_leave_one_task_out_needs_two_tasks():
    with pytest.raises(ValueError, match="at least 2 tasks; the history has 8 on 1 task"):
        leave_one_task_out(synthetic_history(1))


def test_no_extrapolation_beyond_0_and_100():
    predictor = AccuracyPredictor().fit(synthetic_history(6))
    extreme = [
        candidate("huge", linear=100.0, z=80.0, depth=10_000, source_num_images=1e12),
        candidate("tiny", linear=0.0, z=-80.0, depth=1, source_num_images=1.0),
        Candidate("no-meta", {"linear": 55.0, "parc": 1.0}, {"parc": 50.0, "logme": -50.0}),
    ]
    for prediction in (predictor.predict(extreme), AccuracyPredictor().predict(extreme)):
        assert_valid(prediction, 3)
    # inputs are clipped to the range seen in the history: far outside it, nothing changes any more
    far_prediction = predictor.predict([candidate(task_meta={**TASK_META, "num_train": n}) for n in (1e9, 1e15)])
    assert far_prediction.mean[0] == pytest.approx(far_prediction.mean[1])
