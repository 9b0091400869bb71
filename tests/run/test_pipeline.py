"""``python -m automl`` end to end as a user runs it (a single run and a Hydra multirun) on builtin tasks with a
small demo bank, in the quick setting (``debug=quick``): the ranking, the trials, the exported model, the
report and its figures, and ``python -m automl.predict`` reproducing the exported model's test accuracy."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, quick_overrides
from PIL import Image

from automl._fileio import read_csv_rows
from automl.transferability import available

pytestmark = [pytest.mark.slow,  # every test here runs python -m automl end to end
              pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning"),  # Lightning's
              pytest.mark.filterwarnings("ignore::UserWarning")]


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
    result = automl(*quick_overrides(small_demo_bank, tmp_path), "task=digits", "finetune.top_k=2",
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
    automl("-m", *quick_overrides(small_demo_bank, tmp_path), "task=digits,shapes",
           "finetune.top_k=1", "finetune.n_trials=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    runs = sorted(path for path in sweep.iterdir() if path.is_dir() and not path.name.startswith("."))
    assert [path.name for path in runs] == ["0_digits", "1_shapes"]
    for path in runs:
        assert len(read_csv_rows(path / "ranking.csv")) == 4
        assert len(read_csv_rows(path / "finetune.csv")) == 1 and (path / "best" / "model.safetensors").is_file()
        assert (path / "report.md").is_file()
