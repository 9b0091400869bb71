"""A trial that runs out of memory starts again with half the batch size (issue 35.3): real tiny fits through
the real objective and study, in which a callback raises what CUDA raises when the batch is too big."""

from __future__ import annotations

import csv

import lightning.pytorch as pl
import optuna
import pytest
import torch
from conftest import quick_overrides, write_random_bank

import automl.finetune.objective
from automl.bank import load_bank
from automl.finetune import run_finetune
from automl.finetune.attrs import OOM_RETRIES, RESUMES
from automl.finetune.fit import fit_once, is_out_of_memory
from automl.finetune.module import NonFiniteLossError
from automl.finetune.study import requeue
from automl.images.tasks import load_task
from automl.settings import FinetuneSettings, SettingsError, compose, resolve

pytestmark = pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning")  # Lightning's


class OutOfMemoryAbove(pl.Callback):
    """Raises CUDA's out-of-memory error at the first training step of a fit whose batch size is above
    ``limit`` (what a GPU does when the activations of a batch do not fit)."""

    def __init__(self, limit: int):
        self.limit = limit

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.datamodule.batch_size > self.limit:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB (batch of {trainer.datamodule.batch_size})")


@pytest.fixture
def memory_limits(monkeypatch):
    """``limits[model] = batch size`` makes every fit of that model above it run out of memory."""
    limits: dict[str, int] = {}

    def fit_with_limit(entry, *args, callbacks=(), **kwargs):
        return fit_once(entry, *args, callbacks=[*callbacks, OutOfMemoryAbove(limits.get(entry.name, 10**9))],
                        **kwargs)

    monkeypatch.setattr(automl.finetune.objective, "fit_once", fit_with_limit)
    return limits


def test_a_trial_out_of_memory_runs_again_at_half_the_batch_size_down_to_the_floor(tmp_path, memory_limits):
    bank = write_random_bank(tmp_path / "bank", {"effnet": ("test_efficientnet", {}), "convnext": ("test_convnext", {})},
                             num_classes=5)
    settings = resolve(compose(quick_overrides(
        bank, tmp_path, "finetune.n_trials=2", "finetune.top_k=2", "finetune.refit=false",
        "finetune.default_hparams.batch_size=32", "finetune.min_batch_size=8", "finetune.num_workers=0")))
    task = load_task(settings.task, settings.cache_dir)
    memory_limits.update(effnet=16, convnext=4)  # effnet fits at 16; convnext would need 4, below the floor
    outcome = run_finetune(task, list(load_bank(settings.bank, settings.cache_dir)), settings.finetune,
                           settings.search_space, storage=settings.storage, device="cpu", seed=0,
                           run_dir=tmp_path / "run", study="oom")

    fits, fails = outcome.trials  # the warm start: one trial per model, effnet first
    assert (fits.model, fits.state, fits.hparams["batch_size"], fits.oom_retries) == ("effnet", "COMPLETE", 16, 1)
    assert fits.train_images == 2 * 2 * 16  # 2 epochs of 2 batches, of 16
    assert (fails.model, fails.state, fails.hparams["batch_size"], fails.oom_retries) == ("convnext", "FAIL", 8, 2)
    assert fails.fail_reason.startswith("OutOfMemoryError: CUDA out of memory") and "batch of 8" in fails.fail_reason
    assert outcome.n_counted == 2 and len(outcome.optuna_study.trials) == 2  # each counted once, no extra trial
    rows = list(csv.DictReader((tmp_path / "run" / "finetune.csv").open()))
    assert [(row["batch_size"], row["oom_retries"]) for row in rows] == [("16", "1"), ("8", "2")]
    assert outcome.best.number == fits.number and outcome.best_dir is not None


def test_what_counts_as_out_of_memory():
    with pytest.raises(RuntimeError) as cpu:  # a real allocation failure of the CPU allocator
        torch.empty(1 << 62, dtype=torch.uint8)
    assert is_out_of_memory(cpu.value)
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1.2 GB)"))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"))
    try:
        try:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        except torch.cuda.OutOfMemoryError as exc:
            raise RuntimeError("the fit failed") from exc
    except RuntimeError as wrapped:
        assert is_out_of_memory(wrapped)
    for other in (ValueError("out of memory"), NonFiniteLossError("nan"), RuntimeError("shape mismatch")):
        assert not is_out_of_memory(other)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_requeued_trial_keeps_the_batch_size_it_reached(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/q.db")
    trial = study.ask()
    trial.set_user_attr(OOM_RETRIES, 2)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    requeue(study, study.trials[0])
    assert study.trials[1].user_attrs == {RESUMES: 0, OOM_RETRIES: 2}


def test_min_batch_size_is_checked():
    with pytest.raises(SettingsError, match=r"finetune\.min_batch_size=0"):
        FinetuneSettings(min_batch_size=0)

