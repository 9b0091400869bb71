"""One command, one worker process per device (issue 35.3): ``finetune.devices=N`` on the CPU starts N workers
on the one study, which is the test here of what a machine with N GPUs runs (one worker pinned to each)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO, quick_overrides, write_random_bank
from optuna.trial import TrialState

from automl._storage import storage_url
from automl.errors import AutomlError
from automl.finetune.attrs import DEVICE, REFIT, WORKER
from automl.finetune.budget import counts
from automl.finetune.space import SearchSpace
from automl.finetune.workers import Worker, WorkerError, _pinned, _portable, run_workers, worker_devices
from automl.images.tasks import load_task
from automl.settings import FinetuneSettings, SettingsError, compose, resolve

pytestmark = pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning")  # Lightning's


# ------------------------------------------------------------------------------------------ the setting
def test_devices_setting_is_checked_and_names_the_setting():
    for value in (0, [], [0, 0], [-1], [1.5], [True], "all", True):
        with pytest.raises(SettingsError, match=r"finetune\.devices"):
            FinetuneSettings(devices=value)
    for value in (1, 4, "auto", [0, 2]):
        assert FinetuneSettings(devices=value).devices == value
    assert resolve(compose(["finetune.devices=[0,1]"])).finetune.devices == [0, 1]


def test_workers_per_device(monkeypatch):
    assert worker_devices(1, "cpu") == ["cpu"] and worker_devices("auto", "cpu") == ["cpu"]
    assert worker_devices(3, "cpu") == ["cpu"] * 3
    assert worker_devices(1, "cuda:1") == ["cuda:1"]
    with pytest.raises(AutomlError, match=r"finetune.devices=\[0, 1\] lists GPUs, and device=cpu has none"):
        worker_devices([0, 1], "cpu")
    with pytest.raises(AutomlError, match="device=mps"):
        worker_devices(2, "mps")
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert worker_devices("auto", "cuda") == [f"cuda:{i}" for i in range(4)]
    assert worker_devices(2, "cuda") == ["cuda:0", "cuda:1"] and worker_devices([3, 1], "cuda") == ["cuda:3", "cuda:1"]
    with pytest.raises(AutomlError, match=r"finetune.devices=\[4\]: this machine has 4 visible GPU"):
        worker_devices([4], "cuda")


def test_a_gpu_worker_sees_only_its_gpu(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with _pinned("cuda:1"):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the i-th GPU this process sees
    with _pinned("cuda:1"):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    with _pinned("cpu"):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"


def test_a_workers_exception_travels_to_the_parent():
    assert isinstance(_portable(AutomlError("storage=x: cannot open")), AutomlError)

    class Unpicklable(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a} {b}")

    carried = _portable(Unpicklable(1, 2))
    assert isinstance(carried, WorkerError) and str(carried) == "Unpicklable: 1 2"


# ------------------------------------------------------------------------------------- real processes
@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    return write_random_bank(tmp_path_factory.mktemp("devices") / "bank",
                             {"effnet_a": ("test_efficientnet", {}), "convnext_a": ("test_convnext", {})}, 5)


def command(bank: Path, work: Path, *extra: str) -> list[str]:
    """``python -m automl stage=finetune`` of the quick run with two CPU workers; trials of 6 epochs, so that
    neither worker can run the whole budget before the other has started."""
    return [sys.executable, "-m", "automl", "stage=finetune", f"hydra.run.dir={work / 'run'}",
            *quick_overrides(bank, work, "finetune.devices=2", "finetune.top_k=2", "finetune.max_epochs=6",
                             "finetune.default_hparams.epochs=6", "finetune.pruner=none", "finetune.num_workers=0",
                             *extra)]


def start(args: list[str], log: Path) -> subprocess.Popen:
    # SIGINT at its default even where the test runner inherited it ignored (a background CI job)
    return subprocess.Popen(args, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def study_of(work: Path) -> optuna.Study:
    url = storage_url(f"sqlite:///{work}/automl.db")
    (name,) = optuna.get_all_study_names(url)
    return optuna.load_study(study_name=name, storage=url)


@pytest.mark.slow
def test_two_cpu_workers_from_one_command_share_an_exact_budget(bank, tmp_path):
    log = tmp_path / "run.log"
    assert start(command(bank, tmp_path, "finetune.n_trials=4"), log).wait(timeout=600) == 0, log.read_text()[-4000:]
    study = study_of(tmp_path)
    counted = [t for t in study.trials if counts(t)]
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in counted)
    assert len({t.user_attrs[WORKER] for t in counted}) == 2  # both workers trained
    assert {t.user_attrs[DEVICE] for t in counted} == {"cpu"}
    assert study.user_attrs[REFIT]["trial"] in [t.number for t in counted]  # refitted once, by the parent
    rows = (tmp_path / "run" / "finetune.csv").read_text().splitlines()[1:]
    assert len(rows) == 4 and (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert "2 workers on cpu, cpu, 1 torch thread(s) each" in log.read_text()


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_exits_130_and_the_rerun_resumes(bank, tmp_path):
    args = command(bank, tmp_path, "finetune.n_trials=2", "finetune.max_epochs=16",
                   "finetune.default_hparams.epochs=16", "finetune.warm_start=false")
    parent = start(args, tmp_path / "first.log")
    deadline = time.monotonic() + 300
    while True:  # Ctrl-C once both workers are inside a fit (each has validated an epoch)
        assert parent.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
        try:
            trials = study_of(tmp_path).trials
        except (KeyError, ValueError):  # the study (or its tables) does not exist yet
            trials = []
        if sum(t.state == TrialState.RUNNING and bool(t.intermediate_values) for t in trials) == 2:
            break
        time.sleep(0.2)
    parent.send_signal(signal.SIGINT)  # to the parent only, as a terminal's Ctrl-C reaches it (workers have their own group)
    assert parent.wait(timeout=180) == 130, (tmp_path / "first.log").read_text()[-3000:]
    trials = study_of(tmp_path).trials
    workers = {int(t.user_attrs[WORKER].rsplit(":", 1)[1]) for t in trials if t.state == TrialState.FAIL}
    assert len(workers) == 2 and not any(Path(f"/proc/{pid}").exists() for pid in workers)  # both stopped
    assert [t.state for t in trials].count(TrialState.WAITING) == 2  # both trials re-queued
    assert "rerun the same command to resume" in (tmp_path / "first.log").read_text()

    rerun = start(args, tmp_path / "second.log")
    assert rerun.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    trials = study_of(tmp_path).trials
    assert sum(counts(t) for t in trials) == 2 and not any(t.state == TrialState.WAITING for t in trials)
    interrupted = [t.params for t in trials if t.state == TrialState.FAIL]
    assert sorted(map(str, interrupted)) == sorted(str(t.params) for t in trials if t.state == TrialState.COMPLETE)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_worker_that_fails_is_the_commands_error(bank, tmp_path):
    settings = resolve(compose(quick_overrides(bank, tmp_path, "finetune.top_k=2")))
    task = load_task(settings.task, settings.cache_dir)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/ok.db")
    (tmp_path / "file").write_text("not a folder")
    worker = Worker(task, [], SearchSpace({}, ["m"]), settings.finetune, f"sqlite:///{tmp_path}/file/db.sqlite",
                    "s", 0, tmp_path / "run", tmp_path / "artifacts")
    with pytest.raises(WorkerError, match=r"the finetune worker on cpu failed: .*Error"):
        run_workers(study, worker, ["cpu", "cpu"])
