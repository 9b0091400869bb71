"""What report.md tells a person (issue 34.6), from a run record and a study outcome made on the spot: the
data summary, per-class metrics that agree with the confusion matrix, a gallery of misclassified test
images, learning curves with a legend, pruned trials and the refit, figures that keep 100% and long class
names readable, the total time and the hardware; and the run's console summary within 80 columns."""

from __future__ import annotations

import io
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import TINY_DATA_CONFIG, write_image, write_image_folder
from rich.console import Console

from automl.deploy import export_model, save_weights
from automl.finetune.results import FinetuneOutcome, Refit, TrialResult
from automl.images import load_task, summarize_task
from automl.run.figures import confusion_axes, history_axes, learning_curves_axes
from automl.run.folder import RecordedModel, RunRecord
from automl.run.report import write_report
from automl.run.stages import summary_table
from automl.settings import TaskSettings

LONG = "a_class_name_of_forty_characters_exactly"  # 40 characters
CLASSES = [f"{LONG[:-1]}{i}" for i in range(3)]
HARDWARE = {"cpu": "Test CPU 9000", "cores": 7, "gpu": "Test GPU", "torch": "9.9", "python": "3.99"}


def trial(number: int, state: str, val: float | None, curve=(), model: str = "m", test: float | None = None,
          predictions: Path | None = None) -> TrialResult:
    return TrialResult("study", number, model, state, {"epochs": 3, "lr": 0.01}, val, test, len(curve), list(curve),
                       1.0, 10, 1.0, None, None, predictions)


def ranked(name: str, predicted: float) -> RecordedModel:
    return RecordedModel(name, "test_resnet", "photos", {"linear": 50.0}, {"linear": 0.0}, {}, {}, predicted,
                         predicted - 10, predicted + 10)


def record_of(task) -> RunRecord:
    summary = summarize_task(task)
    return RunRecord(summary, "bank", [ranked("m", 60.0), ranked("other", 50.0)], ["linear"], "meta-benchmark",
                     study="study", candidates=["m", "other"], hardware=HARDWARE,
                     stage_seconds={"rank": 2.0, "finetune": 3.5})


@pytest.fixture
def finished_run(tmp_path):
    """A run folder as the pipeline leaves it, but with a task of long class names, mixed image modes and
    sizes and one broken file, a study of two complete trials and one pruned one, a refit, and a real
    exported model whose test predictions are recorded."""
    import timm

    root = tmp_path / "images"
    for c, name in enumerate(CLASSES):
        for i in range(10):
            write_image(root / name / f"{i}.png", seed=10 * c + i, size=16 + 4 * (i % 2), mode=("RGB", "L")[i % 2])
    (root / CLASSES[0] / "broken.png").write_bytes(b"not an image")
    task = load_task(TaskSettings(name="long", root=str(root), val_fraction=0.2, test_fraction=0.4),
                     tmp_path / "cache")
    test = task.splits["test"]
    predicted = test.labels.copy()
    predicted[::3] = (predicted[::3] + 1) % 3  # a third of the test images wrong
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    np.save(artifacts / "refit.npy", predicted.astype(np.int32))
    weights = save_weights(timm.create_model("test_resnet", num_classes=3).state_dict(), artifacts / "refit.safetensors")
    run_dir = tmp_path / "run"
    best_dir = export_model(run_dir / "best", weights, {
        "arch": "test_resnet", "kwargs": {}, "num_classes": 3, "classes": CLASSES, "data_config": {**TINY_DATA_CONFIG, "crop_mode": "center"},
        "study": "study", "trial": 0, "refit": {"on": "train+val"}},
        [(path, CLASSES[label]) for path, label in zip(test.paths, test.labels, strict=True)])
    trials = [trial(0, "COMPLETE", 80.0, [50.0, 70.0, 80.0], test=75.0),
              trial(1, "PRUNED", 40.0, [30.0, 40.0], model="other"),
              trial(2, "COMPLETE", 100.0, [60.0, 90.0, 100.0], test=70.0)]
    refit = Refit(2, 100.0 * float(np.mean(predicted == test.labels)), 3, 1.0, 10, 1.0, weights,
                  artifacts / "refit.npy")
    outcome = FinetuneOutcome("study", ["m", "other"], trials, trials[2], refit, best_dir, 3, optuna_study=None)
    return run_dir, record_of(task), outcome, task, predicted


def test_the_report_holds_the_data_the_test_split_per_class_and_the_misclassified(finished_run):
    run_dir, record, outcome, task, predicted = finished_run
    report = write_report(run_dir, record, outcome, stage_seconds=record.stage_seconds).read_text()

    # the data: images per class and split, sizes and modes, the skipped file
    data = report.split("## Data")[1].split("## Ranking")[0]
    for c, name in enumerate(CLASSES):
        counts = [int(np.sum(task.splits[s].labels == c)) for s in ("train", "val", "test")]
        assert f"| {name} | {counts[0]} | {counts[1]} | {counts[2]} | {sum(counts)} |" in data
    assert "width 16–20" in data and "RGB (15)" in data and "L (15)" in data
    assert "1 unusable file(s) skipped" in data and "broken.png" in data

    # per class: precision, recall and F1 as the confusion matrix says, and balanced accuracy
    labels = task.splits["test"].labels
    matrix = np.array([[np.sum((labels == t) & (predicted == p)) for p in range(3)] for t in range(3)])
    for c, name in enumerate(CLASSES):
        precision, recall = matrix[c, c] / matrix[:, c].sum(), matrix[c, c] / matrix[c].sum()
        f1 = 2 * precision * recall / (precision + recall)
        row = f"| {name} | {100 * precision:.1f} | {100 * recall:.1f} | {100 * f1:.1f} | {matrix[c].sum()} |"
        assert row in report, row
    balanced = 100 * np.mean(np.diag(matrix) / matrix.sum(axis=1))
    assert f"balanced accuracy (mean recall over classes) {balanced:.1f}%" in report

    # the gallery: every misclassified image (fewer than 24 here), true, predicted and a probability
    gallery = report.split("### Misclassified test images")[1].split("##")[0]
    wrong = int(np.sum(predicted != labels))
    rows = re.findall(r"^\| `(.+)` \| (.+) \| (.+) \| ([\d.]+) \|$", gallery, flags=re.MULTILINE)
    assert len(rows) == wrong and all(true != guess for _, true, guess, _ in rows)
    assert all(0 <= float(p) <= 100 for *_, p in rows) and "![misclassified](misclassified.png)" in gallery
    assert (run_dir / "misclassified.png").is_file()

    # learning curves and history drawn; the total time and the hardware
    for figure in ("learning_curves.png", "optimization_history.png", "confusion_matrix.png", "stage_times.png"):
        assert f"({figure})" in report and (run_dir / figure).is_file()
    assert "| **total** | 5.5 |" in report
    assert "Test CPU 9000 (7 cores usable), GPU Test GPU; torch 9.9" in report

    # each trained model's prediction updated by its training (issue 36.2): the pruned one by its curve
    said = report.split("## What training said about each model")[1].split("##")[0]
    from automl.predictor import shipped_curve_model

    headed = shipped_curve_model().estimate([30.0, 40.0], 3, 100.0 / 3)
    assert f"| other | 50.0 [40.0–60.0] | 2 of 3 | {headed.mean:.1f} [{headed.low:.1f}–{headed.high:.1f}] | — |" in said
    assert "| m | 60.0 [50.0–70.0] | 3 of 3 | — | 70.0 |" in said  # the complete trial of best validation (2)


def test_the_search_history_draws_a_trial_at_100_percent_whole():
    ax = history_axes([trial(0, "COMPLETE", 100.0), trial(1, "PRUNED", 100.0)])
    ax.figure.canvas.draw()
    for collection in ax.collections:
        radius = np.sqrt(collection.get_sizes().max()) / 2 * ax.figure.dpi / 72  # pixels (sizes are points²)
        centre = ax.transData.transform(collection.get_offsets()).max(axis=0)[1]
        assert centre + radius <= ax.get_window_extent().y1, "a marker at 100% is cut by the top of the axes"
    assert ax.get_yticks().max() == 100  # the axis still reads 0 to 100
    plt.close(ax.figure)


def test_learning_curves_have_a_legend_mark_pruned_trials_and_show_the_refit(tmp_path):
    trials = [trial(0, "COMPLETE", 80.0, [50.0, 80.0]), trial(1, "PRUNED", 40.0, [40.0], model="other")]
    refit = Refit(0, 85.0, 2, 1.0, 10, 1.0, tmp_path / "w", tmp_path / "p")
    ax = learning_curves_axes(trials, refit)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert {"m", "other"} <= set(legend)
    assert any("pruned" in text for text in legend) and any("refit" in text and "85.0%" in text for text in legend)
    assert any(line.get_marker() == "x" and list(line.get_xdata()) == [1] for line in ax.get_lines())  # where pruned
    assert any(line.get_marker() == "*" and list(line.get_ydata()) == [85.0] for line in ax.get_lines())
    plt.close(ax.figure)


def test_confusion_matrix_labels_of_long_class_names_do_not_overlap():
    labels = np.repeat(np.arange(3), 5)
    ax = confusion_axes(labels, labels[::-1], CLASSES)
    ax.figure.canvas.draw()
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        assert all(len(tick.get_text()) <= 20 for tick in ticks)
        assert len({tick.get_text() for tick in ticks}) == 3  # still told apart
        boxes = [tick.get_window_extent() for tick in ticks]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(ax.figure)


def test_the_summary_fits_80_columns_without_cutting_a_model_name():
    name = "resnet_textures_photos_and_a_long_suffix_x"
    record = RunRecord(summarize_task_stub(), "bank", [ranked(name, 71.2), ranked("short", 50.0)], ["linear"], "x")
    trials = [trial(0, "COMPLETE", 80.0, [80.0], model=name, test=77.0), trial(1, "PRUNED", 40.0, [40.0], model="short")]
    outcome = FinetuneOutcome("study", [name, "short"], trials, trials[0], None, Path("/a/rather/long/run/folder/best"),
                              2, optuna_study=None)
    console = Console(file=io.StringIO(), width=80)
    console.print(summary_table(record, outcome, {"rank": 3.0, "finetune": 40.0}, Path("/a/rather/long/run/folder")))
    lines = console.file.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines) and "…" not in console.file.getvalue()
    cells = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    assert name in "".join(cells)  # folded over lines, whole


def summarize_task_stub():
    """A task summary of no consequence (the summary table shows none of it)."""
    from automl.images import TaskSummary

    return TaskSummary("t", "f", ["a", "b"], None, {"train": [1, 1], "val": [1, 1], "test": [1, 1]}, [1, 1, 1],
                       [1, 1, 1], {"1x1": 6}, {"RGB": 6}, {}, 0)


def test_a_task_summary_counts_modes_sizes_and_skipped_files(tmp_path):
    root = write_image_folder(tmp_path / "images", {"a": 6, "b": 6})
    write_image(root / "a" / "grey.png", 99, size=40, mode="L")
    (root / "b" / "bad.png").write_bytes(b"\x89PNG truncated")
    summary = summarize_task(load_task(TaskSettings(name="t", root=str(root), val_fraction=0.2, test_fraction=0.2),
                                       tmp_path / "cache"))
    assert summary.modes == {"RGB": 12, "L": 1} and summary.width == [16, 16, 40]
    assert summary.common_sizes == {"16x16": 12, "40x40": 1}
    assert list(summary.skipped) == [str(root / "b" / "bad.png")] and summary.n_skipped == 1
    assert sum(summary.split_size(s) for s in ("train", "val", "test")) == 13
