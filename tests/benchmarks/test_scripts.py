"""The scripts under ``benchmarks/speed/`` and ``benchmarks/studies/``: every one imports and answers ``--help`` and bad arguments as the README
says (its settings and their defaults; an argument that is not key=value, or an unknown key, is an
error that names it), and the pieces of the result-reading scripts compute what their docstrings say
on small files written here. Their heavy runs (minutes to hours) are not tests."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_random_bank
from omegaconf.errors import ConfigKeyError

from automl.bank import create_model, load_bank
from automl.finetune.data import TaskDataModule
from automl.finetune.fit import fit_once
from automl.images.tasks import load_task
from automl.settings import BankSettings, FinetuneSettings, Hparams, compose, resolve
from benchmarks.metabench.tables import write_results_csv

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(f"{path.parent.name}.{path.stem}" for folder in ("speed", "studies")
                 for path in (BENCHMARKS / folder).glob("*.py") if not path.stem.startswith("_"))


def load(name: str):
    """The script's module (``name``: ``speed.<script>`` or ``studies.<script>``), as ``python -m
    benchmarks.<name>`` runs it."""
    return importlib.import_module(f"benchmarks.{name}")


def test_every_script_is_found():
    assert {"studies.feedback", "studies.brute_force_rerun", "speed.finetune", "speed.scores"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_help_lists_its_settings_and_bad_arguments_are_named(name, monkeypatch, capsys):
    script = load(name)
    monkeypatch.setattr(sys, "argv", [f"benchmarks/{name}.py", "--help"])
    with pytest.raises(SystemExit) as exited:
        script.main()
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(script.__doc__.strip().splitlines()[0]) and "Settings (key=value) and their defaults:" in text
    monkeypatch.setattr(sys, "argv", [f"benchmarks/{name}.py", "no_equals_sign"])
    with pytest.raises(SystemExit, match=r"key=value.*no_equals_sign"):
        script.main()
    monkeypatch.setattr(sys, "argv", [f"benchmarks/{name}.py", "not_a_setting=1"])
    with pytest.raises(ConfigKeyError, match="not_a_setting"):
        script.main()


def test_feedback_metrics_of_a_ranking_against_the_oracle(tmp_path, monkeypatch):
    feedback = load("studies.feedback")
    write_results_csv(tmp_path / "ranking.csv", [
        {"model": "a", "predicted_accuracy": 80.0, "predicted_low": 70.0, "predicted_high": 90.0},
        {"model": "b", "predicted_accuracy": 60.0, "predicted_low": 55.0, "predicted_high": 65.0},
        {"model": "c", "predicted_accuracy": 40.0, "predicted_low": 30.0, "predicted_high": 45.0}])
    oracle = {"a": 70.0, "b": 75.0, "c": 50.0}  # b is best; a, ranked first, is 5 below; c is outside its interval
    mae, cover, regret, pearson = feedback.ranking_metrics(tmp_path / "ranking.csv", oracle)
    assert mae == pytest.approx((10 + 15 + 10) / 3) and cover == pytest.approx(100 / 3)
    assert regret == pytest.approx(5.0)
    assert pearson == pytest.approx(100 * np.corrcoef([80, 60, 40], [70, 75, 50])[0, 1])


def test_brute_force_rerun_reads_every_end_to_end_csv_under_a_run_folder(tmp_path, monkeypatch):
    rerun = load("studies.brute_force_rerun")
    run = tmp_path / "e2e"  # one benchmark run as two processes, one subfolder each
    write_results_csv(run / "part1" / "end_to_end.csv", [{"bank": "classic", "target": "fonts", "pipeline_test": 81.5}])
    write_results_csv(run / "part2" / "end_to_end.csv", [{"bank": "rough", "target": "fonts", "pipeline_test": 64.0},
                                                         {"bank": "rough", "target": "scenes", "pipeline_test": 70.25}])
    other = tmp_path / "seed2"
    write_results_csv(other / "end_to_end.csv", [{"bank": "classic", "target": "fonts", "pipeline_test": 79.0}])
    assert rerun.pipeline_accuracies([str(run), str(other)]) == {
        str(run): {("classic", "fonts"): 81.5, ("rough", "fonts"): 64.0, ("rough", "scenes"): 70.25},
        str(other): {("classic", "fonts"): 79.0}}


def test_weight_averages_follow_the_fit_at_their_half_life_and_validate_as_the_module_does(tmp_path, monkeypatch):
    averaging = load("studies.weight_averaging")
    bank = list(load_bank(BankSettings(dir=str(write_random_bank(tmp_path / "bank", {"resnet": ("test_resnet", {})},
                                                                     num_classes=10)), build=None), tmp_path))
    task = load_task(resolve(compose([f"cache_dir={tmp_path / 'cache'}"])).task, tmp_path / "cache")
    short, long = 0.01, 100.0  # shares of the run's 6 steps: a half-life of 1 step (the floor), and of 600
    averages = averaging.Averages([short, long])
    hparams = dataclasses.replace(Hparams(), lr=3e-3, strategy="full", batch_size=32, epochs=2, warmup_epochs=0,
                                  mixup=0.0, cutmix=0.0)
    settings = FinetuneSettings(limit_train_batches=3, progress_bar=False, num_workers=0, channels_last=False)
    result = fit_once(bank[0], task, hparams, settings, callbacks=[averages])
    plain = fit_once(bank[0], task, hparams, settings)  # watching must not change the fit (no random draws)
    assert plain.val_curve == result.val_curve and plain.test_accuracy == result.test_accuracy

    distance = {h: sum(float((averages.last[h][key].float() - value.float()).norm())
                       for key, value in averages.raw_last.items()) for h in (short, long)}
    assert distance[short] < distance[long] / 3  # the short average follows the raw weights, the long lags
    assert all(0 <= averages.last_val[h] <= averages.best_val[h] <= 100 for h in (short, long))

    # The benchmark's own scoring of a state agrees with the module's validation and with the fit's test accuracy.
    model = create_model(bank[0], num_classes=task.num_classes)
    datamodule = TaskDataModule(task, result.data_config, 32, num_workers=0)
    model.load_state_dict(averages.raw_last)
    assert averaging.split_accuracy(model, datamodule, "val") == pytest.approx(result.val_curve[-1])
    model.load_state_dict(result.best_state)
    assert averaging.split_accuracy(model, datamodule, "test") == pytest.approx(result.test_accuracy)
