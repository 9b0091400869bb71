"""The finetune stage with real tiny fits: builtin digits at 32 px, tiny timm models with random weights
saved as a local bank, a few batches per epoch. Workers run as real processes for the kill/concurrency tests."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import optuna
import pytest
import timm
import torch
from conftest import REPO, quick_overrides, run_cli, write_random_bank
from optuna.trial import TrialState

from automl._storage import storage_url
from automl.bank import BankEntry, load_bank
from automl.deploy.exported import read_config
from automl.finetune import load_outcome, run_finetune
from automl.finetune.budget import Budget, OverBudget, counts
from automl.finetune.fit import fit_once
from automl.finetune.module import FinetuneModule, backbone_blocks, build_optimizer, cpu_state, freeze
from automl.finetune.space import SearchSpace
from automl.finetune.study import join_study, open_storage
from automl.images.tasks import load_task
from automl.predict import main as predict_main
from automl.settings import FinetuneSettings, Hparams, SettingsError, compose, resolve

pytestmark = pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning")  # Lightning's

MODELS = {"effnet_a": ("test_efficientnet", {}), "convnext_a": ("test_convnext", {})}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    """A 2-model bank (random init, 5-class heads, 32 px input) and a cache with digits materialized."""
    root = tmp_path_factory.mktemp("finetune")
    bank = write_random_bank(root / "bank", MODELS, num_classes=5)
    cache = root / "cache"
    load_task(resolve(compose([f"cache_dir={cache}"])).task, cache)  # materialize digits once for every worker
    return {"bank": bank, "cache": cache}


def overrides(env: dict[str, Path], work: Path, n_trials: int, *extra: str) -> list[str]:
    """A tiny search: the quick run's 2 epochs of 2 batches per trial (``debug=quick``: on the CPU with one
    thread, robust when processes share the cores), of 32 images, with the module's bank and cache and the
    state under ``work``."""
    return quick_overrides(env["bank"], work, f"finetune.n_trials={n_trials}", "finetune.top_k=2",
                           "finetune.default_hparams.batch_size=32", "finetune.num_workers=0", *extra,
                           cache=env["cache"])


def setup(env: dict[str, Path], args: list[str]):
    settings = resolve(compose(args))
    return settings, load_task(settings.task, settings.cache_dir), list(load_bank(settings.bank, settings.cache_dir))


def search(settings, task, bank, run_dir: Path, **kwargs):
    """``run_finetune`` with the run's settings, as the finetune stage calls it."""
    return run_finetune(task, bank, settings.finetune, settings.search_space, storage=settings.storage,
                        device=settings.device, seed=settings.seed, run_dir=run_dir,
                        study=settings.finetune.study or "search", **kwargs)


def load(settings) -> optuna.Study:
    url = storage_url(str(settings.storage))
    (name,) = optuna.get_all_study_names(url) if settings.finetune.study is None else (settings.finetune.study,)
    return optuna.load_study(study_name=name, storage=url)


def hparams(**changes) -> Hparams:
    values = dict(lr=1e-3, weight_decay=0.05, optimizer="adamw", strategy="full", freeze_fraction=0.5,
                  layer_decay=1.0, label_smoothing=0.1, mixup=0.0, cutmix=0.0, batch_size=8, epochs=2,
                  warmup_epochs=1)
    return Hparams.from_mapping({**values, **changes})


# ------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("arch, kwargs", [("test_resnet", {}), ("test_convnext", {}),
                                          ("test_vit", {"img_size": 32, "patch_size": 4})])
def test_strategies_freeze_what_they_say(arch, kwargs):
    model = timm.create_model(arch, num_classes=3, **kwargs)
    names = [name for name, _ in model.named_parameters()]
    head = {name for name, p in model.named_parameters() if any(p is q for q in model.get_classifier().parameters())}

    assert freeze(model, "full") == []
    assert all(p.requires_grad for p in model.parameters())

    frozen = freeze(model, "linear_probe")
    assert set(frozen) == set(names) - head
    assert {n for n, p in model.named_parameters() if p.requires_grad} == head

    blocks = backbone_blocks(model)
    frozen = freeze(model, "partial", 0.5)
    expected = {name for block in blocks[: len(blocks) // 2] for name in block}
    assert set(frozen) == expected and expected
    assert blocks[0][0] in frozen and blocks[-1][0] not in frozen and not head & set(frozen)

    module = FinetuneModule(model, 3, hparams(strategy="partial", freeze_fraction=1.0)).train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(not m.training for m in norms)  # frozen BN keeps its statistics
    assert module.model.get_classifier().training


def test_channels_last_trains_the_same_function_and_keeps_a_standard_state():
    torch.manual_seed(0)
    standard = timm.create_model("test_resnet", num_classes=3).eval()
    nhwc = timm.create_model("test_resnet", num_classes=3)
    nhwc.load_state_dict(standard.state_dict())
    module = FinetuneModule(nhwc, 3, hparams(), channels_last=True).eval()
    conv = next(p for p in module.model.parameters() if p.ndim == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(module(images), standard(images), atol=1e-4, rtol=1e-4)
    state = cpu_state(module.model)  # what the trial keeps and safetensors saves
    assert all(value.is_contiguous() for value in state.values())
    torch.testing.assert_close(state, standard.state_dict())


def test_layer_decay_scales_the_group_learning_rates():
    model = timm.create_model("test_convnext", num_classes=3)
    optimizer, scheduler = build_optimizer(model, hparams(layer_decay=0.5, lr=1e-2), total_steps=10)
    for _ in range(5):  # past the 5-step warmup: every group at lr * lr_scale * cosine(0)
        optimizer.step()
        scheduler.step()
    scales = [group["lr_scale"] for group in optimizer.param_groups]
    assert min(scales) < 0.01 and max(scales) == 1.0
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(1e-2 * group["lr_scale"])
    lrs = {round(group["lr"], 12) for group in optimizer.param_groups}
    assert len(lrs) > 5  # not one shared learning rate

    optimizer, _ = build_optimizer(model, hparams(layer_decay=1.0), total_steps=10)
    assert len({group["lr"] for group in optimizer.param_groups}) == 1


def test_hparams_and_search_space_errors_name_the_field():
    with pytest.raises(SettingsError, match="strategy='half'"):
        hparams(strategy="half")
    with pytest.raises(SettingsError, match=r"layer_decay=1\.5"):
        hparams(layer_decay=1.5)
    with pytest.raises(SettingsError, match="unknown hyperparameter"):
        Hparams.from_mapping({**hparams().as_dict(), "momentum": 0.9})
    with pytest.raises(SettingsError, match=r"search_space\.lr"):
        SearchSpace({"lr": {"type": "float", "low": 1e-3}}, ["m"])
    with pytest.raises(SettingsError, match=r"search_space\.dropout"):
        SearchSpace({"dropout": 0.1}, ["m"])
    with pytest.raises(SettingsError, match=r"finetune.default_hparams.epochs=9 exceeds finetune.max_epochs=6"):
        resolve(compose(["finetune.max_epochs=6", "finetune.default_hparams.epochs=9"]))


# ------------------------------------------------------------------------------------------- budget
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # trials made by hand, outside Study.optimize
def test_budget_admission_is_exact_when_trials_race(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/b.db",
                           FinetuneSettings(heartbeat_interval=1, grace_period=5, max_retry=0))
    study = optuna.create_study(storage=storage)
    budget = Budget(n_trials=2, deadline=None, poll_s=0.05)
    done = study.ask()
    study.tell(done, 1.0)  # 1 counted
    first, second = study.ask(), study.ask()  # race for the last slot, neither admitted yet
    result = {}
    # `first` sees `second` undecided and waits for it; `second` sees the lower-numbered `first` as ahead
    thread = threading.Thread(target=lambda: result.setdefault("first", budget.admit(study, first) or "ok"))
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()
    with pytest.raises(OverBudget):
        budget.admit(study, second)
    study.tell(second, state=TrialState.FAIL)
    thread.join(10)
    assert result == {"first": "ok"}
    assert not counts(study.trials[second.number])
    late = study.ask()
    with pytest.raises(OverBudget):  # `first` is admitted: a trial started now is over budget
        budget.admit(study, late)
    study.tell(late, state=TrialState.FAIL)
    study.tell(first, 2.0)
    assert budget.wait_for_slot(study) is False  # 2 counted: this worker stops
    assert sum(counts(t) for t in study.trials) == 2


def test_a_worker_joining_a_study_being_set_up_waits_for_its_candidates(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/j.db", FinetuneSettings())
    study = optuna.create_study(study_name="s", storage=storage)  # created; its creator still writing attrs
    bank = {name: BankEntry(name, "test_resnet", "timm", 0) for name in ("a", "b", "c")}
    space = {"lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True}}

    def creator() -> None:
        time.sleep(0.5)
        study.set_user_attr("search_space", space)
        study.set_user_attr("candidates", ["b", "c"])

    thread = threading.Thread(target=creator)
    thread.start()
    joined = join_study(optuna.load_study(study_name="s", storage=storage), [bank["a"]], bank, space)
    thread.join()
    assert [entry.name for entry in joined] == ["b", "c"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage", "ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed_and_retried(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db", FinetuneSettings(heartbeat_interval=1, grace_period=2))
    study = optuna.create_study(storage=storage)
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # RUNNING, never a heartbeat
    budget = Budget(n_trials=1, deadline=None, poll_s=0.05, grace_period=2)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == TrialState.RUNNING  # Optuna alone never judges it
    assert budget.wait_for_slot(study)  # it may run: nothing counted, the orphan is not counted
    deadline = time.monotonic() + 30
    while study.trials[0].state == TrialState.RUNNING and time.monotonic() < deadline:
        budget.stale.fail(study)
        time.sleep(0.2)
    trials = study.trials
    assert trials[0].state == TrialState.FAIL and not counts(trials[0])
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING and retry[0].params == orphan.params


class _CtrlC(pl.Callback):
    """Ctrl-C as Python delivers it: a KeyboardInterrupt raised wherever the training loop is."""

    def on_train_batch_end(self, *args) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_in_a_fit_stays_a_keyboard_interrupt_and_ctrl_c_keeps_working(env, tmp_path):
    _, task, bank = setup(env, overrides(env, tmp_path, 1))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even when run in
    try:  # the background; Lightning alone raises SystemExit(1) and leaves SIGINT ignored
        with pytest.raises(KeyboardInterrupt):
            fit_once(bank[0], task, hparams(batch_size=32), FinetuneSettings(limit_train_batches=2),
                     callbacks=[_CtrlC()])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_planned_epochs_shrink_slower_than_the_data_grows():
    settings = FinetuneSettings()  # 30 epochs meant for up to 2000 training images
    assert [settings.planned_epochs(n) for n in (100, 2000, 8000, 56_000, 10**8)] == [30, 30, 15, 6, 3]
    steps = [n * settings.planned_epochs(n) for n in (2000, 8000, 56_000)]
    assert steps == sorted(steps)  # more data: fewer epochs, yet more images seen
    assert FinetuneSettings(epochs_for_images=None).planned_epochs(10**6) == 30


@pytest.mark.slow
def test_refit_trains_on_train_and_val_for_the_planned_epochs(env, tmp_path):
    _, task, bank = setup(env, overrides(env, tmp_path, 1))
    settings = FinetuneSettings(progress_bar=False)
    searched = fit_once(bank[0], task, hparams(epochs=2, batch_size=64), settings)
    refitted = fit_once(bank[0], task, hparams(epochs=2, batch_size=64), settings, refit=True)
    n_train, n_val = len(task.splits["train"]), len(task.splits["val"])
    assert searched.train_images == 2 * n_train and refitted.train_images == 2 * (n_train + n_val)
    assert refitted.epochs == 2 and np.isnan(refitted.val_accuracy) and refitted.val_curve == []
    assert refitted.test_predictions.shape == (len(task.splits["test"]),) and 0 <= refitted.test_accuracy <= 100


# ------------------------------------------------------------------------------- search in process
def test_search_fails_a_nan_trial_exports_best_and_predict_reproduces_it(env, tmp_path, capsys):
    # Trials 0, 1: the per-model defaults; trial 2: a history warm start with an absurd learning rate.
    lr_choices = "+search_space.lr={type: categorical, choices: [3.0e-3, 1.0e+9]}"
    args = overrides(env, tmp_path, 3, "~search_space.lr", lr_choices,
                     "+search_space.optimizer={type: categorical, choices: [adamw, sgd]}")
    settings, task, bank = setup(env, args)
    reported = []
    warm = [{"model": "convnext_a", "lr": 1.0e9, "optimizer": "sgd", "strategy": "full", "mixup": 0.0}]
    outcome = search(settings, task, bank, tmp_path / "run", warm=warm, on_trial_finished=reported.append)

    states = [r.state for r in outcome.trials]
    assert [r.model for r in outcome.trials] == ["effnet_a", "convnext_a", "convnext_a"]
    assert states[2] == "FAIL" and "NonFiniteLossError" in outcome.trials[2].fail_reason
    assert outcome.n_counted == 3 and [r.number for r in reported] == [0, 1, 2]
    rows = (tmp_path / "run" / "finetune.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["trial", "model", "state", "lr"] and len(rows) == 4
    header = rows[0].split(",")
    assert header[-7:] == ["val_accuracy", "test_accuracy", "epochs", "seconds", "train_images", "train_gflop",
                           "stopped"] and len(set(header)) == len(header)
    compute = list(csv.DictReader(rows))
    assert all(int(row["train_images"]) > 0 and float(row["train_gflop"]) > 0 for row in compute[:2])
    assert compute[2]["stopped"].startswith("failed")

    best = outcome.best
    assert best.state == "COMPLETE" and 0 <= best.test_accuracy <= 100 and best.weights.is_file()
    config = read_config(outcome.best_dir)
    # Exported: the best trial's configuration refitted on train + val (finetune.refit, on by default).
    assert outcome.refit.trial == best.number and outcome.refit.epochs == best.hparams["epochs"]
    assert config["test_accuracy"] == outcome.test_accuracy == outcome.refit.test_accuracy
    assert config["refit"]["trial_test_accuracy"] == best.test_accuracy and config["classes"] == list(task.classes)
    assert config["source"]["model"] == best.model and config["task"]["fingerprint"] == task.fingerprint

    out = tmp_path / "pred.csv"
    assert run_cli(predict_main, f"model={outcome.best_dir}", f"images={task.root / 'test'}", f"out={out}") == 0
    assert f"accuracy: {outcome.test_accuracy:.4f}" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert lines[0].startswith("path,label,probability,true_label,top2_label,top2_probability")
    assert len(lines) == 1 + len(task.splits["test"])

    # Resume: the budget is spent, nothing is enqueued or run again.
    again = search(settings, task, bank, tmp_path / "run", warm=warm)
    assert [r.number for r in again.trials] == [0, 1, 2] and again.best == best
    assert len(load(settings).trials) == 3
    loaded = load_outcome(settings.storage, "search", tmp_path / "run")  # reads the study, writes nothing
    assert loaded.trials == outcome.trials and loaded.best_dir == outcome.best_dir


def test_time_budget_stops_starting_trials(env, tmp_path):
    args = overrides(env, tmp_path, 1, "finetune.n_trials=null", "finetune.time_budget_min=0.005",
                     "finetune.warm_start=false")
    settings, task, bank = setup(env, args)
    outcome = search(settings, task, bank, tmp_path / "run")
    assert len(outcome.trials) == 1 and outcome.n_counted == 1  # the first starts at once; then time is up


# ------------------------------------------------------------------------------------ worker processes
def start_worker(args: list[str], run_dir: Path, log: Path) -> subprocess.Popen:
    """``python -m automl stage=finetune`` in ``run_dir``, as a scale-out worker is started."""
    # SIGINT at its default even where the test runner inherited it ignored (a background CI job)
    return subprocess.Popen([sys.executable, "-m", "automl", "stage=finetune", f"hydra.run.dir={run_dir}", *args],
                            cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finish(process: subprocess.Popen, log: Path, timeout: float = 150) -> None:
    assert process.wait(timeout=timeout) == 0, log.read_text()[-4000:]


def wait_for_trials(worker: subprocess.Popen, cfg, log: Path, ready: Callable[[list], bool]) -> None:
    """Poll the worker's study until ``ready(trials)``; fail if the worker exits or 2 minutes pass first."""
    deadline = time.monotonic() + 120
    while True:
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            trials = load(cfg).trials
        except (KeyError, ValueError):  # the study (or its tables) does not exist yet
            trials = []
        if ready(trials):
            return
        time.sleep(0.1)


@pytest.mark.slow
def test_resume_after_sigkill_keeps_finished_trials_and_counts_exactly(env, tmp_path):
    # 10 epochs a trial: trial 1 runs for seconds, so the poll below sees it running (at 2 epochs the
    # window was under a second, and a slow poll on a loaded CI machine once missed it)
    args = overrides(env, tmp_path, 3, "finetune.heartbeat_interval=1", "finetune.grace_period=3",
                     "finetune.max_epochs=10", "finetune.default_hparams.epochs=10",
                     "finetune.warm_start=false", "finetune.pruner=none")
    cfg = resolve(compose(args))
    worker = start_worker(args, tmp_path / "run", tmp_path / "first.log")
    wait_for_trials(worker, cfg, tmp_path / "first.log",  # kill -9 while trial 1 runs (trial 0 finished),
                    lambda t: len(t) >= 2 and t[0].state.is_finished() and t[1].state == TrialState.RUNNING
                    and len(t[1].intermediate_values) >= 2)  # two of its epochs done
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    first, killed = load(cfg).trials[:2]
    done_at_kill = len(killed.intermediate_values)

    finish(start_worker(args, tmp_path / "run", tmp_path / "second.log"), tmp_path / "second.log")
    trials = load(cfg).trials
    assert trials[0].state == first.state and trials[0].value == first.value  # kept, not rerun
    assert trials[1].state == TrialState.FAIL and not counts(trials[1])  # failed by the heartbeat
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    # the kill may land while trial 1 is still sampling: its retry keeps every sampled value, samples the rest
    assert len(retry) == 1 and trials[1].params.items() <= retry[0].params.items() and counts(retry[0])
    assert sum(counts(t) for t in trials) == 3
    # the retry continued the killed fit from its last checkpoint: at most one epoch lost
    assert done_at_kill - 1 <= retry[0].user_attrs["resumed_at_epoch"] <= done_at_kill
    assert len(retry[0].user_attrs["val_curve"]) == 10


@pytest.mark.slow
def test_ctrl_c_mid_fit_exits_130_and_the_rerun_continues_that_trial(env, tmp_path):
    args = overrides(env, tmp_path, 2, "finetune.max_epochs=16", "finetune.default_hparams.epochs=16",
                     "finetune.warm_start=false", "finetune.pruner=none")
    cfg = resolve(compose(args))
    worker = start_worker(args, tmp_path / "run", tmp_path / "first.log")
    wait_for_trials(worker, cfg, tmp_path / "first.log",  # Ctrl-C once trial 0 has validated two epochs (so its
                    lambda t: len(t) >= 1 and t[0].state == TrialState.RUNNING  # first checkpoint is written)
                    and len(t[0].intermediate_values) >= 2)
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=60) == 130
    log = (tmp_path / "first.log").read_text()
    assert "rerun the same command to resume" in log and "Traceback" not in log
    interrupted, queued = load(cfg).trials
    assert interrupted.state == TrialState.FAIL and interrupted.user_attrs["interrupted"] and not counts(interrupted)
    assert queued.state == TrialState.WAITING and queued.params == interrupted.params
    assert queued.user_attrs["resumes"] == interrupted.number  # the fit it continues
    assert queued.intermediate_values == interrupted.intermediate_values  # judged as if it had not stopped

    finish(start_worker(args, tmp_path / "run", tmp_path / "second.log"), tmp_path / "second.log")
    trials = load(cfg).trials
    assert trials[1].state == TrialState.COMPLETE and trials[1].params == interrupted.params
    assert trials[1].user_attrs["resumed_at_epoch"] >= len(interrupted.intermediate_values) - 1 >= 1
    assert len(trials[1].user_attrs["val_curve"]) == 16
    assert sum(counts(t) for t in trials) == 2


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_concurrent_workers_share_an_exact_budget(env, tmp_path, backend):
    extra = [f"finetune.study=two-workers-{uuid.uuid4().hex[:8]}"]
    if backend == "postgresql":
        url = os.environ.get("AUTOML_TEST_POSTGRES_URL")
        if not url:
            pytest.skip("AUTOML_TEST_POSTGRES_URL is not set")
        extra.append(f"storage={url}")
    args = overrides(env, tmp_path, 4, *extra)
    cfg = resolve(compose(args))
    workers = [start_worker(args, tmp_path / f"run{i}", tmp_path / f"w{i}.log") for i in range(2)]
    try:
        for i, worker in enumerate(workers):
            finish(worker, tmp_path / f"w{i}.log")
        trials = load(cfg).trials
        numbers = [t.number for t in trials]
        assert len(numbers) == len(set(numbers))
        assert sum(counts(t) for t in trials) == 4
        assert all(t.state.is_finished() for t in trials)
        for i in range(2):  # each worker's csv lists the 4 counted trials (and any budget-check stub is left out)
            rows = (tmp_path / f"run{i}" / "finetune.csv").read_text().splitlines()[1:]
            assert len(rows) == 4
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        if backend == "postgresql":
            optuna.delete_study(study_name=cfg.finetune.study, storage=storage_url(str(cfg.storage)))

