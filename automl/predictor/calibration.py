"""Does the user's history make predictions better? The verdict on a leave-one-task-out comparison
(:func:`automl.predictor.leave_one_task_out`: each of the user's tasks predicted by the cold start and by
the model refined on the *other* tasks), and its table (``python -m automl stage=calibrate`` prints it)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from rich.table import Table


NAMES = ("cold_start", "calibrated")
SPEARMAN_TOLERANCE = 0.05  # a calibration that orders models worse by more than this does not help
MIN_POINTS = 3  # a Spearman order from fewer is +-1 by construction; a verdict from fewer judges nothing


def judge(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The comparison of predicted (``cold_start``, ``calibrated``, each with ``_low``/``_high``) and
    ``measured`` accuracies in ``rows`` (one per transfer, with ``task_fingerprint`` and ``task_name``):
    ``overall`` and per task ``tasks[fingerprint]`` metrics (:func:`metrics`), ``enough``: at least
    ``MIN_POINTS`` transfers on at least two tasks, and ``helps``: there are enough and the calibrated model
    has the lower MAE *and* a Spearman no more than ``SPEARMAN_TOLERANCE`` lower."""
    tasks = list(dict.fromkeys(row["task_fingerprint"] for row in rows))
    per_task = {task: {"task_name": task_rows[0]["task_name"], "num_records": len(task_rows), **metrics(task_rows)}
                for task in tasks for task_rows in [[row for row in rows if row["task_fingerprint"] == task]]}
    overall = metrics(rows)
    cold, calibrated = overall["cold_start"], overall["calibrated"]
    # NaN (too few distinct records) does not block
    spearman_kept = not (calibrated["spearman"] < cold["spearman"] - SPEARMAN_TOLERANCE)
    enough = len(rows) >= MIN_POINTS and len(tasks) >= 2
    return {"overall": overall, "tasks": per_task, "enough": enough,
            "helps": enough and calibrated["mae"] < cold["mae"] and spearman_kept}


def metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    measured = np.array([row["measured"] for row in rows])
    out = {}
    for name in NAMES:
        predicted = np.array([row[name] for row in rows])
        low, high = np.array([row[f"{name}_low"] for row in rows]), np.array([row[f"{name}_high"] for row in rows])
        distinct = len(measured) >= MIN_POINTS and np.ptp(measured) > 0 and np.ptp(predicted) > 0
        out[name] = {"mae": float(np.mean(np.abs(predicted - measured))),
                     "spearman": float(stats.spearmanr(predicted, measured).statistic) if distinct else math.nan,
                     "coverage": float(np.mean((low <= measured) & (measured <= high)))}
    return out


def format_calibration(result: Mapping[str, Any]) -> Table:
    """A rich table of :func:`leave_one_task_out`'s result: cold start and calibrated side by side."""
    from rich.table import Table

    table = Table(title=f"Leave-one-task-out on your history ({result['num_tasks']} tasks): predicted vs measured "
                        "fine-tuned accuracy")
    table.add_column("task")
    table.add_column("n", justify="right")
    for metric in ("MAE", "Spearman", f"{result['coverage']:.0%} cover"):
        table.add_column(f"{metric}\ncold start", justify="right")
        table.add_column(f"{metric}\ncalibrated", justify="right")

    def cells(metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
        out = []
        for key, fmt in (("mae", "{:.2f}"), ("spearman", "{:+.2f}"), ("coverage", "{:.0%}")):
            for name in NAMES:
                value = metrics[name][key]
                out.append("–" if math.isnan(value) else fmt.format(value))
        return out

    for entry in result["tasks"].values():
        table.add_row(entry["task_name"], str(entry["num_records"]), *cells(entry))
    table.add_section()
    table.add_row("all", str(result["num_records"]), *cells(result["overall"]), style="bold")
    cold, calibrated = result["overall"]["cold_start"], result["overall"]["calibrated"]
    if not result["enough"]:
        verdict = (f"too few measured transfers to judge ({result['num_records']} on {result['num_tasks']} task(s); "
                   f"at least {MIN_POINTS} on 2 tasks): the ranking keeps the cold start")
    elif result["helps"]:
        verdict = "calibration helps: the ranking uses the calibrated model"
    else:
        verdict = "calibration does not help yet: the ranking keeps the cold start"
    table.caption = (f"{verdict} (MAE {cold['mae']:.2f} → {calibrated['mae']:.2f} points, Spearman "
                     f"{cold['spearman']:+.2f} → {calibrated['spearman']:+.2f}); cover = share of measured "
                     "accuracies inside the predicted interval")
    return table
