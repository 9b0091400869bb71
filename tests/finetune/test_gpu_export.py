"""A model fine-tuned on a GPU is used on a machine without one (issue 35.3): the search trains on CUDA and
exports; then, with CUDA hidden (``CUDA_VISIBLE_DEVICES=""``), ``automl.predict`` reproduces its test accuracy and
``automl.export format=onnx`` checks the ONNX copy against it. Skipped without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, quick_overrides, write_random_bank

from automl.bank import load_bank
from automl.finetune import run_finetune
from automl.images.tasks import load_task
from automl.settings import compose, resolve

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning")]


def without_cuda(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in a process that sees no GPU."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=env)


def test_a_model_trained_on_a_gpu_predicts_and_exports_without_one(tmp_path):
    bank = write_random_bank(tmp_path / "bank", {"convnext": ("test_convnext", {}), "effnet": ("test_efficientnet", {})}, 5)
    settings = resolve(compose(quick_overrides(bank, tmp_path, "device=cuda", "finetune.n_trials=2",
                                               "finetune.top_k=2", "finetune.default_hparams.batch_size=32")))
    task = load_task(settings.task, settings.cache_dir)
    outcome = run_finetune(task, list(load_bank(settings.bank, settings.cache_dir)), settings.finetune,
                           settings.search_space, storage=settings.storage, device="cuda", seed=0,
                           run_dir=tmp_path / "run", study="gpu")
    assert {trial.state for trial in outcome.trials} == {"COMPLETE"} and outcome.best_dir is not None
    attrs = outcome.optuna_study.trials[outcome.best.number].user_attrs
    assert attrs["device"] == "cuda" and attrs["precision"] in ("bf16-mixed", "16-mixed")

    predicted = without_cuda("automl.predict", f"model={outcome.best_dir}", f"images={task.root / 'test'}",
                             f"out={tmp_path / 'predictions.csv'}")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    accuracy = float(next(line for line in predicted.stdout.splitlines() if line.startswith("accuracy:")).split()[1])
    assert accuracy == pytest.approx(outcome.test_accuracy, abs=100 / len(task.splits["test"]) + 1e-6)  # one image

    pytest.importorskip("onnxruntime")
    exported = without_cuda("automl.export", f"model={outcome.best_dir}", "format=onnx")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (outcome.best_dir / "onnx" / "model.onnx").is_file()  # and checked on every test image (check.json)
