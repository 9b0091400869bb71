"""``python -m automl.export``: the ONNX folder matches PyTorch, and a copy of it runs without torch."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import quick_overrides, run_cli, run_pipeline

pytestmark = [pytest.mark.slow,  # the pipeline, then the export and its predictor as commands
              pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning"),  # Lightning's
              pytest.mark.filterwarnings("ignore::UserWarning")]


def test_onnx_export_matches_pytorch_and_a_copy_of_its_folder_runs_without_torch(small_demo_bank, tmp_path, capsys):
    from automl.export import main as export_main

    run_pipeline(quick_overrides(small_demo_bank, tmp_path, "task=shapes", "finetune.top_k=1", "finetune.n_trials=1"),
        tmp_path / "run")
    best = tmp_path / "run" / "best"
    assert run_cli(export_main, f"model={best}") == 0
    assert run_cli(export_main, f"model={best}") == 0  # a re-export replaces, and orphans nothing
    printed = capsys.readouterr().out
    assert printed.count("checked on") == 2 and "torch.onnx" not in printed and "✅" not in printed
    onnx_files = sorted(path.name for path in (best / "onnx").iterdir())
    assert onnx_files == ["check.json", "model.onnx", "predict.py", "preprocess.json"]  # weights inside model.onnx
    check = json.loads((best / "onnx" / "check.json").read_text())
    assert check["opset"] == 18 and check["top1_identical"] and check["max_abs_probability_difference"] < 1e-4
    test = list(csv.DictReader((best / "test.csv").open()))
    assert check["images"] == len(test) > 0
    # the deployable folder, copied elsewhere, with torch, timm and automl made unimportable
    deployed = tmp_path / "elsewhere"
    shutil.copytree(best / "onnx", deployed)
    images = Path(test[0]["path"]).parent.parent  # the task's labelled test folder
    blocker = ("import sys, runpy\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('torch', 'timm', 'lightning', 'automl'):\n"
               "            raise ImportError(f'{name} is not available here')\n"
               "sys.meta_path.insert(0, Block())\n"
               f"sys.argv = ['predict.py', 'images={images}']\n"
               f"runpy.run_path({str(deployed / 'predict.py')!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((best / "config.json").read_text())
    out = deployed / f"predictions-{images.name}.csv"  # next to the model, not in the current folder
    assert f"predictions: {out}" in done.stdout and f"accuracy: {config['test_accuracy']:.4f}" in done.stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(test) and all(row["true_label"] == Path(row["path"]).parent.name for row in rows)
    one = subprocess.run([sys.executable, str(deployed / "predict.py"), f"images={test[0]['path']}"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert one.returncode == 0 and one.stdout.startswith(f"{test[0]['path']}: "), one.stderr[-2000:]
