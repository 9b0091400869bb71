"""The pipeline as a user runs it: the rank stage, calibration from real fine-tuning records, and
``python -m automl`` end to end (single run and Hydra multirun) on builtin tasks with a small demo bank."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_random_bank
from PIL import Image

from automl._fileio import read_csv_rows
from automl.bank import BankError
from automl.history import History
from automl.predictor import leave_one_task_out
from automl.predictor.calibration import SPEARMAN_TOLERANCE
from automl.run.stages import run as run_settings
from automl.settings import AutomlSettings, SettingsError, compose, resolve
from automl.transferability import available

pytestmark = [pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning"),  # Lightning's
              pytest.mark.filterwarnings("ignore::UserWarning")]

REPO = Path(__file__).resolve().parents[2]
# A few batches of one or two epochs: real fits, seconds each.
QUICK_FINETUNE = ["finetune.limit_train_batches=3", "finetune.max_epochs=2", "finetune.first_rung=2",
                  "finetune.default_hparams.epochs=2", "finetune.progress_bar=false", "probe.budget=120"]


def base_overrides(bank: Path, work: Path) -> list[str]:
    return [f"bank.dir={bank}", "bank.name=small", "bank.build=null", f"cache_dir={work}/cache",
            f"storage=sqlite:///{work}/automl.db", f"finetune.artifacts_dir={work}/artifacts", "device=cpu"]


def settings(overrides: list[str]) -> AutomlSettings:
    """What ``python -m automl <overrides>`` runs with."""
    return resolve(compose(overrides))


def run(overrides: list[str], run_dir: Path) -> float | None:
    """The pipeline in this process, as ``python -m automl <overrides> hydra.run.dir=<run_dir>`` runs it."""
    return run_settings(settings(overrides), run_dir)


# ----------------------------------------------------------------------------------------- rank stage
def test_rank_stage_writes_a_complete_ranking_and_reuses_cached_features(small_demo_bank, tmp_path, capsys):
    overrides = [*base_overrides(small_demo_bank, tmp_path), "task=shapes", "stage=rank"]
    run(overrides, tmp_path / "run1")
    rows = read_csv_rows(tmp_path / "run1" / "ranking.csv")
    header = list(rows[0])
    assert header == ["rank", "model", "arch", "source", *available(), "predicted_accuracy", "predicted_low",
                      "predicted_high"]
    assert len(rows) == 4 and [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    predicted = [float(r["predicted_accuracy"]) for r in rows]
    assert predicted == sorted(predicted, reverse=True)
    for row in rows:
        assert 0 <= float(row["predicted_low"]) <= float(row["predicted_accuracy"]) <= float(row["predicted_high"]) <= 100
        assert row["source"] in ("textures", "photos") and all(row[name] != "" for name in ("parc", "logme", "linear"))
    assert "Ranking on shapes" in capsys.readouterr().out

    features = sorted((tmp_path / "cache" / "features").glob("*.npz"))
    mtimes = [path.stat().st_mtime_ns for path in features]
    run(overrides, tmp_path / "run2")
    assert sorted((tmp_path / "cache" / "features").glob("*.npz")) == features  # no new extraction
    assert [path.stat().st_mtime_ns for path in features] == mtimes
    assert read_csv_rows(tmp_path / "run2" / "ranking.csv") == rows


def test_rank_stage_bad_input_is_a_clear_error(small_demo_bank, tmp_path):
    base = base_overrides(small_demo_bank, tmp_path)
    with pytest.raises(SettingsError, match=r"rank.scores/rank.options: unknown score\(s\) \['bogus'\]"):
        run([*base, "stage=rank", "rank.scores=[parc,linear,bogus]"], tmp_path / "run")
    with pytest.raises(ValueError, match="26 classes but a probe budget of 40 allows at most 20"):
        run([*base, "task=glyphs", "stage=rank", "probe.budget=40", "probe.subsample_classes=false"],
            tmp_path / "run")

    broken = write_random_bank(tmp_path / "broken", {"a": ("test_resnet", {}), "b": ("test_efficientnet", {})}, 3)
    for weights in broken.glob("*.safetensors"):  # truncated downloads
        weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BankError, match=r"no model of bank 'broken' could be loaded:\n  a: .*\n  b: "):
        run([*base, f"bank.dir={broken}", "bank.name=broken", "stage=rank"], tmp_path / "run")


# ---------------------------------------------------------------------------------------- calibration
def test_calibration_judges_real_fine_tuning_records_task_by_task(small_demo_bank, tmp_path, capsys):
    """Every model of the bank fine-tuned once (the warm-start trials) on three builtin tasks; the history's
    records are judged task by task against the cold start, and ``stage=calibrate`` states the verdict the
    next ranking acts on. (Whether a history helps is the predictor's test, test_predictor.py, and
    bench/feedback.py's measurement: this quick recipe lands 60 points below the benchmark's on digits, which
    two other tasks cannot foretell.)"""
    base = [*base_overrides(small_demo_bank, tmp_path), *QUICK_FINETUNE, "finetune.top_k=4", "finetune.n_trials=4",
            "finetune.pruner=none", "stage=finetune"]
    for task in ("digits", "shapes", "glyphs"):
        assert run([*base, f"task={task}"], tmp_path / task).best_val_accuracy is not None
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
    run([*base_overrides(small_demo_bank, tmp_path), "stage=calibrate"], tmp_path / "calibrate")
    out = capsys.readouterr().out
    verdict = "calibration helps" if result["helps"] else "calibration does not help yet"
    assert "Leave-one-task-out" in out and verdict in out


# ------------------------------------------------------------------------------------------ end to end
def automl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "automl", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=600, env={**_env(), "COLUMNS": "160"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(REPO)}


def assert_png(path: Path, min_side: int = 200) -> None:
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and min(image.size) >= min_side, (path, image.size)
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5, f"{path} looks blank"


def test_main_command_end_to_end(small_demo_bank, tmp_path):
    run_dir = tmp_path / "run"
    result = automl(*base_overrides(small_demo_bank, tmp_path), *QUICK_FINETUNE, "task=digits", "finetune.top_k=2",
                    "finetune.n_trials=3", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert "automl summary" in result.stdout and "best:" in result.stdout

    ranking = read_csv_rows(run_dir / "ranking.csv")
    assert len(ranking) == 4 and set(available()) <= set(ranking[0])

    trials = read_csv_rows(run_dir / "finetune.csv")
    assert [int(t["trial"]) for t in trials] == [0, 1, 2]
    assert {t["model"] for t in trials} <= {r["model"] for r in ranking[:2]}
    assert {"state", "lr", "weight_decay", "val_accuracy", "test_accuracy", "epochs", "seconds"} <= set(trials[0])
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert complete and all(0 <= float(t["val_accuracy"]) <= 100 for t in complete)

    config = json.loads((run_dir / "best" / "config.json").read_text())
    best = max(complete, key=lambda t: float(t["val_accuracy"]))
    assert config["val_accuracy"] == pytest.approx(float(best["val_accuracy"]), abs=1e-4)  # CSV: 4 decimals
    # Exported: the best trial's configuration refitted on train + val; the trial's own test accuracy is kept.
    assert config["refit"]["on"] == "train+val" and 0 <= config["test_accuracy"] <= 100
    assert config["refit"]["trial_test_accuracy"] == pytest.approx(float(best["test_accuracy"]), abs=1e-4)
    assert config["classes"] == [str(d) for d in range(10)] and (run_dir / "best" / "model.safetensors").is_file()
    assert re.search(rf"{best['model']} .* {sum(t['model'] == best['model'] for t in trials)} .* test "
                     rf"{float(best['test_accuracy']):.1f} ", result.stdout), result.stdout  # the summary's row

    report = (run_dir / "report.md").read_text()
    for section in ("# automl report: digits", "## Ranking", "## Predicted vs measured", "## Fine-tuning search",
                    "## Best model on the test split", "## Time per stage"):
        assert section in report
    assert f"test accuracy {config['test_accuracy']:.1f}%" in report  # the exported (refitted) model's
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert {"ranking.png", "predicted_vs_measured.png", "optimization_history.png", "learning_curves.png",
            "confusion_matrix.png", "stage_times.png"} <= set(figures)
    for figure in figures:
        assert_png(run_dir / figure)

    test_folder = next((tmp_path / "cache" / "tasks").glob("digits-*")) / "test"
    predicted = subprocess.run([sys.executable, "-m", "automl.predict", f"model={run_dir / 'best'}",
                                f"images={test_folder}", f"out={tmp_path / 'predictions.csv'}"],
                               capture_output=True, text=True, env=_env(), timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    printed = float(re.search(r"accuracy: ([\d.]+)", predicted.stdout).group(1))
    assert printed == pytest.approx(config["test_accuracy"], abs=1e-4)  # printed with 4 decimals
    predictions = read_csv_rows(tmp_path / "predictions.csv")
    assert len(predictions) == len(list(test_folder.rglob("*.png")))
    correct = [Path(row["path"]).parent.name == row["label"] for row in predictions]
    assert 100 * np.mean(correct) == pytest.approx(config["test_accuracy"], rel=1e-12)


def test_multirun_over_two_tasks_gives_two_run_folders(small_demo_bank, tmp_path):
    sweep = tmp_path / "sweep"
    automl("-m", *base_overrides(small_demo_bank, tmp_path), *QUICK_FINETUNE, "task=digits,shapes",
           "finetune.top_k=1", "finetune.n_trials=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    runs = sorted(path for path in sweep.iterdir() if path.is_dir() and not path.name.startswith("."))
    assert [path.name for path in runs] == ["0_digits", "1_shapes"]
    for path in runs:
        assert len(read_csv_rows(path / "ranking.csv")) == 4
        assert len(read_csv_rows(path / "finetune.csv")) == 1 and (path / "best" / "model.safetensors").is_file()
        assert (path / "report.md").is_file()
