"""The oracle: every bank model fine-tuned on every target with one fixed recipe (no search), each fit
stored in the transfer history as soon as it ends and looked up there before training, under a run
id that is a digest of the recipe."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
from rich.progress import Progress

from automl._progress import progress_bar
from automl.bank import weights_digest
from automl.finetune.fit import fit_once, quiet_libraries, torch_threads
from automl.predictor import bank_candidates
from automl.run import transfer_record
from automl.settings import FinetuneSettings
from benchmarks.metabench.data import BenchError
from benchmarks.settings import BenchRunSettings, OracleSettings

log = logging.getLogger(__name__)


@dataclass
class OracleStats:
    """What the oracle stage did: fits trained now, found in the history, or failed."""

    run_id: str
    recipe: dict[str, Any]
    trained: int = 0
    cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # "model -> target" -> why
    fit_seconds: float = 0.0  # wall time of the fits trained now
    wall_seconds: float = 0.0  # wall time of the whole oracle stage


def oracle_recipe(oracle: OracleSettings, finetune: FinetuneSettings, seed: int) -> dict[str, Any]:
    """The oracle's fixed recipe: hyperparameters, training augmentation, batch cap and seed — everything
    that gives an oracle accuracy its meaning."""
    return {"hparams": oracle.hparams.as_dict(), "augment": dataclasses.asdict(oracle.augment),
            "limit_train_batches": finetune.limit_train_batches, "seed": int(seed)}


def recipe_id(recipe: Mapping[str, Any]) -> str:
    """``oracle-<12 hex>``: a digest of the recipe, the history run id of its oracle records."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"oracle-{digest}"


class _EpochDescription(pl.Callback):
    """Shows the running fit's epoch and best validation accuracy on the oracle's progress bar."""

    def __init__(self, progress: Progress, bar: Any, label: str, epochs: int):
        self.progress, self.bar, self.label, self.epochs = progress, bar, label, epochs

    def on_validation_end(self, trainer: pl.Trainer, module: Any) -> None:
        self.progress.update(self.bar, description=f"oracle: {self.label} epoch {module.epochs_validated}/"
                                                   f"{self.epochs} val {module.best_val_acc:.1f}%")


def measure_oracle(settings: BenchRunSettings, tasks, entries, history, *,
                   first_scores: Mapping[str, Mapping[str, Mapping[str, float]]],
                   model_meta: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, dict[str, float]], OracleStats]:
    """Fine-tune every entry on every task with the fixed recipe unless the history already holds it.

    Returns ``oracle[task name][model] = test accuracy`` (percent) and what was trained or reused. Each
    fit is added to ``history`` as soon as it ends (an interrupted run resumes at the next pair); a fit
    that fails is logged and left out. ``first_scores[task][model]`` are the scores recorded with it.
    """
    start = time.perf_counter()
    finetune = dataclasses.replace(settings.finetune, augment=settings.bench.oracle.augment)
    recipe = oracle_recipe(settings.bench.oracle, settings.finetune, settings.seed)
    hparams = settings.bench.oracle.hparams
    outcome = OracleStats(run_id=recipe_id(recipe), recipe=recipe)
    stored = {(r.model_name, r.task_fingerprint): r for r in history.records(kind="oracle")
              if r.run_id == outcome.run_id}
    oracle: dict[str, dict[str, float]] = {task.name: {} for task in tasks}
    with quiet_libraries(), torch_threads(finetune.torch_threads), progress_bar() as progress:
        bar = progress.add_task("oracle", total=len(tasks) * len(entries))
        for task in tasks:
            candidates = {c.model_name: c for c in bank_candidates(first_scores[task.name], model_meta, task.meta())}
            for entry in entries:
                label = f"{entry.name} → {task.name}"
                record = stored.get((entry.name, task.fingerprint))
                if record is not None:
                    if record.weights_digest != weights_digest(entry):
                        raise BenchError(f"history: the oracle of {label} (run {outcome.run_id}) was measured "
                                         f"with other weights ({record.weights_digest[:16]}…, now "
                                         f"{weights_digest(entry)[:16]}…); give the changed checkpoint a new "
                                         "name in the bank")
                    oracle[task.name][entry.name] = record.test_accuracy
                    outcome.cached += 1
                    progress.advance(bar)
                    continue
                progress.update(bar, description=f"oracle: {label}")
                try:
                    result = fit_once(entry, task, hparams, finetune, device=settings.device, seed=recipe["seed"],
                                      progress_bar=False,  # Lightning's bar would fight this one
                                      callbacks=[_EpochDescription(progress, bar, label, hparams.epochs)])
                except Exception as exc:  # one model that cannot train must not end the benchmark
                    log.error("oracle: %s failed: %s: %s", label, type(exc).__name__, exc)
                    outcome.failed[label] = f"{type(exc).__name__}: {exc}"
                    progress.advance(bar)
                    continue
                candidate = candidates[entry.name]
                history.add(transfer_record(
                    task, entry, model_meta=candidate.model_meta, task_meta=candidate.task_meta,
                    scores=candidate.scores, scores_z=candidate.scores_z, run_id=outcome.run_id, kind="oracle", trial=None,
                    hparams=recipe["hparams"], val_accuracy=result.val_accuracy,
                    test_accuracy=result.test_accuracy, epochs=result.epochs, seconds=result.seconds,
                    fidelity={"state": "COMPLETE", "planned_epochs": hparams.epochs, "recipe": outcome.run_id,
                              "best_epoch": result.best_epoch, "val_curve": result.val_curve}))
                oracle[task.name][entry.name] = result.test_accuracy
                outcome.trained += 1
                outcome.fit_seconds += result.seconds
                log.info("oracle: %s test %.2f%% (val %.2f%%, %.1f s)", label, result.test_accuracy,
                         result.val_accuracy, result.seconds)
                progress.advance(bar)
    outcome.wall_seconds = time.perf_counter() - start
    return oracle, outcome
