"""The report stage and the report's figures (issue 11): a report rewritten from the run folder and its
study, the same command rerun in a new folder resuming that study, and figures that show what happened."""

from __future__ import annotations

import json

import pytest
from conftest import quick_overrides, run_pipeline
from PIL import Image

from automl.run.figures import history_axes, plot_history, predicted_vs_measured_axes

pytestmark = [pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning"),  # Lightning's
              pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.mark.slow
def test_report_stage_reads_the_run_and_a_rerun_resumes_its_study(small_demo_bank, tmp_path):
    base = quick_overrides(small_demo_bank, tmp_path, "task=shapes", "finetune.top_k=2", "finetune.n_trials=2")
    run_dir = tmp_path / "run"
    run_pipeline(base, run_dir)
    report, ranking = (run_dir / "report.md").read_text(), (run_dir / "ranking.csv").read_bytes()
    study = json.loads((run_dir / "run.json").read_text())["study"]
    # the history grows: another task fine-tuned (its records refine the predictor next time)
    run_pipeline(quick_overrides(small_demo_bank, tmp_path, "task=digits", "finetune.top_k=4", "finetune.n_trials=4",
                  "finetune.pruner=none"), tmp_path / "other")
    run_pipeline(quick_overrides(small_demo_bank, tmp_path, "task=glyphs", "finetune.top_k=4", "finetune.n_trials=4",
                  "finetune.pruner=none"), tmp_path / "third")

    run_pipeline([*base, "stage=report"], run_dir)
    assert (run_dir / "ranking.csv").read_bytes() == ranking  # never rewritten by a report
    again = (run_dir / "report.md").read_text()
    for section in ("**Best model", "## Fine-tuning search", "## Best model on the test split"):
        assert section in report and section in again
    assert len(again.splitlines()) >= len(report.splitlines())

    # the same command in a new folder finds the same study (named by the inputs, not by the grown
    # history's ranking) and trains nothing: its budget is spent
    run_pipeline(base, tmp_path / "rerun")
    assert json.loads((tmp_path / "rerun" / "run.json").read_text())["study"] == study
    rows = (tmp_path / "rerun" / "finetune.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and rows == (run_dir / "finetune.csv").read_text().splitlines()[1:]


@pytest.mark.slow
def test_report_stage_needs_a_run_folder(small_demo_bank, tmp_path):
    with pytest.raises(ValueError, match="stage=report reads a run folder"):
        run_pipeline(quick_overrides(small_demo_bank, tmp_path, "stage=report"), tmp_path / "empty")


# --------------------------------------------------------------------------------------------- figures
def test_the_search_history_shows_pruned_trials_on_an_accuracy_axis(tmp_path):
    import matplotlib.pyplot as plt

    from automl.finetune.outcome import TrialResult

    def trial(number: int, state: str, val: float | None) -> TrialResult:
        return TrialResult("s", number, "m", state, {}, val, None, 2, [], 1.0, 0, None, None, None, None)

    trials = [trial(0, "COMPLETE", 80.0), trial(1, "PRUNED", 40.0), trial(2, "PRUNED", 55.0), trial(3, "FAIL", None)]
    ax = history_axes(trials)
    assert sum(len(collection.get_offsets()) for collection in ax.collections) == 3  # pruned ones too
    assert ax.get_ylim()[0] == 0.0 and max(ax.get_yticks()) == 100 and "1 failed" in ax.get_title()
    assert all(float(tick).is_integer() for tick in ax.get_xticks())
    plt.close(ax.figure)
    with Image.open(plot_history(trials, tmp_path / "history.png")) as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_interval_whiskers_stay_inside_the_predicted_vs_measured_axes(tmp_path):
    from types import SimpleNamespace

    models = [SimpleNamespace(name=f"m{i}", predicted=p, low=lo, high=hi)
              for i, (p, lo, hi) in enumerate([(50.0, 12.0, 95.0), (70.0, 40.0, 99.0)])]
    ax = predicted_vs_measured_axes(models, {"m0": 60.0, "m1": 65.0})
    low, high = ax.get_xlim()
    assert low <= 12.0 and high >= 99.0
    import matplotlib.pyplot as plt

    plt.close(ax.figure)
