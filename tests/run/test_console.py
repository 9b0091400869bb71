"""What a person sees on the console (issue 34.5): one line per trial and the stages, no library chatter,
per-epoch detail in the run's log only; a run stopped by bad input leaves no folder; Ctrl-C with the
console piped into a process the same Ctrl-C ended (``2>&1 | tee``) still exits 130 with the message in
the run's log."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import quick_overrides, write_random_bank

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def automl(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automl", *args], capture_output=True, text=True, timeout=900,
                          cwd=REPO, **kwargs)


def test_bad_input_leaves_no_run_folder(tmp_path):
    done = automl("task.root=/no/such/folder", "stage=rank", f"cache_dir={tmp_path}/cache",
                  f"storage=sqlite:///{tmp_path}/automl.db", f"hydra.run.dir={tmp_path}/run")
    assert done.returncode == 2 and "error: task.root /no/such/folder is not a folder" in done.stderr
    assert not (tmp_path / "run").exists()


def test_the_console_shows_trials_not_epochs_and_no_library_chatter(tmp_path):
    bank = write_random_bank(tmp_path / "bank", {"tiny_resnet": ("test_resnet", {}), "tiny_effnet":
                                                 ("test_efficientnet", {})}, num_classes=4)
    args = quick_overrides(bank, tmp_path, "task=digits", "finetune.top_k=2", "finetune.n_trials=2",
                           "finetune.progress_bar=true")
    first = automl(*args, f"hydra.run.dir={tmp_path}/first")
    assert first.returncode == 0, first.stderr[-3000:]
    # a new study on the same task: the history's best configurations are enqueued again (warm start)
    second = automl(*args, "finetune.study=again", f"hydra.run.dir={tmp_path}/second")
    assert second.returncode == 0, second.stderr[-3000:]
    for run in (first, second):
        console = run.stdout + run.stderr
        assert "Skipping enqueue" not in console and "failed with value" not in console
        assert "epoch 1/2" not in console and "GPU available" not in console and "Tip:" not in console
        assert "budget 2 trials" in console and "None min" not in console
        assert console.count(" COMPLETE ") + console.count(" PRUNED ") >= 2  # one line per trial
    log = (tmp_path / "second" / "automl.log").read_text()
    assert "epoch 1/2" in log and "epoch 2/2" in log  # the detail is in the run's log


def test_ctrl_c_into_a_closed_pipe_exits_130_and_the_log_keeps_the_message(tmp_path):
    bank = write_random_bank(tmp_path / "bank", {"tiny_resnet": ("test_resnet", {})}, num_classes=4)
    args = quick_overrides(bank, tmp_path, "task=digits", "finetune.top_k=1", "finetune.n_trials=1",
                           "finetune.max_epochs=30", "finetune.default_hparams.epochs=30", "stage=finetune",
                           f"hydra.run.dir={tmp_path}/run")
    worker = subprocess.Popen([sys.executable, "-m", "automl", *args], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    url = f"sqlite:///{tmp_path}/automl.db"
    deadline = time.monotonic() + 300
    while True:  # until the trial has trained an epoch
        assert worker.poll() is None and time.monotonic() < deadline
        try:
            trials = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url).trials
        except (IndexError, KeyError, ValueError, RuntimeError):
            trials = []
        if trials and trials[0].intermediate_values:
            break
        time.sleep(0.2)
    worker.stdout.close()  # what `| tee` does when the same Ctrl-C ends it
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=120) == 130
    assert "interrupted" in (tmp_path / "run" / "automl.log").read_text()
