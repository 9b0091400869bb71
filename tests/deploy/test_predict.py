"""``python -m automl.predict`` on an exported model: bad inputs are named, a huge image is skipped and
named, one image prints its label."""

from __future__ import annotations

import json
import os

import pytest
from conftest import huge_png, quick_overrides, run_cli, run_pipeline, write_image_folder

from automl.deploy.exported import ExportError, load_exported
from automl.predict import main as predict_main

pytestmark = [pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning"),  # Lightning's
              pytest.mark.filterwarnings("ignore::UserWarning")]


def test_predict_reports_bad_inputs(tmp_path, capsys):
    assert run_cli(predict_main, f"model={tmp_path / 'nope'}", f"images={tmp_path}") == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{not json")
    assert run_cli(predict_main, f"model={tmp_path / 'm'}", f"images={tmp_path}") == 2
    assert "config.json: not readable JSON" in capsys.readouterr().err
    (tmp_path / "m" / "config.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(ExportError, match="missing field"):
        load_exported(tmp_path / "m")
    assert run_cli(predict_main, "images=x") == 2
    assert "missing mandatory value: model" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_skips_a_huge_image_and_prints_one_images_label(small_demo_bank, tmp_path, capsys):
    run_pipeline(quick_overrides(small_demo_bank, tmp_path, "task=shapes", "finetune.top_k=1", "finetune.n_trials=1"),
        tmp_path / "run")
    best = tmp_path / "run" / "best"
    folder = write_image_folder(tmp_path / "images", {"x": 3})
    huge_png(folder / "x" / "bomb.png")
    os.chdir(tmp_path)
    assert run_cli(predict_main, f"model={best}", f"images={folder}") == 0
    out = capsys.readouterr()
    assert "bomb.png" in out.out + out.err  # named, skipped
    csv = tmp_path / "run" / "predictions-images.csv"  # by default next to the model, not in the current folder
    assert csv.is_file() and not (tmp_path / "predictions.csv").exists()
    assert len(csv.read_text().splitlines()) == 1 + 3
    one = next((folder / "x").glob("0*.png"))
    assert run_cli(predict_main, f"model={best}", f"images={one}", f"out={tmp_path / 'one.csv'}") == 0
    label = (tmp_path / "one.csv").read_text().splitlines()[1].split(",")[1]
    assert f"{one}: {label} (" in capsys.readouterr().out
