"""Exact ``finetune.n_trials`` across workers and this worker's time budget (see
:mod:`automl.finetune.search` for the protocol)."""

from __future__ import annotations

import time
import warnings
from datetime import datetime, timedelta

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.finetune.attrs import ADMITTED, FAIL_REASON, OVER_BUDGET

POLL_S = 0.25  # admission re-check interval while another trial decides


def counts(trial: FrozenTrial) -> bool:
    """Whether ``trial`` counts towards ``finetune.n_trials`` (see the module docstring)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and FAIL_REASON in trial.user_attrs


class OverBudget(RuntimeError):
    """The trial started after other workers had taken the rest of the budget; it ends uncounted."""


class Budget:
    """Exact ``n_trials`` across workers (None: unlimited) and this worker's ``deadline`` (monotonic s)."""

    def __init__(self, n_trials: int | None, deadline: float | None, poll_s: float, grace_period: float = 120.0):
        self.n_trials, self.deadline, self.poll_s = n_trials, deadline, poll_s
        self.stale = StaleTrials(grace_period)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def wait_for_slot(self, study: optuna.Study) -> bool:
        """Block until this worker may start a trial (True) or the budget is spent (False)."""
        while not self.expired():
            if self.n_trials is None:
                return True
            self.stale.fail(study)
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
            ahead = [t for t in others if t.user_attrs.get(ADMITTED) == t.number or t.number < trial.number]
            pending = len(others) - len(ahead)
            if counted + len(ahead) >= self.n_trials:
                trial.set_user_attr(OVER_BUDGET, True)
                raise OverBudget(f"the budget of {self.n_trials} trials was taken by other workers "
                                 f"({counted} counted, {len(ahead)} running); trial {trial.number} ends uncounted")
            if pending == 0 or counted + len(others) < self.n_trials:
                break
            time.sleep(POLL_S)
            self.stale.fail(study)
        trial.set_user_attr(ADMITTED, trial.number)


class StaleTrials:
    """Fails the trials whose worker died, so that they are retried (``RetryHeartbeatStaleTrialCallback``).

    Optuna's ``fail_stale_trials`` only judges trials that recorded a heartbeat; a worker killed between
    creating its trial and the first heartbeat would leave it RUNNING for good, and the budget waiting on
    it. A RUNNING trial older than ``grace_period`` that this worker has not seen before is given one
    heartbeat: a live trial's own thread keeps it fresh, a dead one's goes stale and is failed one grace
    period later.
    """

    def __init__(self, grace_period: float):
        self.grace = timedelta(seconds=grace_period)
        self.seen: set[int] = set()

    def fail(self, study: optuna.Study) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        now = datetime.now()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start
            if trial._trial_id not in self.seen and started is not None and now - started > self.grace:
                self.seen.add(trial._trial_id)
                study._storage.record_heartbeat(trial._trial_id)
