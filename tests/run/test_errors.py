"""Failures a person can read (issue 11): a user error is one line and a hint, also kept in the run's log;
settings are checked before any work; a run whose every trial failed exits non-zero and says why."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO, automl_command, quick_overrides, run_pipeline, write_random_bank

from automl.run.stages import NothingExported

pytestmark = [pytest.mark.slow,  # every test here runs a command or the pipeline
              pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning"),  # Lightning's
              pytest.mark.filterwarnings("ignore::UserWarning")]


def test_a_run_whose_every_trial_failed_exits_non_zero_and_says_why(tmp_path):
    bank = write_random_bank(tmp_path / "bank", {"convnext": ("test_convnext", {})}, num_classes=4)
    args = quick_overrides(bank, tmp_path, "task=shapes", "finetune.top_k=1", "finetune.n_trials=1",
                     "~search_space.lr", "finetune.default_hparams.lr=1e9",
                     "finetune.default_hparams.optimizer=sgd",
                     "finetune.default_hparams.label_smoothing=0", f"hydra.run.dir={tmp_path / 'run'}")
    result = automl_command(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-2000:]
    assert "no trial completed, so nothing was exported" in result.stderr and "NonFiniteLossError" in result.stderr
    assert not (tmp_path / "run" / "best").exists()
    # the run made something (its ranking, its trials): its folder stays, and its log keeps the fatal error
    assert "no trial completed" in (tmp_path / "run" / "automl.log").read_text()
    with pytest.raises(NothingExported):
        run_pipeline(args[:-1], tmp_path / "in-process")


# ------------------------------------------------------------------------------ errors a person can read
@pytest.mark.parametrize(("args", "message"), [
    (["task.root=/no/such/folder"], "task.root /no/such/folder is not a folder"),
    (["rank.scores=[parc,bogus]"], "unknown score(s) ['bogus']"),
    (["task.val_fraction=0.9"], "task.val_fraction=0.9 + task.test_fraction=0.15 must be below 1"),
    (["storage=postgresql://nobody@127.0.0.1:1/none"], "nobody@127.0.0.1:1/none: cannot open the database"),
])
def test_a_user_error_is_one_line_and_a_hint_and_leaves_no_empty_run_folder(tmp_path, args, message):
    run_dir = tmp_path / "run"
    result = automl_command(*args, f"cache_dir={tmp_path}/cache", f"storage=sqlite:///{tmp_path}/a.db", *args,
                    "stage=rank", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "--help" in lines[1] and "Traceback" not in result.stderr
    assert not run_dir.exists()  # stopped before it made anything: no folder of Hydra's bookkeeping left over
    debug = subprocess.run([sys.executable, "-m", "automl", *args, f"cache_dir={tmp_path}/cache", "stage=rank",
                            f"hydra.run.dir={run_dir}"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(REPO), "AUTOML_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_the_search_space_is_checked_before_anything_is_ranked(small_demo_bank, tmp_path):
    with pytest.raises(ValueError, match=r"search_space\.lr: .*low and high are required"):
        run_pipeline(quick_overrides(small_demo_bank, tmp_path, "task=shapes",
                      "~search_space.lr.low"), tmp_path / "run")
    assert not (tmp_path / "cache" / "features").exists()  # failed before any feature was extracted
