"""Who runs the trials: this process, or one spawned worker process per device (``finetune.devices``).

A :class:`Worker` is one process's share of the search: it asks the shared study for trials until the budget
is spent (the exact-budget protocol of :mod:`automl.finetune.search` keeps the total exact whatever the
number of workers). With several devices, :func:`run_workers` spawns one worker per device, all on the one
study, and returns when they have all ended; the caller then refits and exports once. Each worker

* trains on its own device: a GPU worker sees only its GPU (``CUDA_VISIBLE_DEVICES``), so nothing it does
  touches the others' memory; CPU workers (``device=cpu``, ``finetune.devices=N``) share the cores;
* runs ``finetune.torch_threads`` torch threads, by default the usable cores split evenly;
* logs through this process's handlers (console and the run's log), and shows no live progress line;
* leaves the trials it finishes in the study, where this process hands them to ``on_trial_finished``.

Processes are started with ``spawn`` (a forked CUDA context is unusable) in their own process group, so a
Ctrl-C reaches this process only, which interrupts each worker once: they re-queue their running trials and
stop, and the Ctrl-C goes on up (exit 130; a rerun resumes). A worker that fails stops the others the same
way and its exception is raised here; a worker whose parent died stops before its next trial.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from automl.bank import BankEntry
from automl.errors import AutomlError
from automl.finetune.attrs import OVER_BUDGET, WORKER
from automl.finetune.budget import Budget
from automl.finetune.fit import quiet_libraries, torch_threads
from automl.finetune.objective import Objective, worker_id
from automl.finetune.results import TrialResult
from automl.finetune.space import SearchSpace
from automl.finetune.study import open_storage, open_study
from automl.images.tasks import Task
from automl.settings import FinetuneSettings

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the parent looks for trials its workers finished
STOP_TIMEOUT_S = 120.0  # how long an interrupted worker has to re-queue its trial before it is terminated
_LOGGERS = ("", "automl")  # whose levels a worker takes from this process (Hydra's job_logging sets both)


class WorkerError(RuntimeError):
    """A worker process failed outside any trial (a failing trial is recorded in the study instead)."""


@dataclass(frozen=True)
class Worker:
    """One process's share of the search on one study (picklable: it crosses the spawn)."""

    task: Task
    candidates: list[BankEntry]
    space: SearchSpace
    settings: FinetuneSettings
    storage: str
    study: str
    seed: int
    run_dir: Path
    artifacts: Path

    def run(self, optuna_study: optuna.Study, device: str, threads: int | None, *, device_name: str | None = None,
            on_trial_finished: Callable[[TrialResult], None] | None = None,
            keep_going: Callable[[], bool] = lambda: True) -> None:
        """Run trials on ``device`` with ``threads`` torch threads until the budget is spent (or ``keep_going()``
        turns False); ``device_name`` is what the trials record (default ``device``)."""
        minutes = self.settings.time_budget_min
        budget = Budget(self.settings.n_trials, None if minutes is None else time.monotonic() + 60 * minutes,
                        poll_s=min(5.0, self.settings.heartbeat_interval), grace_period=self.settings.grace_period)
        objective = Objective(self.settings, self.seed, device, self.task, self.candidates, self.space, self.study,
                              budget, self.run_dir, self.artifacts, on_trial_finished, device_name=device_name)
        with torch_threads(threads):
            while keep_going() and budget.wait_for_slot(optuna_study):
                optuna_study.optimize(objective.objective, n_trials=1, catch=(Exception,),
                                      callbacks=[objective.after_trial], gc_after_trial=True)


def worker_devices(devices: Any, device: str) -> list[str]:
    """The device of each worker that ``finetune.devices`` asks for, on the run's resolved ``device``: ``[device]``
    for 1 (or ``auto`` without CUDA); ``cuda:<i>`` for the i-th visible GPU; ``cpu`` once per CPU worker."""
    if devices == 1 or (devices == "auto" and not device.startswith("cuda")):
        return [device]
    if device == "cpu" and isinstance(devices, int):
        return ["cpu"] * devices
    if not device.startswith("cuda"):
        raise AutomlError(f"finetune.devices={devices} lists GPUs, and device={device} has none; use device=cuda, "
                          "or a count of CPU workers with device=cpu")
    import torch

    count = torch.cuda.device_count()
    indices = (range(count) if devices == "auto" else range(devices) if isinstance(devices, int) else devices)
    if any(index >= count for index in indices):
        raise AutomlError(f"finetune.devices={devices}: this machine has {count} visible GPU(s), "
                          f"indices 0 to {count - 1}")
    return [f"cuda:{index}" for index in indices]


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_workers(optuna_study: optuna.Study, worker: Worker, devices: Sequence[str],
                on_trial_finished: Callable[[TrialResult], None] | None = None) -> None:
    """One spawned worker per entry of ``devices`` on ``optuna_study`` (created and set up already); returns
    when they have all ended, raises a worker's exception (after stopping the others), and hands every trial
    they finish to ``on_trial_finished`` in this process (module docstring)."""
    threads = worker.settings.torch_threads or max(1, usable_cores() // len(devices))
    worker = dataclasses.replace(worker, settings=dataclasses.replace(worker.settings, progress_bar=False))
    context = multiprocessing.get_context("spawn")
    logs, errors = context.Queue(), context.Queue()
    listener = logging.handlers.QueueListener(logs, *logging.getLogger().handlers, respect_handler_level=True)
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    log.info("finetune: %d workers on %s, %d torch thread(s) each", len(devices), ", ".join(devices), threads)
    listener.start()
    processes: list[multiprocessing.Process] = []
    try:
        jobs = []
        for index, name in enumerate(devices):
            reader, writer = context.Pipe(duplex=False)
            with _pinned(name):
                process = context.Process(target=_work_in_process, name=f"automl-worker-{index}",
                                          args=(reader, logs, levels, errors))
                process.start()
            reader.close()
            processes.append(process)
            jobs.append(writer)
        # Each worker's job is sent once all are started: a pickle larger than a pipe's buffer (a task's paths) waits
        # until its worker reads it, after importing torch and the rest, and the workers import at the same time.
        for writer, name in zip(jobs, devices, strict=True):
            with writer:
                writer.send((worker, name, threads))
        _watch(optuna_study, processes, devices, errors, on_trial_finished)
    except BaseException:
        _stop(processes)
        raise
    finally:
        listener.stop()


@contextlib.contextmanager
def _pinned(device: str) -> Iterator[None]:
    """A process started inside sees only ``device``'s GPU (``cuda:<i>``: the i-th one this process sees)."""
    if not device.startswith("cuda"):
        yield
        return
    index = int(device.partition(":")[2] or 0)
    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = previous.split(",") if previous else None
    os.environ["CUDA_VISIBLE_DEVICES"] = visible[index] if visible else str(index)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = previous


def _work_in_process(job: multiprocessing.connection.Connection, logs: multiprocessing.Queue, levels: dict[str, int],
                     errors: multiprocessing.Queue) -> None:
    """A spawned worker's body: its own process group (Ctrl-C comes from the parent), logging to the parent, its
    job (worker, device, threads) read, the study joined, trials run; an exception is sent to the parent, Ctrl-C
    exits 130."""
    os.setpgrp()
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(logs)]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    parent = multiprocessing.parent_process()
    device_name = "?"
    try:
        with job:
            worker, device_name, threads = job.recv()
        with quiet_libraries():
            optuna_study, _ = open_study(worker.study, open_storage(worker.storage, worker.settings), worker.settings,
                                         worker.seed)
            log.debug("worker %s on %s joined study %s", worker_id(), device_name, worker.study)
            worker.run(optuna_study, "cuda" if device_name.startswith("cuda") else device_name, threads,
                       device_name=device_name, keep_going=lambda: parent is None or parent.is_alive())
            log.debug("worker %s on %s: no more trials for it", worker_id(), device_name)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except BaseException as exc:
        log.debug("worker on %s failed", device_name, exc_info=True)  # the traceback, for the run's log
        errors.put((device_name, _portable(exc)))
        raise SystemExit(1) from None


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (an :class:`AutomlError` keeps its type and message), else a
    :class:`WorkerError` with its type and message."""
    try:
        return pickle.loads(pickle.dumps(exc))
    except Exception:
        return WorkerError(f"{type(exc).__name__}: {exc}")


def _watch(optuna_study: optuna.Study, processes: Sequence[multiprocessing.Process], devices: Sequence[str],
           errors: multiprocessing.Queue, on_trial_finished: Callable[[TrialResult], None] | None) -> None:
    """Wait for the workers to end, handing the trials they finish to ``on_trial_finished``; a worker that
    fails raises its exception, one that was interrupted a KeyboardInterrupt."""
    mine = {worker_id(process.pid) for process in processes}
    reported: set[int] = set()
    while True:
        multiprocessing.connection.wait([process.sentinel for process in processes], timeout=POLL_S)
        if on_trial_finished is not None:
            for trial in optuna_study.get_trials(deepcopy=False):
                if (trial.number not in reported and trial.state.is_finished() and trial.user_attrs.get(WORKER) in mine
                        and not trial.user_attrs.get(OVER_BUDGET)):
                    reported.add(trial.number)
                    _hand_over(on_trial_finished, TrialResult.from_trial(optuna_study.study_name, trial))
        if any(process.exitcode == 130 for process in processes):
            raise KeyboardInterrupt
        failed = [process for process in processes if process.exitcode not in (None, 0)]
        if failed:
            raise _failure(failed[0], devices[processes.index(failed[0])], errors)
        if all(process.exitcode == 0 for process in processes):
            return


def _hand_over(on_trial_finished: Callable[[TrialResult], None], result: TrialResult) -> None:
    try:
        on_trial_finished(result)
    except Exception:  # the trial is safely in the study; a failing hook must not end the search
        log.exception("on_trial_finished failed for trial %d", result.number)


def _failure(process: multiprocessing.Process, device: str, errors: multiprocessing.Queue) -> BaseException:
    """The exception a failed worker sent (an :class:`AutomlError` as it is, anything else as a
    :class:`WorkerError` naming its device), or a WorkerError saying how ``process`` on ``device`` ended."""
    try:
        device, exc = errors.get(timeout=5.0)
    except queue.Empty:  # it died without a word (killed, out of host memory)
        return WorkerError(f"the finetune worker on {device} died (exit status {process.exitcode}); the run's "
                           "log has what it said last")
    if isinstance(exc, AutomlError):
        return exc
    what = str(exc) if isinstance(exc, WorkerError) else f"{type(exc).__name__}: {exc}"  # WorkerError: _portable's
    return WorkerError(f"the finetune worker on {device} failed: {what} (its traceback is in the run's log)")


def _stop(processes: Sequence[multiprocessing.Process]) -> None:
    """Interrupt every worker still running (each re-queues its trial), wait for them, terminate stragglers."""
    for process in processes:
        if process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.warning("worker %s did not stop within %.0f s; terminated", process.name, STOP_TIMEOUT_S)
            process.terminate()
            process.join()
