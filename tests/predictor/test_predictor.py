"""The accuracy predictor: the cold start trained on the shipped meta-benchmark, the user's history that
refines it only when that helps, and the features it is built on."""

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
    comparable_transfers,
    format_calibration,
    leave_one_task_out,
    zscore_bank,
)
from automl.predictor.inputs import bank_features, feature_names, from_level, to_level
from automl.predictor.model import AccuracyModel, _fit, _predict, make_regressor
from automl.predictor.shipped import DATA_DIR
from automl.settings import PredictorSettings


def assert_valid(prediction, chance: np.ndarray) -> None:
    for values in (prediction.mean, prediction.low, prediction.high):
        assert np.all(np.isfinite(values)) and np.all((values >= chance - 1e-9) & (values <= 100 + 1e-9))
    assert np.all(prediction.low <= prediction.mean) and np.all(prediction.mean <= prediction.high)


def records_of(cells, offset: float = 0.0, noise: float = 0.0, state: str = "COMPLETE", seed: int = 0,
               prefix: str = "user") -> list[TransferRecord]:
    """The cells' transfers as history records of their own tasks, measured ``offset`` points higher (a
    user whose recipe differs from the benchmark's) with ``noise``."""
    rng = np.random.default_rng(seed)
    records = []
    for cell in cells:
        for candidate, accuracy in zip(cell.candidates, cell.oracle, strict=True):
            measured = float(np.clip(accuracy + offset + rng.normal(0, noise), 0, 100))
            records.append(TransferRecord(
                run_id="test", kind="finetune", trial=0, task_name=f"{prefix}-{cell.target}",
                task_fingerprint=f"{prefix}-{cell.target}", task_meta=dict(candidate.task_meta),
                model_name=candidate.model_name, scores=dict(candidate.scores),
                model_meta={k: v for k, v in candidate.model_meta.items() if math.isfinite(v)},  # NaN: not recorded
                scores_z=dict(candidate.scores_z), val_accuracy=measured, test_accuracy=measured,
                fidelity={"state": state, "planned_epochs": 30}))
    return records


def test_zscore_bank():
    z = zscore_bank([{"parc": 1.0, "leep": 5.0}, {"parc": 2.0, "leep": math.nan}, {"parc": 3.0, "leep": 7.0},
                     {"parc": 6.0}])
    parc = np.array([row["parc"] for row in z])
    assert parc.mean() == pytest.approx(0) and parc.std(ddof=1) == pytest.approx(1)
    assert "leep" not in z[1] and "leep" not in z[3] and z[0]["leep"] == pytest.approx(-z[2]["leep"])
    assert zscore_bank([{"parc": 4.0}]) == [{"parc": 0.0}]


def test_levels_round_trip_between_chance_and_100():
    chance = np.array([10.0, 50.0, 0.0])
    accuracy = np.array([55.0, 80.0, 99.0])
    np.testing.assert_allclose(from_level(to_level(accuracy, chance), chance), accuracy)
    assert np.all(from_level(np.array([-50.0, 50.0, 0.0]), chance) == [10.0, 100.0, 50.0])


def test_features_keep_the_whole_banks_context_for_a_subset_of_it(meta):
    cell = meta.cells[0]
    full = bank_features(cell.candidates, meta.score_names)
    assert full.shape == (len(cell.candidates), len(feature_names(meta.score_names)))
    # a history holds only the fine-tuned models, yet their features are those they had in the whole bank
    np.testing.assert_allclose(bank_features(cell.candidates[:3], meta.score_names), full[:3])


def test_the_model_orders_a_bank_by_what_its_measured_cells_teach_and_offsets_it_by_every_row():
    rng = np.random.default_rng(0)
    tasks = 8
    offset = rng.normal(0, 3, tasks)  # how hard each task is, visible in feature 1
    x = rng.normal(size=(tasks, 12))  # what separates the models of one task, feature 0
    features = np.stack([x.ravel(), np.repeat(offset, 12)], axis=1)
    level = (2 * x + offset[:, None]).ravel()
    groups = np.repeat([f"t{i}" for i in range(tasks)], 12)
    new = np.stack([np.linspace(-1, 1, 5), np.full(5, 2.0)], axis=1)
    model = AccuracyModel("ridge").fit(features, level, groups)
    mean, low, high = model.predict(new, np.zeros(5))
    # the order within the task and its offset, as an accuracy (chance 0)
    np.testing.assert_allclose(to_level(mean, 0.0), 2 * new[:, 0] + 2.0, atol=0.3)
    assert np.all((low < mean) & (mean < high))
    # heavy history rows measured alone, whose order within their task contradicts the cells: they move
    # the prediction (offset stage) but never teach the relative stage
    lone = np.array([[1.0, 0.0], [-1.0, 0.0]])
    mixed = AccuracyModel("ridge").fit(np.concatenate([features, lone]), np.concatenate([level, [-2.0, 2.0]]),
                                       np.concatenate([groups, ["user", "user"]]), np.r_[np.ones(len(level)), 50, 50],
                                       cells=np.concatenate([groups, ["", ""]]))
    assert np.all(np.diff(mixed.relative_.predict(new)) > 0)
    assert np.all(np.diff(mixed.predict(new, np.zeros(5))[0]) < np.diff(mean))
    alone = AccuracyModel("ridge").fit(features, level, groups, cells=np.full(len(level), ""))
    assert alone.relative_ is None  # no measured cell: one regression of the level
    # refitted on rows one level lower: the predictions follow, the interval's offsets stay
    lowered = model.refitted(features, level - 1.0, np.ones(len(level)), groups)
    np.testing.assert_allclose(to_level(lowered.predict(new, np.zeros(5))[0], 0.0), to_level(mean, 0.0) - 1.0,
                               atol=1e-6)
    assert (lowered.error_low_, lowered.error_high_) == (model.error_low_, model.error_high_)


def test_boosting_learns_the_median_of_how_far_a_model_lands_from_its_bank():
    rng = np.random.default_rng(2)
    tasks = 20  # 12 look-alike models per task: 70% take off (level +3), 30% stay at chance's clipped logit
    features = rng.normal(size=(tasks * 12, 2))
    level = np.where(rng.random(tasks * 12) < 0.7, 3.0, to_level(np.zeros(1), 0.0)[0])
    groups = np.repeat(np.arange(tasks), 12)
    model = AccuracyModel("boosting").fit(features, level, groups)
    deviation = level - np.array([level[groups == g].mean() for g in range(tasks)])[groups]
    # the median deviation is a model that took off; the mean (0) lies between the two groups
    assert np.median(deviation) > 1.0 and abs(deviation.mean()) < 1e-9
    assert np.median(model.relative_.predict(features)) == pytest.approx(np.median(deviation), abs=0.4)


def test_a_blend_predicts_the_mean_of_a_ridge_and_a_median_boosting_fitted_alike():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(240, 3))
    level = np.where(features[:, 0] > 0, 2.0 + features[:, 1], -1.0) + rng.normal(0, 0.3, 240)  # a step: no line
    blend, ridge, boosting = make_regressor("blend", median=True), make_regressor("ridge"), make_regressor(
        "boosting", median=True)
    for regressor in (blend, ridge, boosting):
        _fit(regressor, features, level, np.ones(240))
    np.testing.assert_allclose(_predict(blend, features), (ridge.predict(features) + boosting.predict(features)) / 2)
    assert not np.allclose(ridge.predict(features), boosting.predict(features), atol=0.1)  # two different halves


def test_intervals_are_in_accuracy_points_narrowest_near_the_ends_and_hold_their_coverage():
    rng = np.random.default_rng(1)

    def tasks(count: int):  # 12 models per task on 10 classes; feature 0 sets the accuracy, noise in points
        x = rng.normal(0, 2, size=(count * 12, 1))
        accuracy = np.clip(from_level(x[:, 0], 10.0) + rng.normal(0, 4, len(x)), 10.0, 100.0)
        return x, accuracy, np.repeat(np.arange(count), 12)

    x, accuracy, groups = tasks(40)
    chance = np.full(len(x), 10.0)
    model = AccuracyModel("ridge").fit(x, to_level(accuracy, chance), groups, chance=chance)
    mean, low, high = model.predict(np.array([[0.0], [4.0]]), np.array([10.0, 10.0]))
    assert np.all((low >= 10.0) & (low <= mean) & (mean <= high) & (high <= 100.0))
    # the noise's own 80% range is 10.3 points; a constant logit width made it 20.6 at mid-range
    assert high[0] - low[0] < 18.0
    assert high[1] - low[1] < 0.6 * (high[0] - low[0])  # a model predicted at ~98% cannot miss by as much
    new_x, new_accuracy, _ = tasks(60)
    _, new_low, new_high = model.predict(new_x, np.full(len(new_x), 10.0))
    assert 0.72 <= np.mean((new_low <= new_accuracy) & (new_accuracy <= new_high)) <= 0.88


def test_the_shipped_predictor_loads_offline_and_predicts_every_model_in_range(meta):
    assert (DATA_DIR / "scores.csv").is_file() and len(meta.banks) >= 4 and len(meta.targets) >= 8
    predictor = AccuracyPredictor().fit([])
    assert predictor.source_ == "meta-benchmark" and predictor.calibration_ is None
    for cell in meta.cells[:: max(1, len(meta.cells) // 12)]:
        assert_valid(predictor.predict(cell.candidates), cell.chance)


def test_a_headless_checkpoint_is_predicted_without_the_scores_it_cannot_have(meta):
    cell = meta.cells[0]
    headless = [dataclasses.replace(c, scores={**c.scores, "leep": math.nan, "nce": math.nan},
                                    model_meta={**c.model_meta, "num_classes": 0}) for c in cell.candidates]
    rebuilt = bank_candidates({c.model_name: c.scores for c in headless},
                              {c.model_name: c.model_meta for c in headless}, headless[0].task_meta)
    prediction = AccuracyPredictor().predict(rebuilt)
    assert_valid(prediction, cell.chance)
    assert len(prediction) == len(cell.candidates)


@pytest.mark.slow
def test_history_refines_the_cold_start_only_when_it_helps(meta):
    held_out = [c for c in meta.cells if c.seed == 0 and c.bank == meta.banks[0]][:4]
    cold = AccuracyPredictor()
    # a user whose fine-tuning reaches 12 points more than the benchmark's recipe, consistently
    consistent = records_of(held_out, offset=12.0, noise=1.0)
    fitted = AccuracyPredictor().fit(consistent)
    assert fitted.calibration_["helps"] and "4 task(s) of history" in fitted.source_
    overall = fitted.calibration_["overall"]
    assert overall["calibrated"]["mae"] < overall["cold_start"]["mae"]
    cell = held_out[0]
    measured = cell.oracle + 12.0
    refined_error = np.abs(fitted.predict(cell.candidates).mean - measured).mean()
    assert refined_error < np.abs(cold.predict(cell.candidates).mean - measured).mean()

    # a history that contradicts itself (each task measured 25 points off, up or down) does not replace it
    contradicting = [record for index, cell in enumerate(held_out)
                     for record in records_of([cell], offset=25.0 if index % 2 else -25.0, noise=10.0, seed=3 + index)]
    kept = AccuracyPredictor().fit(contradicting)
    assert not kept.calibration_["helps"] and kept.source_ == "meta-benchmark"
    np.testing.assert_allclose(kept.predict(cell.candidates).mean, cold.predict(cell.candidates).mean)


def test_only_complete_fits_are_learnt_from(meta):
    cells = [c for c in meta.cells if c.seed == 0][:2]
    complete = records_of(cells, offset=5.0)
    pruned = records_of(cells, offset=-40.0, state="PRUNED")  # 2 epochs of a 30-epoch schedule
    transfers = comparable_transfers(pruned + complete)
    assert len(transfers) == len(complete) and all(r.fidelity["state"] == "COMPLETE" for r in transfers)
    assert comparable_transfers(pruned) == []


def test_leave_one_task_out_needs_two_tasks_and_prints_a_table(meta):
    cells = [c for c in meta.cells if c.seed == 0 and c.bank == meta.banks[1]][:3]
    with pytest.raises(ValueError, match="at least 2 tasks"):
        leave_one_task_out(records_of(cells[:1]))
    result = leave_one_task_out(records_of(cells, offset=8.0), PredictorSettings(kind="ridge"))
    assert result["num_tasks"] == 3 and result["num_records"] == 3 * len(cells[0].candidates)
    for metrics in (result["overall"], *result["tasks"].values()):
        assert set(metrics["cold_start"]) == {"mae", "spearman", "coverage"}
    console = Console(width=200, record=True)
    console.print(format_calibration(result))
    text = console.export_text()
    assert "cold start" in text and "calibrated" in text and "Spearman" in text
    assert ("calibration helps" in text) == result["helps"]


def test_candidates_know_their_chance_level():
    assert Candidate("m", {}, {}, {}, {"num_classes": 8}).chance == 12.5
    assert Candidate("m", {}, {}, {}, {}).chance == 0.0
