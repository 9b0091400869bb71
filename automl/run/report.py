"""``report.md``: what a person needs to decide which model to use, built from the run's record
(``run.json``: task summary, ranking, hardware, stage times) and its study's outcome — never from the task's
images or the bank, so ``stage=report`` rebuilds it from the run folder alone.

Sections: the best model; the data (classes, images per class and split, sizes, modes, skipped files);
the ranking; predicted vs measured; the fine-tuning search (trials, refit, compute, history, learning
curves, importances); the exported model on the test split (accuracy, balanced accuracy, per-class
precision/recall/F1, confusion matrix, misclassified images); calibration; time per stage, the total and
the hardware. The
figures are drawn by :mod:`automl.run.figures`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from automl._fileio import atomic_write_text
from automl.finetune.results import FinetuneOutcome, TrialResult
from automl.images.tasks import SPLITS
from automl.predictor import shipped_curve_model
from automl.run.evaluation import find_mistakes, read_test_predictions
from automl.run.figures import (
    MIN_TRIALS_FOR_IMPORTANCES,
    plot_confusion,
    plot_gallery,
    plot_history,
    plot_learning_curves,
    plot_param_importances,
    plot_predicted_vs_measured,
    plot_ranking,
    plot_stage_times,
)
from automl.run.folder import RunRecord

MAX_CLASS_ROWS = 100  # classes listed in the data and per-class tables; the rest are counted


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], *, numbers_right: bool = False) -> str:
    """A Markdown table; ``numbers_right`` right-aligns every column after the first."""
    rule = ["---"] + [("---:" if numbers_right else "---")] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(run_dir: Path, record: RunRecord, outcome: FinetuneOutcome | None, *,
                 stage_seconds: Mapping[str, float], calibration_table: str | None = None) -> Path:
    """Write ``run_dir/report.md`` and its figures; returns the report's path.

    Args:
        record: the run's record (:mod:`automl.run.folder`).
        outcome: the study's outcome (None: the run did not fine-tune); its trials, refit and test
            predictions, and ``best_dir`` (the exported model, whose ``test.csv`` lists the test images).
        stage_seconds: stage name → wall time in seconds, every stage run in this folder.
        calibration_table: the calibrate stage's text table, if it ran.
    """
    run_dir = Path(run_dir)
    measured = {}
    if outcome is not None:
        measured = {name: t.test_accuracy for name, t in outcome.best_by_model().items()
                    if t.test_accuracy is not None}
    sections = [f"# automl report: {record.task.name}", "", *_best(outcome), *_overview(record),
                *_data(record), *_ranking(record, measured, run_dir), *_predicted_vs_measured(record, measured, run_dir)]
    if outcome is not None:
        sections += _what_the_curves_say(record, outcome)
        sections += _search(outcome, run_dir)
        if outcome.best_dir is not None:
            sections += _test_split(record, outcome, run_dir)
    if calibration_table:
        sections += ["", "## Calibration (leave one task out)", "", "```", calibration_table.rstrip(), "```"]
    sections += _time_and_hardware(record, stage_seconds, run_dir)
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(sections) + "\n")
    return path


def _best(outcome: FinetuneOutcome | None) -> list[str]:
    best = outcome.best if outcome is not None else None
    if best is None:
        return []
    refit = (f", then retrained on train + val: the trial alone reached {_pct(best.test_accuracy)}%"
             if outcome.refit is not None else "")
    where = (f"Exported to `{outcome.best_dir}`; use it with "
             f"`python -m automl.predict model={outcome.best_dir} images=<folder or file>`."
             if outcome.best_dir is not None else "Not exported in this run folder.")
    return [f"**Best model: `{best.model}`** — validation accuracy {_pct(best.val_accuracy)}%, test accuracy "
            f"{_pct(outcome.test_accuracy)}% (trial {best.number}{refit}). {where}", ""]


def _overview(record: RunRecord) -> list[str]:
    task = record.task
    splits = " / ".join(f"{task.split_size(split)} {split}" for split in SPLITS)
    return [f"Task: {task.num_classes} classes, {splits} images (fingerprint `{task.fingerprint}`). "
            f"Bank: {len(record.ranking)} models ranked"
            + (f", {len(record.failed)} skipped (could not be loaded)" if record.failed else "")
            + f". Predictor learnt from the {record.predictor}."]


def _data(record: RunRecord) -> list[str]:
    """Images per class and split, sizes, modes and the files left out."""
    task = record.task
    rows = [[name, *(task.counts[split][c] for split in SPLITS), sum(task.counts[split][c] for split in SPLITS)]
            for c, name in enumerate(task.classes)]
    totals = [task.split_size(split) for split in SPLITS]
    lines = ["", "## Data", "", markdown_table(["class", *SPLITS, "all"],
                                               [*rows[:MAX_CLASS_ROWS], ["**all**", *totals, sum(totals)]],
                                               numbers_right=True)]
    if len(rows) > MAX_CLASS_ROWS:
        lines += ["", f"({len(rows) - MAX_CLASS_ROWS} more classes not listed.)"]
    sizes = ", ".join(f"{size} ({count})" for size, count in task.common_sizes.items())
    modes = ", ".join(f"{mode} ({count})" for mode, count in task.modes.items())
    lines += ["", f"Image sizes (width x height, pixels): width {_spread(task.width)}, height {_spread(task.height)}; "
                  f"most common: {sizes}. Modes as stored: {modes} (every image is fed as 8-bit RGB"
                  + (f", resized to {task.image_size} pixels" if task.image_size else "") + ")."]
    if task.n_skipped:
        lines += ["", f"{task.n_skipped} unusable file(s) skipped (`task.on_bad_image=error` stops instead):", ""]
        lines += [f"- `{path}`: {reason}" for path, reason in task.skipped.items()]
        if task.n_skipped > len(task.skipped):
            lines.append(f"- ... and {task.n_skipped - len(task.skipped)} more (the run's log lists them)")
    else:
        lines += ["", "No file was skipped."]
    return lines


def _ranking(record: RunRecord, measured: Mapping[str, float], run_dir: Path) -> list[str]:
    plot_ranking(record.ranking, record.task.name, record.task.num_classes, measured, run_dir / "ranking.png")
    scores = record.score_names
    lines = ["", "## Ranking", "",
             "Predicted fine-tuned test accuracy with its 80% interval; the ranking the fine-tuning stage starts from.",
             "", "![ranking](ranking.png)", "",
             markdown_table(["#", "model", "arch", "source", "predicted %", "interval", "measured %", *scores],
                            [[i, m.name, m.arch, m.source, _pct(m.predicted), f"{_pct(m.low)}–{_pct(m.high)}",
                              _pct(measured.get(m.name)), *(_pct(m.scores[s]) for s in scores)]
                             for i, m in enumerate(record.ranking, start=1)])]
    if record.failed:
        lines += ["", "Bank models skipped because they could not be loaded (`bank.on_error=error` stops instead):", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in record.failed.items()]
    return lines


def _predicted_vs_measured(record: RunRecord, measured: Mapping[str, float], run_dir: Path) -> list[str]:
    if not measured:
        return []
    plot_predicted_vs_measured(record.ranking, measured, run_dir / "predicted_vs_measured.png")
    tuned = [m for m in record.ranking if m.name in measured]
    errors = [abs(m.predicted - measured[m.name]) for m in tuned]
    inside = sum(m.low <= measured[m.name] <= m.high for m in tuned)
    return ["", "## Predicted vs measured", "",
            f"Mean absolute error {np.mean(errors):.1f} points over {len(errors)} fine-tuned models; {inside} of "
            f"{len(tuned)} measured accuracies inside the predicted interval. Every measured transfer is now in "
            "the history and calibrates the next ranking.", "", "![predicted vs measured](predicted_vs_measured.png)"]


def _what_the_curves_say(record: RunRecord, outcome: FinetuneOutcome) -> list[str]:
    """Every model the search trained, its prediction updated by what its training measured: the probes'
    prediction, where its best trial's validation curve was headed (a trial stopped early;
    :mod:`automl.predictor.curves`), and the test accuracy of a complete one."""
    chance = 100.0 / record.task.num_classes
    best: dict[str, TrialResult] = {}
    for trial in outcome.trials:
        if trial.state in ("COMPLETE", "PRUNED") and trial.val_curve and (
                trial.model not in best or _preference(trial) > _preference(best[trial.model])):
            best[trial.model] = trial
    if not best:
        return []
    rows = []
    for model in record.ranking:
        trial = best.get(model.name)
        if trial is None:
            continue
        planned = int(trial.hparams.get("epochs") or len(trial.val_curve))
        headed = ("—" if trial.state == "COMPLETE" else
                  _interval(shipped_curve_model().estimate(trial.val_curve, planned, chance)))
        rows.append([model.name, f"{_pct(model.predicted)} [{_pct(model.low)}–{_pct(model.high)}]",
                     f"{len(trial.val_curve)} of {planned}", headed, _pct(trial.test_accuracy)])
    return ["", "## What training said about each model", "",
            "The probes' prediction, then what training measured: a trial stopped early is headed for the test "
            "accuracy its validation curve says (80% interval; learnt from the meta-benchmark's complete "
            "curves), a complete one measured its own.", "",
            markdown_table(["model", "predicted from probes %", "epochs trained", "its curve says %",
                            "measured test %"], rows)]


def _preference(trial: TrialResult) -> tuple[bool, float]:
    """A complete trial over a stopped one, then the better validation accuracy."""
    return trial.state == "COMPLETE", trial.val_accuracy or 0.0


def _interval(estimate) -> str:
    return f"{_pct(estimate.mean)} [{_pct(estimate.low)}–{_pct(estimate.high)}]"


def _search(outcome: FinetuneOutcome, run_dir: Path) -> list[str]:
    trials = outcome.trials
    states = {state: sum(t.state == state for t in trials) for state in ("COMPLETE", "PRUNED", "FAIL")}
    hparam_names = sorted({k for t in trials for k in t.hparams})
    lines = ["", "## Fine-tuning search", "",
             f"Optuna study `{outcome.study}`: {states['COMPLETE']} complete, {states['PRUNED']} pruned, "
             f"{states['FAIL']} failed trials.", "",
             markdown_table(["trial", "model", "state", "val %", "test %", "epochs", "seconds", "GFLOP", "stopped",
                             *(f"planned_{k}" if k == "epochs" else k for k in hparam_names)],
                            [[t.number, t.model, t.state, _pct(t.val_accuracy), _pct(t.test_accuracy), t.epochs,
                              f"{t.seconds:.0f}", _gflop(t.train_gflop), t.stopped,
                              *(_fmt_param(t.hparams.get(k)) for k in hparam_names)] for t in trials])]
    refit = outcome.refit
    if refit is not None:
        lines += ["", f"Refit: trial {refit.trial} retrained on train + val for {refit.epochs} epochs: test "
                      f"{_pct(refit.test_accuracy)}%, {refit.seconds:.0f} s, {_gflop(refit.train_gflop)} GFLOP."]
    spent = sum(t.train_gflop or 0.0 for t in trials) + (refit.train_gflop if refit else 0.0)
    lines += ["", f"Compute of the search{' and the refit' if refit else ''}: {_gflop(spent)} GFLOP "
                  "(training images x forward FLOPs x 3)."]
    failures = [t for t in trials if t.state == "FAIL" and t.fail_reason]
    if failures:
        lines += ["", "Failed trials:", ""] + [f"- trial {t.number}: {t.fail_reason}" for t in failures]
    if states["COMPLETE"] + states["PRUNED"]:
        written = [plot_history(trials, run_dir / "optimization_history.png"),
                   plot_learning_curves(trials, refit, run_dir / "learning_curves.png")]
        if states["COMPLETE"] >= MIN_TRIALS_FOR_IMPORTANCES:
            written.append(plot_param_importances(outcome.optuna_study, run_dir / "param_importances.png"))
        lines += [""] + [f"![{p.stem}]({p.name})" for p in written]
        if states["COMPLETE"] < MIN_TRIALS_FOR_IMPORTANCES:
            lines += ["", f"(Hyperparameter importances need at least {MIN_TRIALS_FOR_IMPORTANCES} complete trials.)"]
    return lines


def _test_split(record: RunRecord, outcome: FinetuneOutcome, run_dir: Path) -> list[str]:
    """The exported model on the test split: overall and per-class metrics, confusion matrix, mistakes."""
    predictions = read_test_predictions(outcome.best_dir, outcome.test_predictions, record.task.classes)
    if predictions is None:
        return ["", "## Best model on the test split", "",
                "(Its test predictions are not on this machine; the search's artifacts folder holds them.)"]
    plot_confusion(predictions.targets, predictions.predicted, predictions.classes, run_dir / "confusion_matrix.png")
    per_class = predictions.per_class()
    lines = ["", "## Best model on the test split", "",
             f"{len(predictions.paths)} test images: accuracy {_pct(predictions.accuracy)}%, balanced accuracy "
             f"(mean recall over classes) {_pct(predictions.balanced_accuracy)}%.", "",
             markdown_table(["class", "precision %", "recall %", "F1 %", "test images"],
                            [[row["class"], _pct(row["precision"]), _pct(row["recall"]), _pct(row["f1"]),
                              row["support"]] for row in per_class[:MAX_CLASS_ROWS]], numbers_right=True)]
    if len(per_class) > MAX_CLASS_ROWS:
        lines += ["", f"({len(per_class) - MAX_CLASS_ROWS} more classes not listed.)"]
    lines += ["", "![confusion matrix](confusion_matrix.png)"]
    mistakes = find_mistakes(predictions, outcome.best_dir)
    wrong = int(np.sum(predictions.predicted != predictions.targets))
    if mistakes:
        plot_gallery(mistakes, run_dir / "misclassified.png")
        lines += ["", "### Misclassified test images", "",
                  f"{len(mistakes)} of the {wrong} misclassified test images, with the probability the exported "
                  "model gives its prediction.", "", "![misclassified](misclassified.png)", "",
                  markdown_table(["image", "true", "predicted", "probability %"],
                                 [[f"`{m.path}`", m.true, m.predicted, f"{100 * m.probability:.1f}"]
                                  for m in mistakes])]
    elif wrong:
        lines += ["", f"({wrong} misclassified test images; their files are not on this machine.)"]
    return lines


def _time_and_hardware(record: RunRecord, stage_seconds: Mapping[str, float], run_dir: Path) -> list[str]:
    if not stage_seconds:
        return []
    plot_stage_times(stage_seconds, run_dir / "stage_times.png")
    lines = ["", "## Time per stage and hardware", "",
             markdown_table(["stage", "seconds"], [*([k, f"{v:.1f}"] for k, v in stage_seconds.items()),
                                                   ["**total**", f"{sum(stage_seconds.values()):.1f}"]]),
             "", "![stage times](stage_times.png)"]
    hardware = record.hardware
    if hardware:
        gpu = f"GPU {hardware['gpu']}" if hardware.get("gpu") else "no GPU"
        lines += ["", f"Computed on: {hardware['cpu']} ({hardware['cores']} cores usable), {gpu}; "
                      f"torch {hardware['torch']}, Python {hardware['python']}."]
    return lines


def _spread(values: Sequence[int]) -> str:
    low, median, high = values
    return f"{low}–{high} (median {median})"


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.1f}"


def _gflop(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _fmt_param(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "—" if value is None else str(value)
