"""Calibration from real fine-tuning records: the history judged task by task against the cold start,
and ``stage=calibrate``, alone, saying what it can."""

from __future__ import annotations

import pytest
from conftest import automl_command, quick_overrides, run_pipeline

from automl.history import History
from automl.predictor import leave_one_task_out
from automl.predictor.calibration import SPEARMAN_TOLERANCE
from automl.settings import AutomlSettings, compose, resolve

pytestmark = [pytest.mark.slow,  # every test here fine-tunes through the pipeline or runs a command
              pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning"),  # Lightning's
              pytest.mark.filterwarnings("ignore::UserWarning")]


def settings(overrides: list[str]) -> AutomlSettings:
    """What ``python -m automl <overrides>`` runs with."""
    return resolve(compose(overrides))


def test_calibration_judges_real_fine_tuning_records_task_by_task(small_demo_bank, tmp_path, capsys):
    """Every model of the bank fine-tuned once (the warm-start trials) on three builtin tasks; the history's
    records are judged task by task against the cold start, and ``stage=calibrate`` states the verdict the
    next ranking acts on. (Whether a history helps is the predictor's test, test_predictor.py, and
    bench/feedback.py's measurement: this quick recipe lands 60 points below the benchmark's on digits, which
    two other tasks cannot foretell.)"""
    base = quick_overrides(small_demo_bank, tmp_path, "finetune.top_k=4", "finetune.n_trials=4",
                           "finetune.pruner=none", "stage=finetune")
    for task in ("digits", "shapes", "glyphs"):
        assert run_pipeline([*base, f"task={task}"], tmp_path / task).best_val_accuracy is not None
    records = History(f"sqlite:///{tmp_path}/automl.db").records(kind="finetune")
    assert len(records) == 12 and all(r.test_accuracy is not None and r.scores_z for r in records)

    result = leave_one_task_out(records, settings([]).rank.predictor)
    assert result["num_tasks"] == 3 and result["num_records"] == 12
    assert {entry["task_name"] for entry in result["tasks"].values()} == {"digits", "shapes", "glyphs"}
    cold, calibrated = result["overall"]["cold_start"], result["overall"]["calibrated"]
    assert calibrated["mae"] != cold["mae"]  # the other tasks' records did refine the model
    assert result["helps"] == (calibrated["mae"] < cold["mae"]
                               and calibrated["spearman"] >= cold["spearman"] - SPEARMAN_TOLERANCE)

    capsys.readouterr()
    run_pipeline(quick_overrides(small_demo_bank, tmp_path, "stage=calibrate"), tmp_path / "calibrate")
    out = capsys.readouterr().out
    verdict = "calibration helps" if result["helps"] else "calibration does not help yet"
    assert "Leave-one-task-out" in out and verdict in out


def test_calibrate_alone_prints_no_empty_summary_and_claims_help_only_when_it_is_there(tmp_path):
    result = automl_command(f"storage=sqlite:///{tmp_path}/h.db", "stage=calibrate", f"hydra.run.dir={tmp_path}/run",
                    cwd=tmp_path)
    assert result.returncode == 0 and "automl summary" not in result.stdout
    assert "at least 2 tasks" in result.stdout.replace("\n", " ")
