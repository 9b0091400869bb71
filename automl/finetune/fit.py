"""One fine-tuning fit of one bank model on one task: the single training path of the finetune stage's
Optuna trials and of the benchmark's oracle (``benchmarks.metabench``).

:func:`fit_once` seeds everything, builds the model with a fresh head and the task's loaders with the
model's own input pipeline, trains with Lightning (:func:`automl.finetune.module.make_trainer`), keeps
the best validation epoch's weights and measures them once on the test split with
:func:`automl.deploy.exported.predict_proba` (the evaluation ``automl.deploy.predict`` also uses). The caller
decides what the hyperparameters are (a search's suggestion, the oracle's fixed recipe) and what
happens to the weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import math
import re
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import optuna
import torch
from lightning.pytorch.loggers import Logger

from automl._fileio import atomic_path
from automl.bank import BankEntry, create_model, resolve_data_config
from automl.deploy.exported import EVAL_BATCH_SIZE, predict_proba
from automl.finetune.data import TaskDataModule
from automl.finetune.module import FinetuneModule, cpu_state, make_trainer
from automl.images.tasks import Split, Task
from automl.settings import FinetuneSettings, Hparams


@dataclass(frozen=True)
class FitResult:
    """What one fit measured (accuracies in percent, 0..100)."""

    val_accuracy: float  # the best epoch's validation accuracy (the epoch whose weights are kept)
    test_accuracy: float  # those weights on the test split, evaluated once
    test_predictions: np.ndarray  # [N] the class each test image was given (task.splits["test"] order)
    best_epoch: int  # 0-based
    epochs: int  # epochs trained (validated)
    val_curve: list[float]  # validation accuracy (percent) after each epoch
    train_images: int  # training images processed (epochs x images per epoch)
    mflops: float  # forward MFLOPs per image at the model's input (one training step costs about 3x)
    seconds: float  # wall time: build, fit and test evaluation
    best_state: dict[str, torch.Tensor]  # the best epoch's state dict, on the CPU
    data_config: dict[str, Any]  # the model's input pipeline (input_size, mean, std, ...)
    channels_last: bool  # whether it trained in NHWC layout (finetune.channels_last, decided per model by auto)
    precision: str  # Lightning's precision it trained in (finetune.precision resolved for the device)
    resumed_at: int | None = None  # the 0-based epoch this call started at, when it continued a checkpoint


def fit_once(entry: BankEntry, task: Task, hparams: Hparams, settings: FinetuneSettings | None = None, *,
             device: str = "cpu", seed: int = 0, progress_bar: bool | None = None,
             callbacks: Sequence[pl.Callback] = (), refit: bool = False, checkpoint: Path | None = None,
             logger: Logger | None = None, label: str | None = None) -> FitResult:
    """Fine-tune ``entry`` on ``task`` with ``hparams``; return the best epoch and its test accuracy.

    With ``refit``, train on the training and validation images together for the planned epochs (a
    recipe already chosen on validation); there is no epoch to choose, so the last epoch's weights are
    kept and ``val_accuracy`` is NaN.

    Args:
        entry: the bank model; its classifier is replaced by a fresh ``task.num_classes``-way head.
        task: the task (train for fitting, val to choose the epoch, test to measure it).
        hparams: the validated recipe (epochs, optimizer, schedule, freezing, regularisation).
        settings: how fits run: ``precision``, ``channels_last``, ``num_workers``, ``augment``,
            ``limit_train_batches``, ``progress_bar`` (None: the defaults).
        device: ``cpu``, ``cuda[:i]`` or ``mps`` (already resolved, not ``auto``).
        seed: seeds Python, numpy, torch and the loader workers before the model is built.
        progress_bar: overrides ``settings.progress_bar`` (e.g. off under another progress display).
        label: what the progress line calls the fit (default: the model's name).
        callbacks: extra Lightning callbacks (e.g. Optuna's pruning callback); an exception they raise
            (``optuna.TrialPruned``) propagates.
        checkpoint: where the fit keeps its whole state after every epoch (model, optimizer, schedule,
            loop position, the best epoch so far, RNG), so that a fit interrupted (Ctrl-C, a killed process)
            continues from its last finished epoch, exactly as if it had not stopped, when called again with
            the same arguments. Removed once the fit ends (done, pruned or failed); kept on Ctrl-C.
        logger: a Lightning logger for the fit's metrics (``train_loss`` per step, ``val_acc`` per epoch).

    Raises:
        RuntimeError: no validation epoch finished (nothing to keep).
    """
    settings = settings or FinetuneSettings()
    task = with_validation_in_training(task) if refit else task
    start = time.monotonic()
    pl.seed_everything(seed, workers=True, verbose=False)
    model = create_model(entry, num_classes=task.num_classes)
    data_config = resolve_data_config(entry, model, image_size=task.image_size)
    datamodule = TaskDataModule(task, data_config, hparams.batch_size, num_workers=settings.num_workers,
                                augment=settings.augment,
                                drop_last=hparams.mixing,  # mixing pairs up a batch: a last batch of 1 cannot be mixed
                                pin_memory=device.startswith("cuda"), pixel_cache_gb=settings.pixel_cache_gb)
    module = FinetuneModule(model, task.num_classes, hparams, channels_last=settings.channels_last)
    resume = checkpoint if checkpoint is not None and checkpoint.is_file() else None
    if checkpoint is not None:
        callbacks = [*callbacks, EpochCheckpoint(checkpoint)]
    trainer = make_trainer(hparams.epochs, device, precision=settings.precision, callbacks=callbacks,
                           limit_train_batches=settings.limit_train_batches, validate=not refit,
                           progress_bar=settings.progress_bar if progress_bar is None else progress_bar,
                           label=label or entry.name, logger=logger)
    try:
        _fit_interruptibly(trainer, module, datamodule, resume)
    except KeyboardInterrupt:
        raise  # the checkpoint stays: the next call continues from it
    except BaseException:
        _remove(checkpoint)
        raise
    _remove(checkpoint)
    if refit:
        module.best_state = cpu_state(model)
        module.best_epoch = hparams.epochs - 1
    if module.best_state is None:
        raise RuntimeError(f"{entry.name} on {task.name}: no validation epoch finished")
    model.load_state_dict(module.best_state)
    predicted = predict_split(model, datamodule, "test", device)
    return FitResult(
        val_accuracy=math.nan if refit else float(module.best_val_acc),
        test_accuracy=100.0 * float(np.mean(predicted == task.splits["test"].labels)),
        test_predictions=predicted,
        best_epoch=module.best_epoch,
        epochs=hparams.epochs if refit else module.epochs_validated,
        val_curve=list(module.val_curve),
        train_images=module.images_seen,
        mflops=module.mflops,
        seconds=time.monotonic() - start,
        best_state=module.best_state,
        data_config=datamodule.data_config,
        channels_last=module.channels_last,
        precision=trainer.precision,
        resumed_at=module.resumed_at,
    )


def predict_split(model: torch.nn.Module, datamodule: TaskDataModule, split: str = "test", device: str = "cpu"
                  ) -> np.ndarray:
    """The class ``model`` gives each image of ``split`` (``val`` or ``test``) of ``datamodule``'s task ([N] int,
    ``splits[split]`` order), through :func:`~automl.deploy.exported.predict_proba` in ``EVAL_BATCH_SIZE``
    batches of the eval crop."""
    batches = datamodule.eval_batches(split, EVAL_BATCH_SIZE)
    return predict_proba(model, batches, datamodule.data_config, device=device).argmax(axis=1)


def with_validation_in_training(task: Task) -> Task:
    """``task`` with its validation images added to the training split (for a refit); its fingerprint
    changes with it, so caches keyed by it never mix the two."""
    train, val = task.splits["train"], task.splits["val"]
    merged = Split(train.paths + val.paths, np.concatenate([train.labels, val.labels]))
    return dataclasses.replace(task, splits={**task.splits, "train": merged}, fingerprint=f"{task.fingerprint}+val")


class EpochCheckpoint(pl.Callback):
    """After every training epoch (its validation included), the fit's whole state written to ``path`` in one
    rename: Lightning's checkpoint (model, optimizer, schedule, loops) and the module's own
    (:meth:`FinetuneModule.on_save_checkpoint`: best epoch, curve, RNG)."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        with atomic_path(self.path) as tmp:
            trainer.save_checkpoint(tmp)


def _remove(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _fit_interruptibly(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule,
                       checkpoint: Path | None = None) -> None:
    """``trainer.fit`` (from ``checkpoint`` when given; read with ``weights_only``) with Ctrl-C kept a
    KeyboardInterrupt.

    Lightning answers Ctrl-C by ignoring SIGINT for good and raising ``SystemExit(1)``: a caller could not
    tell it from a real exit, and the process would be deaf to the next Ctrl-C. The handler is restored
    and the interrupt re-raised as what it is.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
    except SystemExit as exc:
        if trainer.interrupted:
            raise KeyboardInterrupt from exc
        raise
    finally:
        if in_main_thread and handler is not None:
            signal.signal(signal.SIGINT, handler)


_OUT_OF_MEMORY = re.compile(r"out of memory|can't allocate memory|not enough memory|STATUS_ALLOC_FAILED", re.IGNORECASE)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, is an allocation failure: torch's
    ``OutOfMemoryError`` (CUDA), or a RuntimeError saying so (the CPU allocator's "DefaultCPUAllocator: can't
    allocate memory", MPS's "out of memory", cuBLAS's and cuDNN's ``*_STATUS_ALLOC_FAILED``)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError)
                                                       and _OUT_OF_MEMORY.search(str(exc))):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def release_memory(device: str) -> None:
    """Collect what a failed fit left (its model, optimizer and activations) and give ``device``'s cached
    memory back, so that the next attempt starts from an empty GPU. Call it outside the ``except`` block: the
    exception's traceback holds the failed fit's frames until then."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads while fitting (None: leave torch's default, one per core); restored after."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_OPTUNA_TRIAL_FAILED = re.compile(r"Trial \d+ failed with ")


class quiet_libraries(contextlib.ContextDecorator):
    """Per-fit chatter off: Optuna's own trial lines (the search logs its own, failures included) and
    Lightning's banners (devices, tips, checkpoint restores), printed once per Trainer."""

    _LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                "lightning.pytorch.trainer.connectors.checkpoint_connector")

    def __enter__(self) -> None:
        self._optuna = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._levels = {name: logging.getLogger(name).level for name in self._LOGGERS}
        for name in self._LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        for handler in logging.getLogger("optuna").handlers:  # a logger's filter would miss its children's records
            handler.addFilter(_not_a_failed_trial)

    def __exit__(self, *exc: object) -> None:
        optuna.logging.set_verbosity(self._optuna)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        for handler in logging.getLogger("optuna").handlers:
            handler.removeFilter(_not_a_failed_trial)


def _not_a_failed_trial(record: logging.LogRecord) -> bool:
    """Drop Optuna's own "Trial N failed with ..." warnings (a traceback, then "failed with value None"): the
    search logs every trial's outcome and reason itself, its traceback goes to the run's log, and Ctrl-C is
    not a failure worth one."""
    return not _OPTUNA_TRIAL_FAILED.match(record.getMessage())
