"""Runs the configured stages (rank → finetune → calibrate → report) in one Hydra run folder."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy.exc
from rich.console import Console
from rich.table import Table

from automl._device import describe_hardware
from automl._storage import has_password, redact_url
from automl.bank import load_bank, weights_digest
from automl.errors import AutomlError
from automl.finetune import FinetuneOutcome, load_outcome, run_finetune
from automl.finetune.space import check_search
from automl.history import History, TransferRecord, similar_task_hparams
from automl.images.tasks import load_task
from automl.predictor import format_calibration, leave_one_task_out
from automl.rank.stage import Ranking, rank_bank, ranking_table, write_ranking_csv
from automl.run.folder import RUN_FILE, RunRecord, read_record, record_ranking, recorded_ranking, write_record
from automl.run.recorder import TrialRecorder
from automl.run.report import write_report
from automl.settings import AutomlSettings

log = logging.getLogger(__name__)

class StageClock:
    """Wall time per stage, in the order the stages ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class RunResult:
    """What the stages of a run made: its ranking (None for ``stage=calibrate`` or ``stage=report`` alone:
    a report reads the run's record, not the bank) and its study's outcome (None unless it fine-tuned or
    reported)."""

    ranking: Ranking | None
    outcome: FinetuneOutcome | None

    @property
    def best_val_accuracy(self) -> float | None:
        """The best trial's validation accuracy (percent): what a Hydra sweeper would maximise."""
        best = self.outcome.best if self.outcome is not None else None
        return best.val_accuracy if best is not None else None


def run(settings: AutomlSettings, run_dir: Path, console: Console | None = None) -> RunResult:
    """Run ``settings.stage`` (or all stages) in ``run_dir``.

    A folder that already holds a run of the same task and bank (:mod:`automl.run.folder`) is resumed: its
    ranking and study are reused. ``stage=report`` reads only the folder's record and the study it names
    (loading neither task nor bank). Elsewhere ``stage=finetune`` ranks first (cached features make that
    seconds); the study and history come from ``settings.storage``.
    """
    stages = settings.stages
    console = console or Console()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if "finetune" in stages:  # checked before anything runs: a bad search space should not wait for the ranking
        check_search(settings.finetune, settings.search_space, ["model"])
    clock = StageClock()
    report_only = stages == ("report",)
    history = None if report_only else open_history(settings.storage)

    ranking = outcome = record = None
    calibration_text = None
    if report_only:
        record = _recorded_run(run_dir)
    elif stages != ("calibrate",):
        records = history.records()  # before fine-tuning adds to it: what the ranking and warm start learn from
        with clock("rank"):
            ranking, record, bank = _ranking(settings, run_dir, records)
        if record.stage_seconds.get("rank"):  # a resumed run: its ranking was read, not made again
            clock.seconds["load run"] = clock.seconds.pop("rank")
        record.hardware = describe_hardware(settings.device)
        console.print(ranking_table(ranking, settings.rank.show))

    if "finetune" in stages:
        with clock("finetune"):
            outcome = _finetune(settings, ranking, bank, record, run_dir, history, records)
    elif report_only:
        with clock("load study"):
            outcome = _recorded_outcome(settings, record, run_dir)

    if "calibrate" in stages:
        with clock("calibrate"):
            calibration_text = _calibrate(settings, history, console)

    if "report" in stages:
        with clock("report"):
            seconds = {**record.stage_seconds, **clock.seconds}  # earlier stages in this folder too
            report = write_report(run_dir, record, outcome, stage_seconds=seconds,
                                  calibration_table=calibration_text)
        log.info("report: %s", report)
    if record is not None:
        record.stage_seconds.update({k: v for k, v in clock.seconds.items() if k not in ("load study", "load run")})
        write_record(run_dir, record)
        console.print(summary_table(record, outcome, clock.seconds, run_dir))
    if "finetune" in stages and (outcome is None or outcome.best is None):
        raise NothingExported(outcome)
    return RunResult(ranking, outcome)


class NothingExported(AutomlError):
    """The search ended without a complete trial, so there is no model to hand back."""

    def __init__(self, outcome):
        reasons = sorted({t.fail_reason for t in outcome.trials if t.fail_reason}) if outcome else []
        super().__init__("no trial completed, so nothing was exported to best/"
                         + (f"; the trials failed with: {'; '.join(reasons[:3])}" if reasons else "")
                         + " (finetune.csv lists every trial)")


def open_history(storage: str) -> History:
    """The history at ``storage``; a database that cannot be reached is an error naming the setting."""
    try:
        return History(storage)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()[0]
        raise StorageError(f"storage={redact_url(storage)}: cannot open the database ({reason}); check the URL, "
                           "that the server runs and accepts this user") from None


class StorageError(AutomlError):
    """The ``storage`` database cannot be used."""


def _recorded_run(run_dir: Path) -> RunRecord:
    """The record of the run in ``run_dir``, which ``stage=report`` reads (an error if there is none)."""
    record = read_record(run_dir)
    if record is None:
        raise AutomlError(f"stage=report reads a run folder, and {run_dir} holds no run ({RUN_FILE}); point "
                          "hydra.run.dir at the folder of the run to report")
    return record


def _recorded_outcome(settings: AutomlSettings, record: RunRecord, run_dir: Path) -> FinetuneOutcome | None:
    """The outcome of the study the run recorded (None: it did not fine-tune), read from the storage it
    recorded, else ``settings.storage``; a study found in neither is an error, not a shorter report."""
    if record.study is None:
        return None
    storages = list(dict.fromkeys(url for url in (record.storage, settings.storage) if url))
    for storage in storages:
        outcome = load_outcome(storage, record.study, run_dir)
        if outcome is not None:
            return outcome
    raise AutomlError(f"{run_dir}: the run's study {record.study!r} is not in "
                      f"{' nor '.join(f'storage={redact_url(url)}' for url in storages)}; pass the storage= the "
                      "run used")


def _ranking(settings: AutomlSettings, run_dir: Path, records: list[TransferRecord]):
    """The run's ranking: the one the folder recorded, unless the stage is to rank; else ranked now."""
    task = load_task(settings.task, settings.cache_dir)
    bank = load_bank(settings.bank, settings.cache_dir)
    record = read_record(run_dir)
    if record is not None and not record.matches(task, bank):
        raise AutomlError(f"{run_dir} holds a run of task {record.task.name!r} (fingerprint "
                          f"{record.task.fingerprint}) with bank {record.bank!r}, not this one; use another "
                          "hydra.run.dir")
    if record is not None and settings.stages != ("rank",):
        log.info("%s: resuming the run recorded there (its ranking%s)", run_dir,
                 f" and study {record.study}" if record.study else "")
        return recorded_ranking(record, task, bank), record, bank
    ranking = rank_bank(task, bank, probe=settings.probe, rank=settings.rank, cache_dir=Path(settings.cache_dir),
                        history_records=records, device=settings.device, on_error=settings.bank.on_error)
    write_ranking_csv(ranking, run_dir / "ranking.csv")
    record = record_ranking(ranking, bank)
    write_record(run_dir, record)
    return ranking, record, bank


def _finetune(settings: AutomlSettings, ranking: Ranking, bank, record: RunRecord, run_dir: Path, history: History,
              records: list[TransferRecord]) -> FinetuneOutcome:
    """Run the run's study (resumed when the record names one) and record it in ``run.json``."""
    candidates = [model.entry for model in ranking.top(settings.finetune.top_k)]
    study = record.study or settings.finetune.study or study_name(ranking.task, bank, settings)
    available = {entry.name: entry for entry in bank}
    warm = similar_task_hparams(records, ranking.task.meta(), [entry.name for entry in candidates])
    outcome = run_finetune(ranking.task, candidates, settings.finetune, settings.search_space,
                           storage=settings.storage, device=settings.device, seed=settings.seed, run_dir=run_dir,
                           study=study, available=available, warm=warm,
                           on_trial_finished=TrialRecorder(history, ranking.task, ranking.models))
    record.study, record.candidates = outcome.study, outcome.candidates
    record.storage = None if has_password(settings.storage) else settings.storage
    write_record(run_dir, record)
    return outcome


def study_name(task, bank, settings: AutomlSettings) -> str:
    """``finetune-<task>-<12 hex>``: a digest of the run's inputs — the task, the whole bank, the probe, the
    ranking and fine-tuning settings and the search space — and not of what a grown history ranks
    first, so the same command finds the same study."""
    finetune = {k: v for k, v in dataclasses.asdict(settings.finetune).items() if k not in OPERATIONAL}
    key = {"task": task.fingerprint, "image_size": task.image_size,
           "bank": [[entry.name, weights_digest(entry)] for entry in bank],
           "probe": dataclasses.asdict(settings.probe), "rank": dataclasses.asdict(settings.rank),
           "finetune": finetune, "space": settings.search_space}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"finetune-{re.sub(r'[^A-Za-z0-9_.-]+', '_', task.name)}-{digest}"


# how fine-tuning runs, not what it measures: workers with other values still share the study
OPERATIONAL = {"n_trials", "time_budget_min", "study", "artifacts_dir", "precision", "channels_last", "num_workers",
               "torch_threads", "pixel_cache_gb", "progress_bar", "heartbeat_interval", "grace_period", "max_retry",
               "min_batch_size", "devices", "logger", "mlflow_uri"}


def _calibrate(settings: AutomlSettings, history: History, console: Console) -> str | None:
    records = history.records()
    try:
        result = leave_one_task_out(records, settings.rank.predictor)
    except ValueError as exc:
        console.print(f"[yellow]calibrate:[/] {exc}")
        return None
    table = format_calibration(result)
    console.print(table)
    text = Console(file=io.StringIO(), width=120)
    text.print(table)
    return text.file.getvalue()


def summary_table(record: RunRecord, outcome: FinetuneOutcome | None, seconds: dict[str, float], run_dir: Path
                  ) -> Table:
    """The run at a glance, within 80 columns: a long model name folds onto a second line, never cut."""
    table = Table(title=f"automl summary — {run_dir}")
    table.add_column("model", overflow="fold", min_width=12)
    table.add_column("predicted acc %", justify="right", no_wrap=True)
    if outcome is not None:
        table.add_column("trials", justify="right", no_wrap=True)
        table.add_column("measured acc %", justify="right", no_wrap=True)
    trials = outcome.trials if outcome is not None else []
    best_trials = outcome.best_by_model() if outcome is not None else {}
    tried = {trial.model for trial in trials}
    for model in record.top(max(3, len(tried))):
        cells = [model.name, f"{model.predicted:.1f} [{model.low:.1f}, {model.high:.1f}]"]
        if outcome is not None:
            cells += [str(sum(trial.model == model.name for trial in trials)),
                      _measured(model.name, trials, best_trials.get(model.name))]
        table.add_row(*cells)
    best = outcome.best if outcome is not None else None
    captions = [f"skipped {name}: {reason.splitlines()[0]}" for name, reason in record.failed.items()]
    if best is not None:
        refit = " (refit on train + val)" if outcome.refit is not None else ""
        where = f" → {outcome.best_dir}" if outcome.best_dir is not None else ""
        captions.append(f"best: {best.model}{refit} — test accuracy {outcome.test_accuracy:.1f}%{where}")
    captions.append("time: " + ", ".join(f"{name} {secs:.0f}s" for name, secs in seconds.items()))
    table.caption = "\n".join(captions)
    return table


def _measured(model: str, trials, best) -> str:
    """``model``'s best complete trial's test accuracy, else how far its pruned trials got."""
    if best is not None and best.test_accuracy is not None:
        return f"test {best.test_accuracy:.1f}"
    pruned = [t.val_accuracy for t in trials if t.model == model and t.state == "PRUNED" and t.val_accuracy is not None]
    return f"pruned (val {max(pruned):.1f})" if pruned else "—"
