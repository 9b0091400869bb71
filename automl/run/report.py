"""``report.md`` and its figures: what a person needs to decide which model to use.

Figures (PNG, next to the report):

* ``ranking.png`` — every bank model's predicted accuracy with its 80% interval, measured accuracy on top
  for the fine-tuned ones, and the chance level (100 / classes), below which nothing is predicted;
* ``predicted_vs_measured.png`` — the fine-tuned candidates' predicted vs measured test accuracy;
* ``optimization_history.png`` — every trial's validation accuracy, complete and pruned;
* ``learning_curves.png`` and ``param_importances.png`` — Optuna's own matplotlib visualizations;
* ``confusion_matrix.png`` — the exported model on the test split;
* ``stage_times.png`` — wall time per stage.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from automl._fileio import atomic_path, atomic_write_text
from automl.rank.stage import Ranking

log = logging.getLogger(__name__)


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def plot_ranking(ranking: Ranking, measured: Mapping[str, float], path: Path) -> Path:
    models = ranking.models[::-1]  # best at the top of a horizontal chart
    y = np.arange(len(models))
    predicted = np.array([m.predicted for m in models])
    errors = np.array([[m.predicted - m.low for m in models], [m.high - m.predicted for m in models]])
    sources = sorted({(m.entry.source_name or "?") for m in models})
    colors = {s: plt.cm.tab10(i % 10) for i, s in enumerate(sources)}
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(models) + 1.5))
    for source in sources:
        rows = [i for i, m in enumerate(models) if (m.entry.source_name or "?") == source]
        ax.errorbar(predicted[rows], y[rows], xerr=errors[:, rows], fmt="o", color=colors[source], capsize=3,
                    label=f"predicted (source: {source})")
    hit = [i for i, m in enumerate(models) if m.name in measured]
    if hit:
        ax.scatter([measured[models[i].name] for i in hit], y[hit], marker="*", s=160, color="black", zorder=3,
                   label="measured after fine-tuning")
    ax.axvline(100 / ranking.task.num_classes, color="grey", linestyle="--", linewidth=1,
               label=f"chance ({ranking.task.num_classes} classes)")
    ax.set_yticks(y, [f"{m.name} ({m.entry.arch})" for m in models])
    ax.set_xlabel("test accuracy (%)")
    ax.set_title(f"Predicted fine-tuned accuracy on {ranking.task.name} (80% interval)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8)
    return _save(fig, path)


def plot_predicted_vs_measured(ranking: Ranking, measured: Mapping[str, float], path: Path) -> Path:
    return _save(predicted_vs_measured_axes(ranking, measured).figure, path)


def predicted_vs_measured_axes(ranking: Ranking, measured: Mapping[str, float]) -> plt.Axes:
    """The fine-tuned models' predicted accuracy (with its whole interval) against the measured one."""
    models = [m for m in ranking.models if m.name in measured]
    predicted = np.array([m.predicted for m in models])
    actual = np.array([measured[m.name] for m in models])
    _, ax = plt.subplots(figsize=(5.5, 5))
    ax.errorbar(predicted, actual, xerr=[predicted - [m.low for m in models], [m.high for m in models] - predicted],
                fmt="o", capsize=3)
    for m, x, y in zip(models, predicted, actual, strict=True):
        ax.annotate(m.name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    lows, highs = np.array([m.low for m in models]), np.array([m.high for m in models])
    low = max(0.0, min(lows.min(), actual.min()) - 5)  # the whole interval whiskers stay inside the axes
    high = min(100.0, max(highs.max(), actual.max()) + 5)
    ax.plot([low, high], [low, high], "--", color="grey", label="predicted = measured")
    ax.set(xlim=(low, high), ylim=(low, high), xlabel="predicted accuracy (%)", ylabel="measured test accuracy (%)",
           title="Predicted vs measured (fine-tuned models)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


MIN_TRIALS_FOR_IMPORTANCES = 4  # complete trials; with fewer, every importance comes out equal


def plot_history(trials, path: Path) -> Path:
    return _save(history_axes(trials).figure, path)


def history_axes(trials) -> plt.Axes:
    """Every finished trial's best validation accuracy by trial number, complete and pruned marked apart
    (failed trials have none), and the best complete one so far."""
    _, ax = plt.subplots(figsize=(7, 4.5))
    for state, marker, color in (("COMPLETE", "o", "tab:blue"), ("PRUNED", "x", "tab:orange")):
        shown = [t for t in trials if t.state == state and t.val_accuracy is not None]
        ax.scatter([t.number for t in shown], [t.val_accuracy for t in shown], marker=marker, color=color,
                   label=f"{state.lower()} ({len(shown)})", zorder=3)
    complete = sorted((t for t in trials if t.state == "COMPLETE" and t.val_accuracy is not None),
                      key=lambda t: t.number)
    if complete:
        ax.step([t.number for t in complete], np.maximum.accumulate([t.val_accuracy for t in complete]),
                where="post", color="tab:blue", alpha=0.5, label="best complete so far")
    failed = sum(t.state == "FAIL" for t in trials)
    ax.set(xlabel="trial", ylabel="best validation accuracy (%)", ylim=(0, 100),
           title="Search history" + (f" ({failed} failed trial(s) not shown)" if failed else ""))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_optuna(study, folder: Path, n_complete: int) -> list[Path]:
    """Optuna's matplotlib views of the study: every trial's validation accuracy per epoch (pruned ones
    included) and, with ``n_complete`` (its COMPLETE trials) large enough, hyperparameter importances."""
    import optuna.visualization.matplotlib as ovm
    from optuna.exceptions import ExperimentalWarning

    plots = [("learning_curves", ovm.plot_intermediate_values)]
    if n_complete >= MIN_TRIALS_FOR_IMPORTANCES:
        plots.append(("param_importances", ovm.plot_param_importances))
    written = []
    # Optuna's plots switch matplotlib to its ggplot style globally; rc_context restores ours afterwards.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", ExperimentalWarning)
        for name, plot in plots:
            kwargs = {} if plot is ovm.plot_intermediate_values else {"target_name": "val accuracy (%)"}
            ax = plot(study, **kwargs)
            if plot is ovm.plot_intermediate_values:
                ax.set(xlabel="epoch (0-based)", ylabel="val accuracy (%)", title="Validation accuracy per epoch")
                if ax.get_legend() is not None:  # a legend entry per trial is unreadable: label the curves
                    ax.get_legend().remove()
                for line in ax.get_lines():
                    epochs, values = line.get_data()
                    if len(epochs):
                        ax.annotate(line.get_label().replace("Trial", "#"), (epochs[-1], values[-1]), fontsize=7,
                                    textcoords="offset points", xytext=(3, 0), color=line.get_color())
            ax.figure.set_size_inches(7, 4.5)
            written.append(_save(ax.figure, folder / f"{name}.png"))
    return written


def plot_confusion(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay

    size = min(14, 3 + 0.45 * len(classes))
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(labels, predicted, labels=np.arange(len(classes)),
                                            display_labels=list(classes), ax=ax, colorbar=False,
                                            include_values=len(classes) <= 20, cmap="Blues")
    accuracy = 100.0 * float(np.mean(labels == predicted))
    ax.set_title(f"Best model on the test split: {accuracy:.1f}% accuracy")
    plt.setp(ax.get_xticklabels(), rotation=90 if len(classes) > 10 else 0)
    return _save(fig, path)


def plot_stage_times(seconds: Mapping[str, float], path: Path) -> Path:
    names = list(seconds)
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.2))
    bars = ax.barh(names[::-1], [seconds[n] for n in names][::-1], color="tab:blue")
    ax.bar_label(bars, labels=[f"{seconds[n]:.1f} s" for n in names][::-1], padding=3, fontsize=8)
    ax.set_xlabel("wall time (s)")
    ax.set_title("Time per stage")
    ax.margins(x=0.15)
    return _save(fig, path)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], *, numbers_right: bool = False) -> str:
    """A Markdown table; ``numbers_right`` right-aligns every column after the first."""
    rule = ["---"] + [("---:" if numbers_right else "---")] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.1f}"


def write_report(run_dir: Path, ranking: Ranking, *, outcome=None, stage_seconds: Mapping[str, float],
                 test_predictions: np.ndarray | None = None, calibration_table: str | None = None) -> Path:
    """Write ``run_dir/report.md`` and its figures; returns the report's path.

    Args:
        ranking: the rank stage's result.
        outcome: the finetune stage's ``FinetuneOutcome`` (None when it did not run); its Optuna study
            gives the search's figures.
        stage_seconds: stage name → wall time in seconds.
        test_predictions: [N_test] predicted class of the exported model on the task's test split.
        calibration_table: the calibrate stage's text table, if it ran.
    """
    run_dir = Path(run_dir)
    task = ranking.task
    trials = outcome.trials if outcome is not None else []
    best_trials = outcome.best_by_model() if outcome is not None else {}
    measured = {name: t.test_accuracy for name, t in best_trials.items() if t.test_accuracy is not None}
    sections = [f"# automl report: {task.name}", ""]

    best = outcome.best if outcome is not None else None
    if best is not None:
        sections += [
            f"**Best model: `{best.model}`** — validation accuracy {_pct(best.val_accuracy)}%, "
            f"test accuracy {_pct(outcome.test_accuracy)}% (trial {best.number}"
            + (f", then retrained on train + val: the trial alone reached {_pct(best.test_accuracy)}%"
               if outcome.refit is not None else "") + "). "
            f"Exported to `{outcome.best_dir}`; use it with "
            f"`python -m automl.predict model={outcome.best_dir} images=<folder or file>`.",
            "",
        ]
    sections += [
        f"Task: {task.num_classes} classes, {len(task.splits['train'])} train / {len(task.splits['val'])} val / "
        f"{len(task.splits['test'])} test images (fingerprint `{task.fingerprint}`). Bank: {len(ranking.models)} "
        f"models ranked" + (f", {len(ranking.failed)} skipped (could not be loaded)" if ranking.failed else "")
        + f". Predictor learnt from the {ranking.predictor}.",
        "",
        "## Ranking",
        "",
        "Predicted fine-tuned test accuracy with its 80% interval; the ranking the fine-tuning stage starts from.",
        "",
        "![ranking](ranking.png)",
        "",
    ]
    plot_ranking(ranking, measured, run_dir / "ranking.png")
    scores = ranking.score_names
    sections.append(markdown_table(
        ["#", "model", "arch", "source", "predicted %", "interval", "measured %", *scores],
        [[i, m.name, m.entry.arch, m.entry.source_name, _pct(m.predicted),
          f"{_pct(m.low)}–{_pct(m.high)}", _pct(measured.get(m.name)), *(_pct(m.scores[s]) for s in scores)]
         for i, m in enumerate(ranking.models, start=1)],
    ))
    if ranking.failed:
        sections += ["", "Bank models skipped because they could not be loaded (`bank.on_error=error` stops "
                     "instead):", ""]
        sections += [f"- `{name}`: {reason}" for name, reason in ranking.failed.items()]

    if measured:
        plot_predicted_vs_measured(ranking, measured, run_dir / "predicted_vs_measured.png")
        errors = [abs(m.predicted - measured[m.name]) for m in ranking.models if m.name in measured]
        inside = [m.low <= measured[m.name] <= m.high for m in ranking.models if m.name in measured]
        sections += ["", "## Predicted vs measured", "",
                     f"Mean absolute error {np.mean(errors):.1f} points over {len(errors)} fine-tuned models; "
                     f"{sum(inside)} of {len(inside)} measured accuracies inside the predicted interval. "
                     "Every measured transfer is now in the history and calibrates the next ranking.",
                     "", "![predicted vs measured](predicted_vs_measured.png)"]

    if outcome is not None:
        states = {state: sum(t.state == state for t in trials) for state in ("COMPLETE", "PRUNED", "FAIL")}
        sections += ["", "## Fine-tuning search", "",
                     f"Optuna study `{outcome.study}`: {states['COMPLETE']} complete, {states['PRUNED']} pruned, "
                     f"{states['FAIL']} failed trials.", ""]
        hparam_names = sorted({k for t in trials for k in t.hparams})
        sections.append(markdown_table(
            ["trial", "model", "state", "val %", "test %", "epochs", "seconds", "GFLOP", "stopped",
             *(f"planned_{k}" if k == "epochs" else k for k in hparam_names)],
            [[t.number, t.model, t.state, _pct(t.val_accuracy), _pct(t.test_accuracy), t.epochs, f"{t.seconds:.0f}",
              _gflop(t.train_gflop), t.stopped, *(_fmt_param(t.hparams.get(k)) for k in hparam_names)]
             for t in trials],
        ))
        if outcome.refit is not None:
            refit = outcome.refit
            sections += ["", f"Refit: trial {refit.trial} retrained on train + val for {refit.epochs} epochs: test "
                             f"{_pct(refit.test_accuracy)}%, {refit.seconds:.0f} s, {_gflop(refit.train_gflop)} GFLOP."]
        spent = sum(t.train_gflop or 0.0 for t in trials) + (outcome.refit.train_gflop if outcome.refit else 0.0)
        sections += ["", f"Compute of the search{' and the refit' if outcome.refit else ''}: {_gflop(spent)} GFLOP "
                         "(training images x forward FLOPs x 3)."]
        failures = [t for t in trials if t.state == "FAIL" and t.fail_reason]
        if failures:
            sections += ["", "Failed trials:", ""] + [f"- trial {t.number}: {t.fail_reason}" for t in failures]
        if states["COMPLETE"] + states["PRUNED"]:
            written = [plot_history(trials, run_dir / "optimization_history.png"),
                       *plot_optuna(outcome.optuna_study, run_dir, states["COMPLETE"])]
            sections += [""] + [f"![{p.stem}]({p.name})" for p in written]
            if not any(p.stem == "param_importances" for p in written):
                sections += ["", f"(Hyperparameter importances need at least {MIN_TRIALS_FOR_IMPORTANCES} complete "
                             "trials.)"]

    if test_predictions is not None and best is not None:
        plot_confusion(task.splits["test"].labels, test_predictions, task.classes, run_dir / "confusion_matrix.png")
        sections += ["", "## Best model on the test split", "", "![confusion matrix](confusion_matrix.png)"]

    if calibration_table:
        sections += ["", "## Calibration (leave one task out)", "", "```", calibration_table.rstrip(), "```"]

    if stage_seconds:
        plot_stage_times(stage_seconds, run_dir / "stage_times.png")
        sections += ["", "## Time per stage", "",
                     markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in stage_seconds.items()]),
                     "", "![stage times](stage_times.png)"]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(sections) + "\n")
    return path


def _gflop(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _fmt_param(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "—" if value is None else str(value)
