"""Does the user's history make predictions better? Leave-one-task-out on the user's own tasks: each is
predicted by the cold start and by the model refined on the *other* user tasks; the refined model is
kept only when it is more accurate there (``python -m automl stage=calibrate`` prints the comparison)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from automl.predictor.predictor import AccuracyPredictor, candidate_of, comparable_transfers
from automl.settings import PredictorSettings

if TYPE_CHECKING:
    from rich.table import Table

    from automl.history import TransferRecord

NAMES = ("cold_start", "calibrated")
SPEARMAN_TOLERANCE = 0.05  # a calibration that orders models worse by more than this does not help


def leave_one_task_out(records: Sequence[TransferRecord], settings: PredictorSettings | None = None,
                       data_dir: str | None = None) -> dict[str, Any]:
    """Cold start vs refined-on-the-other-tasks, on each of the history's tasks in turn.

    Only comparable records count (:func:`.predictor.comparable_transfers`). Returns ``num_tasks``,
    ``num_records``, ``coverage`` (the interval's nominal share); ``overall`` and per task
    ``tasks[fingerprint]`` (with ``task_name``, ``num_records``) holding for ``cold_start`` and
    ``calibrated`` ``{"mae": accuracy points, "spearman": in [-1, 1] or NaN, "coverage": share inside
    the interval}``; ``rows``: one dict per transfer; ``helps``: the refined model has the lower MAE *and*
    a Spearman no more than ``SPEARMAN_TOLERANCE`` lower. Raises ValueError with fewer than two tasks.
    """
    transfers = comparable_transfers(records)
    tasks = list(dict.fromkeys(record.task_fingerprint for record in transfers))
    if len(tasks) < 2:
        raise ValueError(f"leave-one-task-out needs complete fine-tuning records on at least 2 tasks; the history "
                         f"has {len(transfers)} on {len(tasks)} task(s). Fine-tune on another task first (or import "
                         "a history CSV with `python -m automl.history action=import file=...`).")
    predictor = AccuracyPredictor(settings, data_dir)
    rows = []
    for task in tasks:
        held_out = [record for record in transfers if record.task_fingerprint == task]
        refined = predictor.refined([record for record in transfers if record.task_fingerprint != task])
        candidates = [candidate_of(record) for record in held_out]
        both = {"cold_start": predictor.predict(candidates, predictor.cold_start()),
                "calibrated": predictor.predict(candidates, refined)}
        for i, record in enumerate(held_out):
            rows.append({"task_fingerprint": task, "task_name": record.task_name, "model_name": record.model_name,
                         "measured": record.measured_accuracy,
                         **{f"{name}{suffix}": float(getattr(p, part)[i]) for name, p in both.items()
                            for suffix, part in (("", "mean"), ("_low", "low"), ("_high", "high"))}})
    per_task = {task: {"task_name": task_rows[0]["task_name"], "num_records": len(task_rows), **_metrics(task_rows)}
                for task in tasks for task_rows in [[row for row in rows if row["task_fingerprint"] == task]]}
    overall = _metrics(rows)
    cold, calibrated = overall["cold_start"], overall["calibrated"]
    # NaN (too few distinct records) does not block
    spearman_kept = not (calibrated["spearman"] < cold["spearman"] - SPEARMAN_TOLERANCE)
    return {"coverage": predictor.settings.coverage, "num_tasks": len(tasks), "num_records": len(rows),
            "overall": overall, "tasks": per_task, "rows": rows,
            "helps": calibrated["mae"] < cold["mae"] and spearman_kept}


def _metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    measured = np.array([row["measured"] for row in rows])
    out = {}
    for name in NAMES:
        predicted = np.array([row[name] for row in rows])
        low, high = np.array([row[f"{name}_low"] for row in rows]), np.array([row[f"{name}_high"] for row in rows])
        distinct = len(measured) >= 2 and np.ptp(measured) > 0 and np.ptp(predicted) > 0
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
    verdict = ("calibration helps: the ranking uses the calibrated model" if result["helps"] else
               "calibration does not help yet: the ranking keeps the cold start")
    table.caption = (f"{verdict} (MAE {cold['mae']:.2f} → {calibrated['mae']:.2f} points, Spearman "
                     f"{cold['spearman']:+.2f} → {calibrated['spearman']:+.2f}); cover = share of measured "
                     "accuracies inside the predicted interval")
    return table
