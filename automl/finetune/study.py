"""The study itself: its storage (RDB with heartbeat and stale-trial retry), its name, sampler and pruner;
opening, joining and warm-starting it."""

from __future__ import annotations

import json
import logging
import random
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from automl._storage import SQLITE_TIMEOUT_S, storage_url
from automl.bank import BankEntry
from automl.errors import AutomlError
from automl.finetune.attrs import MODEL_PARAM, OOM_RETRIES, RESUMES
from automl.finetune.space import SearchSpace
from automl.settings import FinetuneSettings

try:  # optuna >= 4.9 names; older releases call the same callback RetryFailedTrialCallback
    from optuna.storages import RetryHeartbeatStaleTrialCallback as _RetryStale

    _RETRY_KWARG = "heartbeat_stale_trial_callback"
except ImportError:  # pragma: no cover
    from optuna.storages import RetryFailedTrialCallback as _RetryStale

    _RETRY_KWARG = "failed_trial_callback"

log = logging.getLogger(__name__)

_SCHEMA_ATTEMPTS = 5
_SETUP_WAIT_S = 10.0


def open_storage(url: str, settings: FinetuneSettings) -> optuna.storages.RDBStorage:
    """RDBStorage at ``url`` with the settings' heartbeat and stale-trial retry; SQLite writers wait for
    each other up to ``SQLITE_TIMEOUT_S``."""
    engine_kwargs = ({"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite")
                     else {"pool_pre_ping": True})
    for attempt in range(_SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    storage_url(url), engine_kwargs=engine_kwargs, heartbeat_interval=settings.heartbeat_interval,
                    grace_period=settings.grace_period, **{_RETRY_KWARG: _RetryStale(max_retry=settings.max_retry,
                                                    inherit_intermediate_values=True)})
        except sqlalchemy.exc.DBAPIError:
            # Workers starting together on a fresh database race to create Optuna's schema (the
            # loser hits a unique constraint); the next attempt finds it made.
            if attempt == _SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


def _sampler(kind: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if kind == "tpe":  # constant liar: concurrent workers avoid each other's running points
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(settings: FinetuneSettings) -> optuna.pruners.BasePruner:
    """Resources are epochs (Optuna's steps are 0-based epochs): the first decision after
    ``finetune.first_rung`` epochs, the next ones ``reduction_factor`` times later."""
    kind, first, factor = settings.pruner, max(1, settings.first_rung - 1), settings.reduction_factor
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=factor)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=settings.max_epochs,
                                              reduction_factor=factor)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=first)
    return optuna.pruners.NopPruner()


def open_study(name: str, storage: optuna.storages.RDBStorage, settings: FinetuneSettings, seed: int,
               ) -> tuple[optuna.Study, bool]:
    """Create the study (True) or load it when another worker or run already did (False).

    The creating worker's sampler is seeded with ``seed`` (a single-worker search is reproducible);
    joining workers draw their own seed so that they do not propose the same points.
    """
    pruner = make_pruner(settings)
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                    sampler=_sampler(settings.sampler, seed), pruner=pruner)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage, sampler=_sampler(settings.sampler, None),
                                 pruner=pruner), False


def join_study(study: optuna.Study, candidates: Sequence[BankEntry], available: Mapping[str, BankEntry],
               space: Mapping[str, Any]) -> list[BankEntry]:
    """The candidates a loaded study recorded (looked up in ``available``), after checking it searches the
    same space; ``candidates`` when its creator died before recording them.

    The creator records its candidates last; a worker that joins while the creator is still setting the
    study up waits up to ``_SETUP_WAIT_S`` for them instead of reading a half-written study.
    """
    deadline = time.monotonic() + _SETUP_WAIT_S
    attrs = study.user_attrs
    while "candidates" not in attrs and time.monotonic() < deadline:
        time.sleep(0.2)
        attrs = study.user_attrs
    recorded = attrs.get("candidates")
    if recorded is None:
        return list(candidates)
    if attrs.get("search_space") != json.loads(json.dumps(space)):
        raise AutomlError(f"study {study.study_name!r} was created with search space {attrs.get('search_space')}, "
                          f"not {space}; use the same search_space or another finetune.study")
    gone = [name for name in recorded if name not in available]
    if gone:
        raise AutomlError(f"study {study.study_name!r} searches models {recorded}, of which {gone} are not in this "
                          "bank; use the same bank or another finetune.study")
    return [available[name] for name in recorded]


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue ``trial`` to run again as Optuna's stale-trial retry does (same parameters, pruning rungs
    passed and epochs reported), carrying only which fit it continues (``RESUMES``) and the batch-size
    halvings it needed (``OOM_RETRIES``): an interrupted trial resumes from its checkpoint, with the batch
    size that trained it, judged by the pruner as if it had not stopped."""
    study.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={RESUMES: trial.user_attrs.get(RESUMES, trial.number),
                    OOM_RETRIES: trial.user_attrs.get(OOM_RETRIES, 0)},
        system_attrs=dict(trial.system_attrs), intermediate_values=dict(trial.intermediate_values)))


def warm_start(study: optuna.Study, space: SearchSpace, candidates: Sequence[BankEntry],
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
