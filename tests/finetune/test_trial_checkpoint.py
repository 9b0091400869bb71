"""An interrupted fit continues from its last finished epoch (issue 34.4): the checkpoint holds the whole
fit (model, optimizer, schedule, loop position, best epoch so far, random state), so a fit stopped during
epoch k and called again trains epochs k.. only and ends exactly where an uninterrupted fit ends."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from conftest import write_random_bank

from automl.bank import load_bank
from automl.finetune import fit_once
from automl.images import load_task
from automl.settings import BankSettings, FinetuneSettings, Hparams, TaskSettings

SETTINGS = FinetuneSettings(limit_train_batches=3, progress_bar=False, num_workers=0, torch_threads=1)
HPARAMS = Hparams(epochs=4, batch_size=16, mixup=0.2)  # mixup: numpy's random state matters too


class StopIn(pl.Callback):
    """Ctrl-C as training epoch ``epoch`` (0-based) starts: the epochs before it are done and checkpointed."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


class FirstEpoch(pl.Callback):
    def __init__(self):
        self.epochs = []

    def on_train_epoch_start(self, trainer, module):
        self.epochs.append(trainer.current_epoch)


@pytest.fixture
def setup(tmp_path):
    bank = load_bank(BankSettings(dir=str(write_random_bank(tmp_path / "bank", {"r": ("test_resnet", {})}, 4))),
                     tmp_path / "cache")
    task = load_task(TaskSettings(builtin="digits"), tmp_path / "cache")
    return bank.entries[0], task


def test_a_fit_stopped_in_epoch_k_continues_at_k_exactly(setup, tmp_path):
    entry, task = setup
    plain = fit_once(entry, task, HPARAMS, SETTINGS)  # SETTINGS: one torch thread inside every fit
    checkpoint = tmp_path / "fit.resume.ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit_once(entry, task, HPARAMS, SETTINGS, checkpoint=checkpoint, callbacks=[StopIn(2)])
    assert checkpoint.is_file()  # Ctrl-C keeps it
    seen = FirstEpoch()
    resumed = fit_once(entry, task, HPARAMS, SETTINGS, checkpoint=checkpoint, callbacks=[seen])
    assert seen.epochs == [2, 3] and resumed.resumed_at == 2  # epochs 0 and 1 were not trained again
    assert not checkpoint.exists()  # removed once the fit ended
    assert resumed.val_curve == plain.val_curve and resumed.epochs == plain.epochs == 4
    assert resumed.best_epoch == plain.best_epoch and resumed.train_images == plain.train_images
    assert all(torch.equal(resumed.best_state[k], plain.best_state[k]) for k in plain.best_state)
    assert (resumed.test_predictions == plain.test_predictions).all()


def test_a_fit_that_fails_leaves_no_checkpoint(setup, tmp_path):
    entry, task = setup
    checkpoint = tmp_path / "fit.resume.ckpt"

    class Boom(pl.Callback):
        def on_train_epoch_end(self, trainer, module):
            if trainer.current_epoch == 1:
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit_once(entry, task, HPARAMS, SETTINGS, checkpoint=checkpoint, callbacks=[Boom()])
    assert not checkpoint.exists()
