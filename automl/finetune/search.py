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
uses, :mod:`automl.finetune.objective`): it keeps its best-epoch weights and test predictions
(``<artifacts_dir>/<storage slug>/<study>/trial-<n>.*``: two storages never share a folder), evaluated
once on the test split (reported, never used for selection); pruning (successive halving or Hyperband
on ``val_acc`` per epoch) moves the budget to the candidates that measure better. At the end the best
trial by validation accuracy — retrained on train + val when ``finetune.refit`` (:mod:`.refit`) — is
exported to ``<run_dir>/best`` and ``finetune.csv`` lists the study's trials.

Scale-out: ``finetune.devices`` runs one worker process per GPU of this machine (or N CPU workers) on
the study, and refits once they have ended (:mod:`.workers`); across machines, start
``python -m automl stage=finetune finetune.study=<name> storage=postgresql://...`` on each, with a shared
``finetune.artifacts_dir``.

Modules: :mod:`.space` (the search space), :mod:`.budget` (the protocol above), :mod:`.study` (storage,
name, sampler, pruner, warm start), :mod:`.workers` (this process or one per device), :mod:`.objective`
(one trial), :mod:`.outcome` (results, CSV, export).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from automl._storage import redact_url, storage_slug, storage_url
from automl.bank import BankEntry
from automl.finetune.fit import quiet_libraries, torch_threads
from automl.finetune.outcome import best_trial, finished_results, read_outcome, write_outcome
from automl.finetune.refit import ensure_refit
from automl.finetune.results import FinetuneOutcome, TrialResult
from automl.finetune.space import SearchSpace, check_search
from automl.finetune.study import join_study, open_storage, open_study, warm_start
from automl.finetune.workers import Worker, run_workers, worker_devices
from automl.images.tasks import Task
from automl.settings import FinetuneSettings

log = logging.getLogger(__name__)


@quiet_libraries()  # from the start: a warm start's enqueueing is chatty too
def run_finetune(task: Task, candidates: Sequence[BankEntry], settings: FinetuneSettings,
                 search_space: Mapping[str, Any], *, storage: str, device: str, seed: int, run_dir: str | Path,
                 study: str, available: Mapping[str, BankEntry] | None = None,
                 warm: Sequence[Mapping[str, Any]] = (),
                 on_trial_finished: Callable[[TrialResult], None] | None = None) -> FinetuneOutcome:
    """Search (model x hyperparameters) for ``task`` in one shared Optuna study; export the best model.

    Args:
        task: the task to fine-tune on.
        candidates: the bank entries a new study chooses from, best-ranked first.
        settings, search_space: the study's budget, pruning, defaults and the searched distributions.
        storage: normalised SQLAlchemy URL of the Optuna database (shared by all workers).
        device: where trials train (resolved, not ``auto``); seed: every fit's seed and the sampler's.
        run_dir: where ``finetune.csv`` and ``best/`` are written.
        study: the study's name. An existing study is resumed with the candidates it recorded, looked up
            in ``available`` (default: ``candidates``), whatever ``candidates`` are now.
        warm: extra hyperparameter dicts with a ``model`` key (e.g. the best on similar tasks),
            enqueued after the per-candidate defaults when the study is created.
        on_trial_finished: called in this worker with every trial it finishes (COMPLETE, PRUNED, FAIL).

    Returns the study's trials, the best one and where it was exported. Budget and resume semantics:
    module docstring.
    """
    candidates = list(candidates)
    available = dict(available or {entry.name: entry for entry in candidates})
    space = check_search(settings, search_space, [entry.name for entry in candidates])
    optuna_study, created = open_study(study, open_storage(storage, settings), settings, seed)
    if created:
        optuna_study.set_user_attr("search_space", json.loads(json.dumps(search_space)))
        optuna_study.set_user_attr("task", {"name": task.name, "fingerprint": task.fingerprint})
        if settings.warm_start:
            warm_start(optuna_study, space, candidates, settings.default_hparams.as_dict(), warm)
        # Written last: a joining worker takes "candidates" as the sign that the study is fully set up.
        optuna_study.set_user_attr("candidates", [entry.name for entry in candidates])
    else:
        ranked = [entry.name for entry in candidates]
        candidates = join_study(optuna_study, candidates, available, search_space)
        if sorted(ranked) != sorted(entry.name for entry in candidates):
            log.info("study %s: resumed with the candidates it was created with, %s (this ranking's top: %s)",
                     study, [entry.name for entry in candidates], ranked)
        space = SearchSpace(search_space, [entry.name for entry in candidates])
        started = [t for t in optuna_study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
        log.info("study %s: resuming with %d trial(s) already run or running", study, len(started))

    run_dir = Path(run_dir)
    artifacts = Path(settings.artifacts_dir).expanduser().resolve() / storage_slug(storage) / study
    log.info("study %s in %s: models %s, budget %s", study, redact_url(storage),
             [entry.name for entry in candidates], budget_text(settings.n_trials, settings.time_budget_min))
    worker = Worker(task, candidates, space, settings, storage, study, seed, run_dir, artifacts)
    devices = worker_devices(settings.devices, device)
    if len(devices) > 1:
        run_workers(optuna_study, worker, devices, on_trial_finished)
    else:
        worker.run(optuna_study, devices[0], settings.torch_threads, on_trial_finished=on_trial_finished)
    with torch_threads(settings.torch_threads):
        best = best_trial(finished_results(optuna_study.get_trials(deepcopy=False), study))
        if settings.refit and best is not None:
            ensure_refit(optuna_study, best, available[best.model], task, settings, device=device, seed=seed,
                         artifacts=artifacts)
    return write_outcome(optuna_study, task, candidates, run_dir)


def budget_text(n_trials: int | None, minutes: float | None) -> str:
    """``4 trials``, ``30 min`` or ``4 trials or 30 min``: what stops the search first."""
    parts = [f"{n_trials} trial{'s' if n_trials != 1 else ''}" if n_trials is not None else "",
             f"{minutes:g} min" if minutes is not None else ""]
    return " or ".join(part for part in parts if part)


def load_outcome(storage: str, study: str, run_dir: str | Path) -> FinetuneOutcome | None:
    """The study ``study`` in ``storage`` as it stands (None: no such study there), read without
    training, writing or exporting anything: ``best_dir`` is ``run_dir/best`` when it holds the study's
    best model. A SQLite file that does not exist is not created."""
    url = storage_url(storage, make_folder=False)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return None
    try:
        optuna_study = optuna.load_study(study_name=study, storage=url)
    except KeyError:
        return None
    return read_outcome(optuna_study, Path(run_dir))
