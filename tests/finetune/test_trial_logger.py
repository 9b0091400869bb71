"""Per-trial metrics for the tools people already use (issue 34.8): ``finetune.logger`` (CSV by default,
TensorBoard or MLflow when installed, or none) writes each trial's curves under ``<run>/trials/``."""

from __future__ import annotations

import csv
import importlib.util

import pytest
from conftest import write_random_bank

import automl
from automl.settings import SettingsError, compose, resolve


@pytest.mark.slow
def test_each_trial_writes_its_curves_as_csv_in_the_run_folder(tmp_path):
    bank = write_random_bank(tmp_path / "bank", {"tiny": ("test_resnet", {})}, num_classes=4)
    result = automl.fit("task=digits", f"bank.dir={bank}", "bank.build=null", f"cache_dir={tmp_path}/cache",
                        f"storage=sqlite:///{tmp_path}/automl.db", f"finetune.artifacts_dir={tmp_path}/artifacts",
                        "finetune.top_k=1", "finetune.n_trials=1", "finetune.refit=false", "stage=finetune",
                        "debug=quick", run_dir=tmp_path / "run")
    rows = list(csv.DictReader((result.run_dir / "trials" / "trial-0" / "metrics.csv").open()))
    val = [float(row["val_acc"]) for row in rows if row.get("val_acc")]
    losses = [row for row in rows if row.get("train_loss")]
    assert len(val) == result.trials[0].epochs == 2 and len(losses) >= 2
    assert val == pytest.approx(result.trials[0].val_curve, abs=1e-3)


@pytest.mark.parametrize(("kind", "package"), [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_logger_whose_package_is_missing_is_named(kind, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    with pytest.raises(SettingsError, match=rf"finetune.logger={kind} needs the {package} package"):
        resolve(compose([f"finetune.logger={kind}"]))
