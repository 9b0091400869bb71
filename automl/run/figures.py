"""The report's figures (PNG, matplotlib, written atomically next to ``report.md``).

* ``ranking.png`` — every bank model's predicted accuracy with its 80% interval, measured accuracy on top
  for the fine-tuned ones, and the chance level (100 / classes), below which nothing is predicted;
* ``predicted_vs_measured.png`` — the fine-tuned candidates' predicted vs measured test accuracy;
* ``optimization_history.png`` — every trial's validation accuracy, complete and pruned;
* ``learning_curves.png`` — every trial's validation accuracy per epoch, coloured by model, pruned trials
  marked where they stopped, and the refit's test accuracy;
* ``param_importances.png`` — Optuna's hyperparameter importances;
* ``confusion_matrix.png`` — the exported model on the test split;
* ``misclassified.png`` — a gallery of test images the exported model got wrong;
* ``stage_times.png`` — wall time per stage.

Accuracies are in percent; an axis of accuracies reaches a little past 100 so that markers at 100% are
drawn whole.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
from matplotlib.lines import Line2D

from automl._fileio import atomic_path
from automl.images.decode import load_image

ACCURACY_TOP = 105.0  # percent: the top of an accuracy axis, room for a marker at 100
MIN_TRIALS_FOR_IMPORTANCES = 4  # complete trials; with fewer, every importance comes out equal
LABEL_CHARS = 20  # class names longer than this are shortened in the middle on figure axes
GALLERY_COLUMNS = 6
THUMBNAIL = 128  # pixels, the longer side of a gallery image


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def _accuracy_axis(ax: plt.Axes, which: str = "y") -> None:
    """0 to 100 ticks on an axis that reaches ACCURACY_TOP."""
    getattr(ax, f"set_{which}lim")(0, ACCURACY_TOP)
    getattr(ax, f"set_{which}ticks")(np.arange(0, 101, 20))


def short_label(name: str, chars: int = LABEL_CHARS) -> str:
    """``name``, or its start and end around an ellipsis when it is longer than ``chars`` characters."""
    if len(name) <= chars:
        return name
    head = (chars - 1) // 2
    return f"{name[:head]}…{name[len(name) - (chars - 1 - head):]}"


def short_labels(names: Sequence[str], chars: int = LABEL_CHARS) -> list[str]:
    """:func:`short_label` of each name, numbered (``3: abc…xyz``) when two shortened names would be equal."""
    labels = [short_label(name, chars) for name in names]
    return labels if len(set(labels)) == len(labels) else [f"{i}: {label}" for i, label in enumerate(labels)]


def plot_ranking(models: Sequence, task_name: str, num_classes: int, measured: Mapping[str, float],
                 path: Path) -> Path:
    """``models``: the ranked models, best first (``name``, ``arch``, ``source``, ``predicted``, ``low``,
    ``high``); ``measured``: model name → measured test accuracy."""
    models = list(models)[::-1]  # best at the top of a horizontal chart
    y = np.arange(len(models))
    predicted = np.array([m.predicted for m in models])
    errors = np.array([[m.predicted - m.low for m in models], [m.high - m.predicted for m in models]])
    sources = sorted({(m.source or "?") for m in models})
    colors = {s: plt.cm.tab10(i % 10) for i, s in enumerate(sources)}
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(models) + 1.5))
    for source in sources:
        rows = [i for i, m in enumerate(models) if (m.source or "?") == source]
        ax.errorbar(predicted[rows], y[rows], xerr=errors[:, rows], fmt="o", color=colors[source], capsize=3,
                    label=f"predicted (source: {source})")
    hit = [i for i, m in enumerate(models) if m.name in measured]
    if hit:
        ax.scatter([measured[models[i].name] for i in hit], y[hit], marker="*", s=160, color="black", zorder=3,
                   label="measured after fine-tuning")
    ax.axvline(100 / num_classes, color="grey", linestyle="--", linewidth=1, label=f"chance ({num_classes} classes)")
    ax.set_yticks(y, [f"{m.name} ({m.arch})" for m in models])
    ax.set_xlabel("test accuracy (%)")
    ax.set_title(f"Predicted fine-tuned accuracy on {task_name} (80% interval)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8)
    return _save(fig, path)


def plot_predicted_vs_measured(models: Sequence, measured: Mapping[str, float], path: Path) -> Path:
    return _save(predicted_vs_measured_axes(models, measured).figure, path)


def predicted_vs_measured_axes(models: Sequence, measured: Mapping[str, float]) -> plt.Axes:
    """The fine-tuned models' predicted accuracy (with its whole interval) against the measured one;
    ``models`` as :func:`plot_ranking`'s."""
    models = [m for m in models if m.name in measured]
    predicted = np.array([m.predicted for m in models])
    actual = np.array([measured[m.name] for m in models])
    _, ax = plt.subplots(figsize=(5.5, 5))
    ax.errorbar(predicted, actual, xerr=[predicted - [m.low for m in models], [m.high for m in models] - predicted],
                fmt="o", capsize=3)
    for m, x, y in zip(models, predicted, actual, strict=True):
        ax.annotate(m.name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    lows, highs = np.array([m.low for m in models]), np.array([m.high for m in models])
    low = max(0.0, min(lows.min(), actual.min()) - 5)  # the whole interval whiskers stay inside the axes
    high = min(ACCURACY_TOP, max(highs.max(), actual.max()) + 5)
    ax.plot([low, high], [low, high], "--", color="grey", label="predicted = measured")
    ax.set(xlim=(low, high), ylim=(low, high), xlabel="predicted accuracy (%)", ylabel="measured test accuracy (%)",
           title="Predicted vs measured (fine-tuned models)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_history(trials: Sequence, path: Path) -> Path:
    return _save(history_axes(trials).figure, path)


def history_axes(trials: Sequence) -> plt.Axes:
    """Every finished trial's best validation accuracy by trial number, complete and pruned marked apart
    (failed trials have none), and the best complete one so far (``trials``: TrialResult)."""
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
    _accuracy_axis(ax)
    ax.set(xlabel="trial", ylabel="best validation accuracy (%)",
           title="Search history" + (f" ({failed} failed trial(s) not shown)" if failed else ""))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_learning_curves(trials: Sequence, refit, path: Path) -> Path:
    return _save(learning_curves_axes(trials, refit).figure, path)


def learning_curves_axes(trials: Sequence, refit) -> plt.Axes:
    """Validation accuracy after each epoch (1-based) of every complete and pruned trial (TrialResult),
    one colour per model; a pruned trial's curve is dotted and ends in a cross where it was stopped; the
    refit (``Refit`` or None), which has no validation split, shows its test accuracy as a star."""
    shown = [t for t in trials if t.state in ("COMPLETE", "PRUNED") and t.val_curve]
    models = list(dict.fromkeys(t.model for t in shown))
    colors = {model: plt.cm.tab10(i % 10) for i, model in enumerate(models)}
    _, ax = plt.subplots(figsize=(8, 4.5))
    for t in shown:
        epochs = np.arange(1, len(t.val_curve) + 1)
        pruned = t.state == "PRUNED"
        ax.plot(epochs, t.val_curve, linestyle=":" if pruned else "-", color=colors[t.model], alpha=0.85)
        if pruned:
            ax.plot(epochs[-1], t.val_curve[-1], marker="x", markersize=8, color=colors[t.model])
    handles = [Line2D([], [], color=colors[model], label=model) for model in models]
    handles += [Line2D([], [], color="grey", label="complete trial"),
                Line2D([], [], color="grey", linestyle=":", marker="x", label="pruned trial (× where stopped)")]
    if refit is not None:
        ax.plot(refit.epochs, refit.test_accuracy, marker="*", markersize=16, color="black", linestyle="none")
        handles.append(Line2D([], [], color="black", marker="*", markersize=12, linestyle="none",
                              label=f"refit of trial {refit.trial} on train + val: test {refit.test_accuracy:.1f}%"))
    _accuracy_axis(ax)
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Learning curves")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return ax


def plot_param_importances(study, path: Path) -> Path:
    """Optuna's hyperparameter importances of ``study`` (an optuna.Study)."""
    import optuna.visualization.matplotlib as ovm
    from optuna.exceptions import ExperimentalWarning

    # Optuna's plots switch matplotlib to its ggplot style globally; rc_context restores ours afterwards.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", ExperimentalWarning)
        ax = ovm.plot_param_importances(study, target_name="val accuracy (%)")
        ax.figure.set_size_inches(7, 4.5)
        return _save(ax.figure, path)


def plot_confusion(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    return _save(confusion_axes(labels, predicted, classes).figure, path)


def confusion_axes(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> plt.Axes:
    """The confusion matrix of [N] true and [N] predicted class indices. Long class names are shortened in
    the middle (:func:`short_labels`; the report's per-class table has them whole) and the column labels
    stand upright once they are wider than a cell."""
    from sklearn.metrics import ConfusionMatrixDisplay

    names = short_labels(classes)
    cell = 0.45 if len(classes) <= 20 else 0.3  # inches per class
    size = min(16.0, 2.5 + cell * len(classes))
    _, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(labels, predicted, labels=np.arange(len(classes)), display_labels=names,
                                            ax=ax, colorbar=False, include_values=len(classes) <= 20, cmap="Blues")
    accuracy = 100.0 * float(np.mean(labels == predicted))
    ax.set_title(f"Best model on the test split: {accuracy:.1f}% accuracy")
    fontsize = 9 if len(classes) <= 40 else 6
    upright = max(map(len, names)) > 4 or len(classes) > 10
    plt.setp(ax.get_xticklabels(), rotation=90 if upright else 0, fontsize=fontsize)
    plt.setp(ax.get_yticklabels(), fontsize=fontsize)
    return ax


def plot_gallery(images: Sequence, path: Path) -> Path:
    """A grid of test images (``path``, ``true``, ``predicted``, ``probability`` of the predicted class in
    0..1), each titled with its true and predicted class."""
    rows = -(-len(images) // GALLERY_COLUMNS)
    columns = min(GALLERY_COLUMNS, len(images))
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image in zip(axes.flat, images, strict=False):
        thumbnail = load_image(image.path)
        thumbnail.thumbnail((THUMBNAIL, THUMBNAIL))
        ax.imshow(np.asarray(thumbnail))
        ax.set_title(f"true: {short_label(image.true, 16)}\npredicted: {short_label(image.predicted, 16)}"
                     f" ({100 * image.probability:.0f}%)", fontsize=8)
    fig.suptitle("Misclassified test images")
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
