"""The calibration verdict says when the history is too small to judge: two tasks of one transfer each
gave a Spearman of -1.00 "from 2 points" and could adopt a refit by chance."""

from __future__ import annotations

import math

from rich.console import Console

from automl.predictor.calibration import MIN_POINTS, format_calibration, judge


def rows(measured: list[float], cold: list[float], calibrated: list[float]) -> list[dict]:
    return [{"task_fingerprint": f"t{i}", "task_name": f"task{i}", "measured": m,
             "cold_start": c, "cold_start_low": c - 5, "cold_start_high": c + 5,
             "calibrated": k, "calibrated_low": k - 5, "calibrated_high": k + 5}
            for i, (m, c, k) in enumerate(zip(measured, cold, calibrated, strict=True))]


def test_two_points_judge_nothing():
    result = judge(rows([60.0, 80.0], cold=[80.0, 60.0], calibrated=[61.0, 79.0]))  # calibrated: far better MAE
    assert not result["enough"] and not result["helps"]
    assert math.isnan(result["overall"]["calibrated"]["spearman"])  # not +1.00 from two points
    table = format_calibration({"coverage": 0.8, "num_tasks": 2, "num_records": 2, **result})
    text = _render(table)
    assert "too few measured transfers to judge (2 on 2 task(s)" in text and "+1.00" not in text


def test_enough_points_are_judged_by_mae_and_order():
    measured = [50.0, 60.0, 70.0, 80.0]
    assert len(measured) > MIN_POINTS
    result = judge(rows(measured, cold=[70.0, 50.0, 90.0, 60.0], calibrated=[52.0, 61.0, 69.0, 81.0]))
    assert result["enough"] and result["helps"] and result["overall"]["calibrated"]["spearman"] == 1.0


def _render(table) -> str:
    console = Console(width=120, record=True)
    console.print(table)
    return console.export_text()
