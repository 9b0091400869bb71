"""The Python API (``import automl``): the same pipeline as the command line, the same errors, and exported
models that predict from Python."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_random_bank

import automl
from automl import AutomlError

REPO = Path(__file__).resolve().parent.parent
MODELS = {"tiny_resnet": ("test_resnet", {}), "tiny_effnet": ("test_efficientnet", {})}


def test_the_api_is_small_and_documented():
    assert sorted(automl.__all__) == ["AutomlError", "Model", "Result", "__version__", "fit", "load", "overrides_of"]
    for name in ("fit", "load", "Model", "Result"):
        assert getattr(automl, name).__doc__


def test_keyword_settings_become_the_command_lines_overrides():
    assert automl.overrides_of({"task": "digits", "finetune": {"n_trials": 8, "refit": False},
                                "task.root": "/data/my photos", "rank": {"scores": ["parc", "knn"]},
                                "seed": 3, "finetune.time_budget_min": None}) == [
        "task=digits", "finetune.n_trials=8", "finetune.refit=false", "task.root='/data/my photos'",
        "rank.scores=[parc,knn]", "seed=3", "finetune.time_budget_min=null"]


def _cli_error(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "automl", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert done.returncode == 2, done.stderr
    return done.stderr.splitlines()[0].removeprefix("error: ")


@pytest.mark.slow  # a command-line subprocess per case
@pytest.mark.parametrize(("settings", "args"), [
    ({"task": {"root": "/no/such/folder"}, "stage": "rank"}, ["task.root=/no/such/folder", "stage=rank"]),
    ({"finetune": {"n_trials": 0}}, ["finetune.n_trials=0"]),
    ({"rank": {"scores": ["parc", "bogus"]}}, ["rank.scores=[parc,bogus]"]),
])
def test_bad_input_raises_the_command_lines_one_line_message(settings, args, tmp_path):
    work = [f"cache_dir={tmp_path}/cache", f"storage=sqlite:///{tmp_path}/automl.db"]
    with pytest.raises(AutomlError) as raised:
        automl.fit(*work, run_dir=tmp_path / "run", **settings)
    assert str(raised.value) == _cli_error(*work, *args, f"hydra.run.dir={tmp_path}/cli")


def _run_files(run_dir: Path) -> dict:
    """What a run decided: its ranking, its trials (not their wall times) and the exported weights."""
    with (run_dir / "finetune.csv").open() as handle:
        trials = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]
    return {"ranking": (run_dir / "ranking.csv").read_text(), "trials": trials,
            "weights": hashlib.sha256((run_dir / "best" / "model.safetensors").read_bytes()).hexdigest()}


@pytest.mark.slow
def test_fit_gives_what_the_command_line_gives_and_its_model_predicts(tmp_path):
    bank = write_random_bank(tmp_path / "bank", MODELS, num_classes=4)

    def settings(work: Path) -> list[str]:
        return ["task=digits", f"bank.dir={bank}", "bank.build=null", f"cache_dir={work}/cache",
                f"storage=sqlite:///{work}/automl.db", f"finetune.artifacts_dir={work}/artifacts",
                "finetune.top_k=2", "finetune.n_trials=2", "debug=quick"]

    # the same machine settings on both sides: the command in a process with this process's torch threads
    cli = subprocess.run([sys.executable, "-m", "automl", *settings(tmp_path / "cli"),
                          f"hydra.run.dir={tmp_path}/cli/run"], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert cli.returncode == 0, cli.stderr[-3000:]
    result = automl.fit(*settings(tmp_path / "api"), run_dir=tmp_path / "api" / "run")
    assert _run_files(result.run_dir) == _run_files(tmp_path / "cli" / "run")
    assert (result.run_dir / "automl.log").is_file() and (tmp_path / "cli" / "run" / "automl.log").is_file()

    assert [m.name for m in result.ranking.models] == [row.split(",")[1] for row in
                                                      (result.run_dir / "ranking.csv").read_text().splitlines()[1:]]
    assert len(result.trials) == 2 and result.best_dir == result.run_dir / "best"
    assert result.best_model in MODELS and 0 <= result.test_accuracy <= 100

    model = automl.load(result.best_dir)
    assert model.classes == [str(digit) for digit in range(10)]
    predictions = model.predict(result.best_dir / "test.csv")
    assert predictions.accuracy == pytest.approx(result.test_accuracy)
    assert predictions.probabilities.shape == (len(predictions.paths), 10)
    top = predictions.top_k(3)
    assert all(len(row) == 3 and row[0][0] == label and row[0][1] >= row[1][1] >= row[2][1]
               for row, label in zip(top, predictions.labels, strict=True))
    assert np.allclose(predictions.probabilities.sum(axis=1), 1, atol=1e-5)
    one = model.predict([predictions.paths[0]])
    assert one.labels == predictions.labels[:1] and one.accuracy is None
