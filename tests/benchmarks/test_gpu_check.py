"""benchmarks/speed/gpu.py, the GPU check (issue 35.4), in its tiny CPU mode, so that the script a GPU day
depends on cannot rot: every measurement runs (the GPU-only figures say n/a), and without a GPU the default
command says so in one line."""

from __future__ import annotations

import sys

import pytest
import torch

from benchmarks.speed import gpu

pytestmark = pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning")  # Lightning's

TINY = ["device=cpu", "models=[resnet18]", "image_size=32", "batch_size=8", "warmup=1", "steps=3", "images=32",
        "extract_images=16", "docs=false"]


def run(monkeypatch, capsys, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["benchmarks/speed/gpu.py", *args])
    gpu.main()
    return capsys.readouterr().out


def test_the_cpu_mode_measures_every_path(monkeypatch, capsys, tmp_path):
    out = run(monkeypatch, capsys, *TINY, "end_to_end=false", f"folder={tmp_path}")
    table = next(line for line in out.splitlines() if line.startswith("| resnet18 | NHWC | 32-true |"))
    cells = [cell.strip() for cell in table.split("|")[1:-1]]
    assert float(cells[3].replace(",", "")) > 0 and float(cells[4].replace(",", "")) > 0 and float(cells[5]) > 0
    assert cells[6:9] == ["n/a / n/a", "n/a / n/a", "3482"]  # no GPU: no utilisation nor memory; timm's anchor
    assert "NVIDIA's A100 ResNet-50 AMP training: 2470 img/s" in out
    extraction = next(line for line in out.splitlines() if line.startswith("| resnet18 |") and line.count("|") == 5)
    assert all(float(cell.replace(",", "")) > 0 for cell in extraction.split("|")[2:-1])
    assert "End to end" not in out and "written:" not in out


@pytest.mark.slow
def test_the_cpu_mode_runs_the_pipeline_end_to_end(monkeypatch, capsys, tmp_path):
    out = run(monkeypatch, capsys, *TINY, "e2e_trials=1", "e2e_epochs=1", f"folder={tmp_path}")
    line = next(line for line in out.splitlines() if line.startswith("End to end"))
    assert "exit status 0" in line and "1 trials in finetune.csv" in line and "finetune" in line
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_without_a_gpu_the_check_says_so_in_one_line(monkeypatch, capsys):
    with pytest.raises(SystemExit, match=r"the GPU check needs a CUDA GPU.*its CPU mode: python -m benchmarks"):
        run(monkeypatch, capsys, "docs=false")
