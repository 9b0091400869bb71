"""Runs the configured stages (rank → finetune → calibrate → report) in one Hydra run folder."""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from automl.bank import load_bank
from automl.config import absolute_path, select_device, storage_url, to_container
from automl.history import History, TransferRecord
from automl.predictor import format_calibration, leave_one_task_out
from automl.rank import (
    Ranking,
    predictor_options,
    rank_bank,
    ranking_table,
    resolve_score_names,
    write_ranking_csv,
)
from automl.tasks import load_task

log = logging.getLogger(__name__)

STAGES = ("rank", "finetune", "calibrate", "report")


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


def run(cfg: DictConfig, run_dir: Path, console: Console | None = None) -> float | None:
    """Run ``cfg.stage`` (or all stages) and return the best validation accuracy (percent) when fine-tuned.

    ``stage=finetune`` and ``stage=report`` rank first (features are cached, so that takes seconds) so any
    stage can run alone in a fresh run folder; the study and history come from ``storage``.
    """
    if cfg.stage not in (*STAGES, "all"):
        raise ValueError(f"stage={cfg.stage!r}; choose one of all, {', '.join(STAGES)}")
    stages = STAGES if cfg.stage == "all" else (cfg.stage,)
    console = console or Console()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = absolute_path(cfg.cache_dir)
    storage = storage_url(cfg.storage)
    device = select_device(cfg.device)
    clock = StageClock()
    history = History(storage)

    ranking = outcome = None
    calibration_text = None
    if stages != ("calibrate",):
        records = history.records()  # before fine-tuning adds to it: what the ranking and warm start learn from
        with clock("rank"):
            ranking = _rank(cfg, cache_dir, records, device)
            write_ranking_csv(ranking, run_dir / "ranking.csv")
        console.print(ranking_table(ranking, int(cfg.rank.show), primary=cfg.rank.primary))

    if "finetune" in stages or "report" in stages:
        with clock("finetune" if "finetune" in stages else "load study"):
            outcome = _finetune(cfg, ranking, run_dir, storage, history, records, train="finetune" in stages)

    if "calibrate" in stages:
        with clock("calibrate"):
            calibration_text = _calibrate(cfg, history, console)

    if "report" in stages:
        with clock("report"):
            from automl.report import write_report

            predictions = _test_predictions(outcome, ranking, device) if outcome and outcome.best_dir else None
            report = write_report(run_dir, ranking, outcome=outcome, stage_seconds=clock.seconds,
                                  test_predictions=predictions, calibration_table=calibration_text)
        log.info("report: %s", report)

    console.print(_summary(ranking, outcome, clock.seconds, run_dir))
    return outcome.best.val_accuracy if outcome is not None and outcome.best is not None else None


def _rank(cfg: DictConfig, cache_dir: Path, records: list[TransferRecord], device: str) -> Ranking:
    task = load_task(to_container(cfg.task), cache_dir)
    bank = load_bank(to_container(cfg.bank), cache_dir)
    score_names = resolve_score_names(to_container(cfg.rank.scores))
    return rank_bank(task, bank, cache_dir=cache_dir, probe_cfg=to_container(cfg.probe), score_names=score_names,
                     predictor=predictor_options(cfg.rank), score_options=to_container(cfg.rank.options),
                     history_records=records, device=device, batch_size=int(cfg.rank.batch_size))


def _finetune(cfg: DictConfig, ranking: Ranking, run_dir: Path, storage: str, history: History,
              records: list[TransferRecord], train: bool):
    """Run (``train=True``) or only load (for a report) the finetune stage's study."""
    from automl.experience import TrialRecorder, similar_task_hparams
    from automl.finetune import load_outcome, run_finetune

    candidates = ranking.top(int(cfg.finetune.top_k))
    entries = [model.entry for model in candidates]
    if train:
        warm = similar_task_hparams(records, ranking.task, [m.name for m in candidates])
        outcome = run_finetune(cfg, ranking.task, entries, run_dir, storage=storage, warm_start=warm,
                               on_trial_finished=TrialRecorder(history, ranking.task, ranking.models))
    else:
        outcome = load_outcome(cfg, ranking.task, entries, run_dir, storage=storage)
    return outcome


def _calibrate(cfg: DictConfig, history: History, console: Console) -> str | None:
    records = history.records()
    try:
        result = leave_one_task_out(records, **predictor_options(cfg.rank))
    except ValueError as exc:
        console.print(f"[yellow]calibrate:[/] {exc}")
        return None
    table = format_calibration(result)
    console.print(table)
    text = Console(file=io.StringIO(), width=120)
    text.print(table)
    return text.file.getvalue()


def _test_predictions(outcome, ranking: Ranking, device: str):
    from automl.finetune.export import load_exported, predict_proba

    exported = load_exported(outcome.best_dir)
    probs = predict_proba(exported.model, ranking.task.splits["test"].paths, exported.transform, device=device)
    return probs.argmax(axis=1)


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
