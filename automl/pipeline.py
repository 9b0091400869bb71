"""Runs the configured stages (rank → finetune → calibrate → report) in one Hydra run folder."""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from automl.bank import load_bank
from automl.history import History, TransferRecord
from automl.predictor import format_calibration, leave_one_task_out, predictor_options
from automl.rank import Ranking, rank_bank, ranking_table, write_ranking_csv
from automl.settings import AutomlSettings
from automl.tasks import load_task

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


def run(settings: AutomlSettings, run_dir: Path, console: Console | None = None) -> float | None:
    """Run ``settings.stage`` (or all stages) and return the best validation accuracy (percent) when fine-tuned.

    ``stage=finetune`` and ``stage=report`` rank first (features are cached, so that takes seconds) so any
    stage can run alone in a fresh run folder; the study and history come from ``settings.storage``.
    """
    stages = settings.stages
    console = console or Console()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    clock = StageClock()
    history = History(settings.storage)

    ranking = outcome = None
    calibration_text = None
    if stages != ("calibrate",):
        records = history.records()  # before fine-tuning adds to it: what the ranking and warm start learn from
        with clock("rank"):
            ranking = _rank(settings, records)
            write_ranking_csv(ranking, run_dir / "ranking.csv")
        console.print(ranking_table(ranking, settings.rank.show, primary=settings.rank.primary))

    if "finetune" in stages or "report" in stages:
        with clock("finetune" if "finetune" in stages else "load study"):
            outcome = _finetune(settings, ranking, run_dir, history, records, train="finetune" in stages)

    if "calibrate" in stages:
        with clock("calibrate"):
            calibration_text = _calibrate(settings, history, console)

    if "report" in stages:
        with clock("report"):
            from automl.report import write_report

            predictions = _test_predictions(outcome)
            report = write_report(run_dir, ranking, outcome=outcome, stage_seconds=clock.seconds,
                                  test_predictions=predictions, calibration_table=calibration_text)
        log.info("report: %s", report)

    console.print(_summary(ranking, outcome, clock.seconds, run_dir))
    return outcome.best.val_accuracy if outcome is not None and outcome.best is not None else None


def _rank(settings: AutomlSettings, records: list[TransferRecord]) -> Ranking:
    task = load_task(settings.task, settings.cache_dir)
    bank = load_bank(settings.bank, settings.cache_dir)
    return rank_bank(task, bank, probe=settings.probe, rank=settings.rank, cache_dir=Path(settings.cache_dir),
                     history_records=records, device=settings.device)


def _finetune(settings: AutomlSettings, ranking: Ranking, run_dir: Path, history: History,
              records: list[TransferRecord], train: bool):
    """Run (``train=True``) or only load (for a report) the finetune stage's study."""
    from automl.experience import TrialRecorder, similar_task_hparams
    from automl.finetune import load_outcome, run_finetune

    candidates = ranking.top(settings.finetune.top_k)
    entries = [model.entry for model in candidates]
    if not train:
        return load_outcome(ranking.task, entries, settings.finetune, settings.search_space,
                            storage=settings.storage, run_dir=run_dir)
    warm = similar_task_hparams(records, ranking.task, [m.name for m in candidates])
    return run_finetune(ranking.task, entries, settings.finetune, settings.search_space, storage=settings.storage,
                        device=settings.device, seed=settings.seed, run_dir=run_dir, warm=warm,
                        on_trial_finished=TrialRecorder(history, ranking.task, ranking.models))


def _calibrate(settings: AutomlSettings, history: History, console: Console) -> str | None:
    records = history.records()
    try:
        result = leave_one_task_out(records, **predictor_options(settings.rank))
    except ValueError as exc:
        console.print(f"[yellow]calibrate:[/] {exc}")
        return None
    table = format_calibration(result)
    console.print(table)
    text = Console(file=io.StringIO(), width=120)
    text.print(table)
    return text.file.getvalue()


def _test_predictions(outcome) -> np.ndarray | None:
    """The class the best trial gave each test image, as its fit measured it (None: not on this machine)."""
    best = outcome.best if outcome is not None else None
    if best is None or best.test_predictions is None or not best.test_predictions.is_file():
        return None
    return np.load(best.test_predictions)


def _summary(ranking: Ranking | None, outcome, seconds: dict[str, float], run_dir: Path) -> Table:
    table = Table(title=f"automl summary — {run_dir}")
    table.add_column("model")
    table.add_column("predicted acc %", justify="right")
    if outcome is not None:
        table.add_column("trials", justify="right")
        table.add_column("measured acc %", justify="right")
    trials = outcome.trials if outcome is not None else []
    best_trials = outcome.best_by_model() if outcome is not None else {}
    tried = {trial.model for trial in trials}
    for model in (ranking.top(max(3, len(tried))) if ranking else []):
        cells = [model.name, f"{model.predicted:.1f} [{model.low:.1f}, {model.high:.1f}]"]
        if outcome is not None:
            cells += [str(sum(trial.model == model.name for trial in trials)),
                      _measured(model.name, trials, best_trials.get(model.name))]
        table.add_row(*cells)
    best = outcome.best if outcome is not None else None
    captions = []
    if best is not None:
        captions.append(f"best: {best.model} — test accuracy {best.test_accuracy:.1f}% → {outcome.best_dir}")
    captions.append("time: " + ", ".join(f"{name} {secs:.0f}s" for name, secs in seconds.items()))
    table.caption = "\n".join(captions)
    return table


def _measured(model: str, trials, best) -> str:
    """``model``'s best complete trial's test accuracy, else how far its pruned trials got."""
    if best is not None and best.test_accuracy is not None:
        return f"test {best.test_accuracy:.1f}"
    pruned = [t.val_accuracy for t in trials if t.model == model and t.state == "PRUNED" and t.val_accuracy is not None]
    return f"pruned (val {max(pruned):.1f})" if pruned else "—"
