"""The finetune stage: one Optuna study over (top-k model x hyperparameters), every trial a Lightning fit.

Study. One per (task fingerprint, candidate names and weights, search space, defaults, epochs cap), named
``finetune-<task>-<hash>`` unless ``finetune.study`` names it, stored in the ``storage`` SQLAlchemy URL
(SQLite on one machine, PostgreSQL across machines) through an ``RDBStorage`` with a heartbeat: a trial
whose worker dies (SIGKILL, power loss) stops beating, is failed after ``grace_period`` s by the next
worker's ``fail_stale_trials`` and re-enqueued with the same parameters (up to ``max_retry`` times).
Ctrl-C fails the running trial at once and re-enqueues it, so a rerun continues where it stopped.

Warm start. The worker that creates the study enqueues one trial per candidate with
``finetune.default_hparams`` (best-ranked first), then the caller's ``warm_start`` dicts (best
hyperparameters measured on similar tasks); a study user attr records them, and nothing is enqueued
when a study is resumed or joined.

Budget (``finetune.n_trials``, total over all workers and reruns). A trial *counts* when it is COMPLETE,
PRUNED, or FAILed by raising (user attr ``fail_reason``); one whose worker died or was interrupted does
not (it is retried), nor does one ended by the budget check below (user attr ``over_budget``).
Optuna's ``MaxTrialsCallback`` counts by state only, so it can neither tell these FAILs apart nor stop
two workers that start their last trials at the same moment; the total is made exact by two checks:

1. before asking for a trial, a worker waits while ``counted + running >= n_trials`` (the others'
   running trials may still die and need a replacement) and stops once ``counted >= n_trials``;
2. a trial that has started re-reads the study and is *admitted* (user attr ``admitted`` = its number)
   only if ``counted + ahead < n_trials``, where ``ahead`` are the other running trials that are
   admitted or have a lower number. While the budget is at stake it waits for running, not-yet-admitted
   trials with higher numbers to decide (they never wait for it: no deadlock). If it is not admitted it
   ends at once as an uncounted, unreported FAIL and its worker goes back to 1. Whichever of two
   racing trials became RUNNING later sees the other, so no more than ``n_trials`` ever count.

``finetune.time_budget_min`` stops a worker from starting trials after that many minutes.

Every trial is one :func:`automl.finetune.fit.fit_once` (the training path the benchmark's oracle also
uses): it keeps its best-epoch weights (``<artifacts_dir>/<study>/trial-<n>.safetensors``), evaluated
once on the test split (reported, never used for selection); pruning (successive halving or Hyperband
on ``val_acc`` per epoch) moves the budget to the candidates that measure better. At the end the best
trial by validation accuracy is exported to ``<run_dir>/best`` and ``finetune.csv`` lists the study's
trials.

Scale-out: start ``python -m automl stage=finetune finetune.study=<name> storage=postgresql://...`` (or
``python -m automl.finetune.search``) on several machines with a shared ``finetune.artifacts_dir``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import logging
import random
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna
import sqlalchemy.exc
import torch
from omegaconf import DictConfig
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState
from optuna_integration import PyTorchLightningPruningCallback

from automl.bank import BankEntry, weights_digest
from automl.config import select_device, storage_url, to_container
from automl.fileio import atomic_path
from automl.finetune.export import export_model, save_weights
from automl.finetune.fit import FitResult, fit_once, quiet_libraries, torch_threads
from automl.finetune.module import FinetuneModule, Hparams
from automl.tasks import Task

try:  # optuna >= 4.9 names; older releases call the same callback RetryFailedTrialCallback
    from optuna.storages import RetryHeartbeatStaleTrialCallback as _RetryStale

    _RETRY_KWARG = "heartbeat_stale_trial_callback"
except ImportError:  # pragma: no cover
    from optuna.storages import RetryFailedTrialCallback as _RetryStale

    _RETRY_KWARG = "failed_trial_callback"

log = logging.getLogger(__name__)

MODEL_PARAM = "model"
HPARAM_NAMES = tuple(f.name for f in dataclasses.fields(Hparams))
_FINETUNE_KEYS = {
    "top_k", "n_trials", "time_budget_min", "study", "artifacts_dir", "sampler", "pruner", "reduction_factor",
    "warm_start", "max_epochs", "default_hparams", "precision", "num_workers", "limit_train_batches",
    "augment", "progress_bar", "heartbeat_interval", "grace_period", "max_retry", "torch_threads",
}
# trial user attrs
_ADMITTED, _OVER_BUDGET, _FAIL_REASON = "admitted", "over_budget", "fail_reason"
_HPARAMS, _DATA_CONFIG, _WEIGHTS = "hparams", "data_config", "weights"
_POLL_S = 0.25  # admission re-check interval while another trial decides
_SCHEMA_ATTEMPTS = 5


@dataclass(frozen=True)
class TrialResult:
    """One finished trial (accuracies in percent; ``val_accuracy`` is the best epoch's, also when pruned)."""

    study: str
    number: int
    model: str | None  # bank entry name
    state: str  # COMPLETE | PRUNED | FAIL
    hparams: dict[str, Any]
    val_accuracy: float | None
    test_accuracy: float | None  # COMPLETE trials only, with the best-epoch weights
    epochs: int  # epochs trained (validated)
    seconds: float  # wall time of the trial
    fail_reason: str | None  # FAIL: "<exception type>: <message>", or why it did not run to the end
    weights: Path | None  # best-epoch weights (COMPLETE trials)

    @classmethod
    def from_trial(cls, study: str, trial: FrozenTrial) -> TrialResult:
        attrs = trial.user_attrs
        hparams = attrs.get(_HPARAMS) or {k: v for k, v in trial.params.items() if k != MODEL_PARAM}
        reason = attrs.get(_FAIL_REASON)
        if trial.state == TrialState.FAIL and reason is None:
            reason = "interrupted" if attrs.get("interrupted") else "its worker died (heartbeat lost)"
        return cls(
            study=study,
            number=trial.number,
            model=trial.params.get(MODEL_PARAM),
            state=trial.state.name,
            hparams=dict(hparams),
            val_accuracy=attrs.get("val_accuracy"),
            test_accuracy=attrs.get("test_accuracy"),
            epochs=int(attrs.get("epochs", 0)),
            seconds=float(attrs.get("seconds", 0.0)),
            fail_reason=reason,
            weights=Path(attrs[_WEIGHTS]) if attrs.get(_WEIGHTS) else None,
        )


@dataclass(frozen=True)
class FinetuneOutcome:
    """What :func:`run_finetune` leaves behind (the study holds the same, for every worker)."""

    study: str
    trials: list[TrialResult]  # the study's finished trials (all workers), by number
    best: TrialResult | None  # highest val_accuracy among COMPLETE trials (ties: lowest number)
    best_dir: Path | None  # run_dir/best, or None (no COMPLETE trial / its weights not on this machine)
    csv: Path  # run_dir/finetune.csv
    n_counted: int  # trials that count towards finetune.n_trials
    optuna_study: optuna.Study  # the study itself (for Optuna's plots), as the search opened it

    def best_by_model(self) -> dict[str, TrialResult]:
        """model name → its best COMPLETE trial (highest val accuracy; ties: lowest number)."""
        best: dict[str, TrialResult] = {}
        for trial in self.trials:
            if trial.state != "COMPLETE" or trial.val_accuracy is None:
                continue
            if trial.model not in best or trial.val_accuracy > best[trial.model].val_accuracy:
                best[trial.model] = trial
        return best


# ------------------------------------------------------------------------------------------ search space
class SearchSpace:
    """``conf/search_space`` parsed: Optuna distributions plus fixed values, and the model categorical.

    Each entry is ``{type: float|int, low, high, log?, step?}``, ``{type: categorical, choices: [...]}``
    or a plain scalar (fixed). Names must be :class:`Hparams` fields.
    """

    def __init__(self, spec: Mapping[str, Any], models: Sequence[str]):
        self.spec = dict(spec)
        self.distributions: dict[str, BaseDistribution] = {MODEL_PARAM: CategoricalDistribution(list(models))}
        self.fixed: dict[str, Any] = {}
        for name, value in self.spec.items():
            if name not in HPARAM_NAMES:
                raise ValueError(f"search_space.{name}: not a hyperparameter; known: {list(HPARAM_NAMES)}")
            if isinstance(value, Mapping):
                self.distributions[name] = _distribution(value, f"search_space.{name}")
            else:
                self.fixed[name] = value

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's values for every distribution (enqueued fixed params are honoured by Optuna)."""
        values = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, FloatDistribution):
                values[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
            elif isinstance(dist, IntDistribution):
                values[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
            else:
                values[name] = trial.suggest_categorical(name, dist.choices)
        return values

    def enqueueable(self, config: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The entries of ``config`` that fix a searched parameter to an allowed value; others are dropped
        (fixed hyperparameters silently, unknown names and values outside the space with a warning)."""
        params = {}
        for name, value in config.items():
            dist = self.distributions.get(name)
            if dist is None:
                if name not in HPARAM_NAMES:
                    log.warning("%s: %r is not a hyperparameter; ignored", where, name)
                continue
            try:
                allowed = dist._contains(dist.to_internal_repr(value))
            except (ValueError, TypeError):
                allowed = False
            if allowed:
                params[name] = value
            else:
                log.warning("%s: %s=%r is outside the search space; the sampler chooses it", where, name, value)
        return params


def _distribution(spec: Mapping[str, Any], where: str) -> BaseDistribution:
    kind = spec.get("type")
    keys = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
            "categorical": {"type", "choices"}}
    if kind not in keys:
        raise ValueError(f"{where}: type must be float, int or categorical, got {kind!r}")
    unknown = sorted(set(spec) - keys[kind])
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for type {kind}; known: {sorted(keys[kind])}")
    try:
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list | tuple) or not choices:
                raise ValueError("choices must be a non-empty list")
            return CategoricalDistribution(list(choices))
        if "low" not in spec or "high" not in spec:
            raise ValueError("low and high are required")
        if kind == "float":
            return FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)),
                                     step=None if spec.get("step") is None else float(spec["step"]))
        return IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)),
                               step=int(spec.get("step") or 1))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from exc


# ------------------------------------------------------------------------------------------------ budget
def counts(trial: FrozenTrial) -> bool:
    """Whether ``trial`` counts towards ``finetune.n_trials`` (see the module docstring)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and _FAIL_REASON in trial.user_attrs


class OverBudget(RuntimeError):
    """The trial started after other workers had taken the rest of the budget; it ends uncounted."""


class Budget:
    """Exact ``n_trials`` across workers (None: unlimited) and this worker's ``deadline`` (monotonic s)."""

    def __init__(self, n_trials: int | None, deadline: float | None, poll_s: float):
        self.n_trials, self.deadline, self.poll_s = n_trials, deadline, poll_s

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def wait_for_slot(self, study: optuna.Study) -> bool:
        """Block until this worker may start a trial (True) or the budget is spent (False)."""
        while not self.expired():
            if self.n_trials is None:
                return True
            _fail_stale(study)
            trials = study.get_trials(deepcopy=False)
            counted = sum(counts(t) for t in trials)
            if counted >= self.n_trials:
                return False
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if counted + running < self.n_trials:
                return True
            time.sleep(self.poll_s)  # the others' running trials hold the rest: wait whether they count
        return False

    def admit(self, study: optuna.Study, trial: optuna.Trial) -> None:
        """Admit the running ``trial`` or raise :class:`OverBudget` (rule 2 of the module docstring)."""
        while self.n_trials is not None:
            trials = study.get_trials(deepcopy=False)
            counted = sum(counts(t) for t in trials)
            others = [t for t in trials if t.state == TrialState.RUNNING and t.number != trial.number]
            ahead = [t for t in others if t.user_attrs.get(_ADMITTED) == t.number or t.number < trial.number]
            pending = len(others) - len(ahead)
            if counted + len(ahead) >= self.n_trials:
                trial.set_user_attr(_OVER_BUDGET, True)
                raise OverBudget(f"the budget of {self.n_trials} trials was taken by other workers "
                                 f"({counted} counted, {len(ahead)} running); trial {trial.number} ends uncounted")
            if pending == 0 or counted + len(others) < self.n_trials:
                break
            time.sleep(_POLL_S)
            _fail_stale(study)
        trial.set_user_attr(_ADMITTED, trial.number)


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


# ---------------------------------------------------------------------------------------------- storage
def open_storage(url: str, heartbeat_interval: int, grace_period: int, max_retry: int | None
                 ) -> optuna.storages.RDBStorage:
    """RDBStorage with heartbeat and stale-trial retry; SQLite writers wait for each other up to 60 s."""
    for name, value in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"finetune.{name}={value!r} must be an integer number of seconds >= 1")
    if grace_period <= heartbeat_interval:
        raise ValueError(f"finetune.grace_period={grace_period} must exceed heartbeat_interval={heartbeat_interval}")
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(_SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    storage_url(url), engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period, **{_RETRY_KWARG: _RetryStale(max_retry=max_retry)})
        except sqlalchemy.exc.DBAPIError:
            # Workers starting together on a fresh database race to create Optuna's schema (the
            # loser hits a unique constraint); the next attempt finds it made.
            if attempt == _SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


def default_study_name(task: Task, candidates: Sequence[BankEntry], space: Mapping[str, Any],
                       ft: Mapping[str, Any]) -> str:
    """``finetune-<task>-<12 hex>``: a digest of everything that gives a trial's value its meaning."""
    key = {
        "task": task.fingerprint,
        "image_size": task.image_size,
        "models": [[entry.name, weights_digest(entry)] for entry in candidates],
        "space": space,
        "defaults": ft.get("default_hparams"),
        "max_epochs": ft.get("max_epochs"),
        "limit_train_batches": ft.get("limit_train_batches"),
        "augment": ft.get("augment"),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"finetune-{re.sub(r'[^A-Za-z0-9_.-]+', '_', task.name)}-{digest}"


def _sampler(kind: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if kind == "tpe":  # constant liar: concurrent workers avoid each other's running points
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"finetune.sampler={kind!r} must be tpe or random")


def _pruner(kind: str, max_epochs: int, reduction_factor: int) -> optuna.pruners.BasePruner:
    """Resources are epochs; Optuna steps are 0-based epochs, so the first rung is after 2 epochs."""
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=reduction_factor)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs,
                                              reduction_factor=reduction_factor)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"finetune.pruner={kind!r} must be successive_halving, hyperband, median or none")


# ------------------------------------------------------------------------------------------------ search
class _TrialProgress(pl.Callback):
    """After every validation epoch, record the epochs trained and the best validation accuracy so far on
    the trial, so that a pruned or failed trial keeps them (the module's own hook has run by then)."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def on_validation_end(self, trainer: pl.Trainer, module: FinetuneModule) -> None:
        if not trainer.sanity_checking:
            self.trial.set_user_attr("epochs", module.epochs_validated)
            self.trial.set_user_attr("val_accuracy", module.best_val_acc)


class _Search:
    """One worker's view of the study: the objective and the after-trial callback."""

    def __init__(self, ft: Mapping[str, Any], seed: int, device: str, task: Task, candidates: Sequence[BankEntry],
                 space: SearchSpace, study_name: str, budget: Budget, run_dir: Path,
                 on_trial_finished: Callable[[TrialResult], None] | None):
        self.task, self.space, self.study_name, self.budget = task, space, study_name, budget
        self.candidates = {entry.name: entry for entry in candidates}
        self.defaults = dict(ft["default_hparams"])
        self.max_epochs = int(ft["max_epochs"])
        self.seed = seed
        self.device = select_device(device)
        self.precision = str(ft["precision"])
        self.num_workers = ft["num_workers"]
        self.augment = ft["augment"]
        self.limit_train_batches = ft["limit_train_batches"]
        self.progress_bar = bool(ft["progress_bar"])
        self.artifacts = Path(str(ft["artifacts_dir"])).expanduser().resolve() / study_name
        self.run_dir = run_dir
        self.on_trial_finished = on_trial_finished

    def objective(self, trial: optuna.Trial) -> float:
        self.budget.admit(trial.study, trial)
        start = time.monotonic()
        try:
            params = self.space.suggest(trial)
            values = {**self.defaults, **self.space.fixed, **{k: v for k, v in params.items() if k != MODEL_PARAM}}
            trial.set_user_attr(_HPARAMS, values)
            hparams = Hparams.from_mapping(values, where=f"trial {trial.number}")
            if hparams.epochs > self.max_epochs:
                raise ValueError(f"trial {trial.number}: epochs={hparams.epochs} exceeds finetune.max_epochs="
                                 f"{self.max_epochs}")
            result = fit_once(
                self.candidates[params[MODEL_PARAM]], self.task, hparams, device=self.device, seed=self.seed,
                precision=self.precision, num_workers=self.num_workers, augment=self.augment,
                limit_train_batches=self.limit_train_batches, progress_bar=self.progress_bar,
                # progress first: a pruned trial keeps the epochs and accuracy it reached
                callbacks=[_TrialProgress(trial), PyTorchLightningPruningCallback(trial, monitor="val_acc")])
            self._keep_best(trial, result)
            return result.val_accuracy
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr(_FAIL_REASON, f"{type(exc).__name__}: {exc}"[:2000])
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            trial.study.enqueue_trial(trial.params)  # run it again on resume, without waiting for staleness
            raise
        finally:
            trial.set_user_attr("seconds", round(time.monotonic() - start, 3))

    def _keep_best(self, trial: optuna.Trial, result: FitResult) -> None:
        """Save the best-epoch weights and record what the fit measured on the trial."""
        weights = save_weights(result.best_state, self.artifacts / f"trial-{trial.number}.safetensors")
        trial.set_user_attr("epochs", result.epochs)
        trial.set_user_attr("val_accuracy", result.val_accuracy)
        trial.set_user_attr("test_accuracy", result.test_accuracy)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr(_DATA_CONFIG, result.data_config)
        trial.set_user_attr(_WEIGHTS, str(weights))

    def after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback in this worker: one summary line, finetune.csv, then the caller's hook."""
        if self.device.startswith("cuda"):  # Optuna has collected the trial's garbage: return its GPU memory
            torch.cuda.empty_cache()
        if trial.user_attrs.get(_OVER_BUDGET):
            return
        result = TrialResult.from_trial(self.study_name, trial)
        trials = study.get_trials(deepcopy=False)
        log.info("%s [%d/%s counted]", _summary(result), sum(map(counts, trials)), self.budget.n_trials or "-")
        write_csv(self.run_dir / "finetune.csv", finished_results(trials, self.study_name))
        if self.on_trial_finished is not None:
            try:
                self.on_trial_finished(result)
            except Exception:  # the trial is safely in the study; a failing hook must not end the search
                log.exception("on_trial_finished failed for trial %d", trial.number)


def _summary(result: TrialResult) -> str:
    head = f"trial {result.number} {result.state:8s} {result.model}"
    if result.state == "FAIL":
        return f"{head}: {result.fail_reason}"
    val = "-" if result.val_accuracy is None else f"{result.val_accuracy:.2f}%"
    test = "-" if result.test_accuracy is None else f"{result.test_accuracy:.2f}%"
    return f"{head}: val {val} test {test} ({result.epochs} epochs, {result.seconds:.1f} s)"


def finished_results(trials: Iterable[FrozenTrial], study_name: str) -> list[TrialResult]:
    """A study's finished ``trials`` as results, in their order (budget-check stubs left out)."""
    return [TrialResult.from_trial(study_name, t) for t in trials
            if t.state.is_finished() and not t.user_attrs.get(_OVER_BUDGET)]


def write_csv(path: Path, results: Iterable[TrialResult]) -> Path:
    """``trial, model, state, <hyperparameters>, val_accuracy, test_accuracy, epochs, seconds`` (atomic).

    ``epochs`` is the number of epochs trained; the ``epochs`` hyperparameter (the planned number, more
    than trained when pruned) is the column ``planned_epochs``.
    """
    hparam_columns = ["planned_epochs" if name == "epochs" else name for name in HPARAM_NAMES]
    columns = ["trial", "model", "state", *hparam_columns, "val_accuracy", "test_accuracy", "epochs", "seconds"]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for r in results:
            accuracies = ["" if v is None else round(v, 4) for v in (r.val_accuracy, r.test_accuracy)]
            writer.writerow([r.number, r.model or "", r.state, *(r.hparams.get(k, "") for k in HPARAM_NAMES),
                             *accuracies, r.epochs, round(r.seconds, 2)])
    return path


def _check_finetune_cfg(ft: Mapping[str, Any]) -> None:
    unknown = sorted(set(ft) - _FINETUNE_KEYS)
    if unknown:
        raise ValueError(f"finetune: unknown key(s) {unknown}; known: {sorted(_FINETUNE_KEYS)}")
    n_trials, minutes = ft.get("n_trials"), ft.get("time_budget_min")
    if n_trials is None and minutes is None:
        raise ValueError("finetune: set n_trials and/or time_budget_min (the search needs a budget)")
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
        raise ValueError(f"finetune.n_trials={n_trials!r} must be an integer >= 1 (or null)")
    if minutes is not None and not (isinstance(minutes, int | float) and minutes > 0):
        raise ValueError(f"finetune.time_budget_min={minutes!r} must be a positive number of minutes (or null)")
    for key in ("top_k", "max_epochs", "reduction_factor", "torch_threads"):
        value = ft.get(key)
        if key == "torch_threads" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"finetune.{key}={value!r} must be an integer >= 1")


def _open_study(name: str, storage: optuna.storages.RDBStorage, ft: Mapping[str, Any], seed: int,
                ) -> tuple[optuna.Study, bool]:
    """Create the study (True) or load it when another worker or run already did (False).

    The creating worker's sampler is seeded with ``seed`` (a single-worker search is reproducible);
    joining workers draw their own seed so that they do not propose the same points.
    """
    pruner = _pruner(str(ft["pruner"]), int(ft["max_epochs"]), int(ft["reduction_factor"]))
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                    sampler=_sampler(str(ft["sampler"]), seed), pruner=pruner)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage, sampler=_sampler(str(ft["sampler"]), None),
                                 pruner=pruner), False


def _join(study: optuna.Study, candidates: Sequence[BankEntry], space: Mapping[str, Any]) -> list[BankEntry]:
    """Check a loaded study was made for the same candidates and space; return them in its order."""
    attrs = study.user_attrs
    recorded = attrs.get("candidates")
    if recorded is None:  # its creator died before recording them
        return list(candidates)
    names = [entry.name for entry in candidates]
    if sorted(recorded) != sorted(names):
        raise ValueError(f"study {study.study_name!r} searches models {recorded}, but this run's candidates are "
                         f"{names}; use the same bank/top_k or another finetune.study")
    if attrs.get("search_space") != json.loads(json.dumps(space)):
        raise ValueError(f"study {study.study_name!r} was created with search space {attrs.get('search_space')}, "
                         f"not {space}; use the same search_space or another finetune.study")
    by_name = {entry.name: entry for entry in candidates}
    return [by_name[name] for name in recorded]


def _warm_start(study: optuna.Study, space: SearchSpace, candidates: Sequence[BankEntry],
                defaults: Mapping[str, Any], extra: Sequence[Mapping[str, Any]]) -> None:
    """Enqueue the default hyperparameters for each candidate (best-ranked first), then ``extra``."""
    configs = [{**defaults, MODEL_PARAM: entry.name} for entry in candidates]
    names = {entry.name for entry in candidates}
    for index, config in enumerate(extra):
        if config.get(MODEL_PARAM) in names:
            configs.append(dict(config))
        else:
            log.info("warm_start[%d]: model %r is not a candidate; skipped", index, config.get(MODEL_PARAM))
    enqueued = []
    for index, config in enumerate(configs):
        params = space.enqueueable(config, f"warm start {index}")
        study.enqueue_trial(params, skip_if_exists=True)
        enqueued.append(params)
    study.set_user_attr("warm_start", enqueued)


@dataclass(frozen=True)
class _Setup:
    """run_finetune's validated inputs."""

    ft: dict[str, Any]
    spec: dict[str, Any]
    candidates: list[BankEntry]
    space: SearchSpace
    name: str


def _setup(cfg: DictConfig, task: Task, candidates: Sequence[BankEntry]) -> _Setup:
    ft = to_container(cfg.finetune)
    _check_finetune_cfg(ft)
    candidates = list(candidates)[: ft["top_k"]]
    if not candidates:
        raise ValueError("finetune: no candidate models")
    if len({entry.name for entry in candidates}) != len(candidates):
        raise ValueError(f"finetune: duplicate candidate names {[entry.name for entry in candidates]}")
    spec = to_container(cfg.search_space) or {}
    space = SearchSpace(spec, [entry.name for entry in candidates])
    Hparams.from_mapping({**ft["default_hparams"], **space.fixed}, where="finetune.default_hparams")
    epochs = space.distributions.get("epochs")
    planned = (epochs.choices if isinstance(epochs, CategoricalDistribution) else [epochs.high] if epochs
               else [space.fixed.get("epochs", ft["default_hparams"]["epochs"])])
    if max(planned) > ft["max_epochs"]:
        raise ValueError(f"search_space.epochs reaches {max(planned)} > finetune.max_epochs={ft['max_epochs']}")
    name = ft["study"] or default_study_name(task, candidates, spec, ft)
    return _Setup(ft, spec, candidates, space, name)


def run_finetune(cfg: DictConfig, task: Task, candidates: Sequence[BankEntry], run_dir: str | Path, *,
                 storage: str, warm_start: Sequence[Mapping[str, Any]] = (),
                 on_trial_finished: Callable[[TrialResult], None] | None = None) -> FinetuneOutcome:
    """Search (model x hyperparameters) for ``task`` in one shared Optuna study; export the best model.

    Args:
        cfg: the composed config (uses ``finetune``, ``search_space``, ``seed``, ``device``).
        task: the task to fine-tune on.
        candidates: bank entries, best-ranked first; the first ``finetune.top_k`` are searched.
        run_dir: where ``finetune.csv`` and ``best/`` are written.
        storage: SQLAlchemy URL of the Optuna database (shared by all workers).
        warm_start: extra hyperparameter dicts with a ``model`` key (e.g. the best on similar tasks),
            enqueued after the per-candidate defaults when the study is created.
        on_trial_finished: called in this worker with every trial it finishes (COMPLETE, PRUNED, FAIL).

    Returns the study's trials, the best one and where it was exported. Budget and resume semantics:
    module docstring.
    """
    setup = _setup(cfg, task, candidates)
    ft, spec, name = setup.ft, setup.spec, setup.name
    candidates, space = setup.candidates, setup.space
    rdb = open_storage(storage, ft["heartbeat_interval"], ft["grace_period"], ft["max_retry"])
    study, created = _open_study(name, rdb, ft, int(cfg.seed))
    if created:
        study.set_user_attr("candidates", [entry.name for entry in candidates])
        study.set_user_attr("search_space", spec)
        study.set_user_attr("task", {"name": task.name, "fingerprint": task.fingerprint})
        if ft["warm_start"]:
            _warm_start(study, space, candidates, ft["default_hparams"], warm_start)
    else:
        candidates = _join(study, candidates, spec)
        space = SearchSpace(spec, [entry.name for entry in candidates])
        log.info("study %s: resuming with %d trial(s) already in it", name, len(study.get_trials(deepcopy=False)))

    run_dir = Path(run_dir)
    minutes = ft["time_budget_min"]
    budget = Budget(ft["n_trials"], None if minutes is None else time.monotonic() + 60 * minutes,
                    poll_s=min(5.0, ft["heartbeat_interval"]))
    search = _Search(ft, int(cfg.seed), str(cfg.device), task, candidates, space, name, budget, run_dir,
                     on_trial_finished)
    log.info("study %s in %s: models %s, budget %s trials / %s min", name, _redact(storage),
             [entry.name for entry in candidates], ft["n_trials"], minutes)
    with quiet_libraries(), torch_threads(ft.get("torch_threads")):
        while budget.wait_for_slot(study):
            study.optimize(search.objective, n_trials=1, catch=(Exception,), callbacks=[search.after_trial],
                           gc_after_trial=True)
    return _outcome(study, task, candidates, run_dir)


def load_outcome(cfg: DictConfig, task: Task, candidates: Sequence[BankEntry], run_dir: str | Path, *,
                 storage: str) -> FinetuneOutcome | None:
    """The study :func:`run_finetune` would use, summarised without training (None: no such study yet).

    Writes ``finetune.csv`` and exports the best trial to ``run_dir/best`` like a finished search.
    """
    setup = _setup(cfg, task, candidates)
    rdb = open_storage(storage, setup.ft["heartbeat_interval"], setup.ft["grace_period"], setup.ft["max_retry"])
    try:
        study = optuna.load_study(study_name=setup.name, storage=rdb)
    except KeyError:
        return None
    return _outcome(study, task, _join(study, setup.candidates, setup.spec), Path(run_dir))


def _outcome(study: optuna.Study, task: Task, candidates: Sequence[BankEntry], run_dir: Path) -> FinetuneOutcome:
    """finetune.csv, the best COMPLETE trial (ties: lowest number) exported to run_dir/best."""
    trials = study.get_trials(deepcopy=False)  # by number: trials[n].number == n
    results = finished_results(trials, study.study_name)
    csv_path = write_csv(run_dir / "finetune.csv", results)
    best = max((r for r in results if r.state == "COMPLETE" and r.val_accuracy is not None),
               key=lambda r: (r.val_accuracy, -r.number), default=None)
    best_dir = None
    if best is not None:
        entry = next(entry for entry in candidates if entry.name == best.model)
        best_dir = _export_best(best, trials[best.number], entry, task, run_dir)
    return FinetuneOutcome(study=study.study_name, trials=results, best=best, best_dir=best_dir, csv=csv_path,
                           n_counted=sum(map(counts, trials)), optuna_study=study)


def _export_best(best: TrialResult, trial: FrozenTrial, entry: BankEntry, task: Task, run_dir: Path) -> Path | None:
    if best.weights is None or not best.weights.is_file():
        log.warning("best trial %d: weights %s are not on this machine (share finetune.artifacts_dir "
                    "between workers); best/ not exported here", best.number, best.weights)
        return None
    config = {
        "arch": entry.arch,
        "kwargs": entry.kwargs,
        "num_classes": task.num_classes,
        "classes": list(task.classes),
        "data_config": trial.user_attrs[_DATA_CONFIG],
        "source": {"model": entry.name, "weights": entry.weights, "digest": weights_digest(entry),
                   "source": dataclasses.asdict(entry.source) if entry.source else None},
        "task": {"name": task.name, "fingerprint": task.fingerprint},
        "study": best.study,
        "trial": best.number,
        "hparams": best.hparams,
        "val_accuracy": best.val_accuracy,
        "test_accuracy": best.test_accuracy,
    }
    out = export_model(run_dir / "best", best.weights, config)
    log.info("best: trial %d %s, val %.2f%% test %.2f%% -> %s", best.number, best.model, best.val_accuracy,
             best.test_accuracy, out)
    return out


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


# -------------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> None:
    """``python -m automl.finetune.search --run-dir DIR [overrides]``: one finetune worker without ranking.

    Searches the bank's first ``finetune.top_k`` entries in manifest order (``python -m automl
    stage=finetune`` passes the ranked top-k instead); several of these on one study share its budget.
    """
    parser = argparse.ArgumentParser(prog="python -m automl.finetune.search", description=main.__doc__)
    parser.add_argument("--run-dir", type=Path, required=True, help="where finetune.csv and best/ go")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. task=digits finetune.n_trials=6")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    from automl.bank import load_bank
    from automl.config import compose
    from automl.tasks import load_task

    cfg = compose(args.overrides)
    task = load_task(cfg.task, cfg.cache_dir)
    bank = load_bank(cfg.bank, cfg.cache_dir)
    try:
        outcome = run_finetune(cfg, task, list(bank), args.run_dir, storage=str(cfg.storage))
    except KeyboardInterrupt:
        print("interrupted: the running trial is queued again; rerun the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None
    best = outcome.best
    print(f"study {outcome.study}: {outcome.n_counted} counted trial(s); best: "
          + (f"trial {best.number} {best.model} val {best.val_accuracy:.2f}% test {best.test_accuracy:.2f}%"
             if best else "none"))


if __name__ == "__main__":
    main()
