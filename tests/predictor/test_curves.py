"""Where a fit stopped early was headed (issue 36.2): the curve model learnt from the shipped meta-benchmark's
complete curves, what the recorder writes for a pruned trial, and the history learning from such trials."""

from __future__ import annotations

import numpy as np
import pytest

from automl.finetune import TrialResult
from automl.history import TransferRecord
from automl.predictor import comparable_transfers, leave_one_task_out
from automl.predictor.curves import CurveModel, shipped_curves
from automl.run.recorder import curve_estimate
from automl.settings import PredictorSettings


@pytest.fixture(scope="module")
def curves():
    return shipped_curves()


def test_five_epochs_of_a_curve_say_more_than_its_last_value_on_targets_it_never_saw(curves):
    ours, last, inside = [], [], []
    for target in ("digits", "glyphs", "scenes"):  # a bank and targets the model never saw
        model = CurveModel().fit(curves.subset((curves.target != target) & (curves.bank != "fresh")))
        for i in np.flatnonzero((curves.target == target) & (curves.bank == "fresh")):
            estimate = model.estimate(curves.curves[i][:5], 30, float(curves.chance[i]))
            ours.append(abs(estimate.mean - curves.final[i]))
            last.append(abs(curves.curves[i][4] - curves.final[i]))
            inside.append(estimate.low <= curves.final[i] <= estimate.high)
            assert curves.chance[i] <= estimate.low <= estimate.mean <= estimate.high <= 100
    assert np.mean(ours) < np.mean(last)
    assert np.mean(inside) >= 0.5  # an 80% interval from other targets' errors (70-77% over all banks)


def trial(state: str, curve: list[float], epochs: int = 30) -> TrialResult:
    return TrialResult(study="s", number=3, model="m", state=state, hparams={"epochs": epochs},
                       val_accuracy=max(curve) if curve else None, test_accuracy=None, epochs=len(curve),
                       val_curve=curve, seconds=1.0, train_images=1, mflops=1.0, fail_reason=None,
                       weights=None, test_predictions=None)


def test_a_pruned_trial_records_where_its_curve_was_headed():
    rising = [30.0, 45.0, 55.0, 61.0, 66.0]
    estimate = curve_estimate(trial("PRUNED", rising), num_classes=10)["curve_estimate"]
    assert estimate["low"] <= estimate["mean"] <= estimate["high"] and estimate["mean"] > rising[-1]
    assert curve_estimate(trial("COMPLETE", rising * 6), num_classes=10) == {}  # measured: nothing to estimate


def record(task: str, model: str, state: str, accuracy: float, estimate: float | None = None) -> TransferRecord:
    fidelity = {"state": state, "planned_epochs": 30}
    if estimate is not None:
        fidelity["curve_estimate"] = {"mean": estimate, "low": estimate - 5, "high": estimate + 5}
    return TransferRecord(run_id="r", kind="finetune", trial=0, task_name=task, task_fingerprint=task,
                          task_meta={"num_classes": 10, "num_train": 500, "image_side": 32}, model_name=model,
                          scores={"knn": 50.0}, scores_z={"knn": 0.0}, model_meta={}, val_accuracy=accuracy,
                          test_accuracy=accuracy if state == "COMPLETE" else None, fidelity=fidelity)


def test_a_stopped_fit_stands_in_for_its_model_only_where_none_completed():
    records = [record("t", "a", "COMPLETE", 80.0), record("t", "a", "PRUNED", 60.0, estimate=85.0),
               record("t", "b", "PRUNED", 50.0, estimate=70.0), record("t", "c", "PRUNED", 40.0)]
    assert [(r.model_name, r.outcome_accuracy) for r in comparable_transfers(records)] == [("a", 80.0)]
    assert [(r.model_name, r.outcome_accuracy) for r in comparable_transfers(records, estimated=True)] == [
        ("a", 80.0), ("b", 70.0)]  # c has no estimate: it teaches nothing


def test_leave_one_task_out_judges_on_complete_fits_only(meta):
    cells = [cell for cell in meta.cells if cell.bank == "classic" and cell.seed == 0][:3]
    records = []
    for cell in cells:
        for i, (candidate, accuracy) in enumerate(zip(cell.candidates, cell.oracle, strict=True)):
            state = "COMPLETE" if i < 2 else "PRUNED"
            records.append(TransferRecord(
                run_id="r", kind="finetune", trial=i, task_name=cell.target, task_fingerprint=cell.target,
                task_meta=dict(candidate.task_meta), model_name=candidate.model_name, scores=dict(candidate.scores),
                scores_z=dict(candidate.scores_z), model_meta={}, val_accuracy=float(accuracy),
                test_accuracy=float(accuracy) if state == "COMPLETE" else None,
                fidelity={"state": state, "planned_epochs": 30,
                          **({"curve_estimate": {"mean": float(accuracy), "low": 0.0, "high": 100.0}}
                             if state == "PRUNED" else {})}))
    for learn in (True, False):
        result = leave_one_task_out(records, PredictorSettings(kind="ridge", learn_from_curves=learn))
        assert result["num_records"] == 2 * len(cells)  # the pruned fits are never the yardstick
