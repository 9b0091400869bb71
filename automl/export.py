"""``python -m automl.export model=<run>/best [format=onnx] [opset=18]``: a deployable copy of an exported model.

Writes ``<model>/onnx/``: ``model.onnx`` (batch size free, the opset recorded), ``preprocess.json`` (input
pipeline and class names), ``predict.py`` (:mod:`automl.onnx_predict`, which needs only numpy, Pillow and
onnxruntime) and ``check.json``: the ONNX model through ``predict.py``'s own preprocessing against the
PyTorch model through automl's, on every image of the task's test split (``test_paths.txt`` of the
model folder) — the largest difference of a class probability and whether every top-1 class agrees. A
copy that disagrees is an error, not a file.

The model is rebuilt with ``timm.create_model(..., exportable=True)``: some timm layers (memory-efficient
activations, fused attention) have ONNX-friendly twins that must be chosen when the model is created.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import hydra
import numpy as np
import timm
import torch
from omegaconf import DictConfig, OmegaConf

from automl import onnx_predict
from automl.cli import run_command
from automl.config import CONF_DIR
from automl.errors import AutomlError
from automl.fileio import atomic_path, atomic_write_text
from automl.finetune.model_dir import TEST_PATHS_FILE, WEIGHTS_FILE, load_exported, predict_proba
from automl.pixels import pixel_batches
from automl.settings.tools import ExportSettings

log = logging.getLogger(__name__)

MAX_PROBABILITY_DIFFERENCE = 1e-4  # ONNX vs PyTorch, per class probability


class ExportCheckError(AutomlError):
    """The deployable copy does not predict what the model predicts."""


def export_onnx(model_dir: str | Path, opset: int = 18) -> Path:
    """Write ``model_dir/onnx`` (module docstring) and return it."""
    import safetensors.torch

    model_dir = Path(model_dir)
    exported = load_exported(model_dir)
    config = exported.config
    if config["data_config"].get("crop_mode", "center") not in onnx_predict.CROP_MODES:
        raise AutomlError(f"{model_dir}: crop_mode={config['data_config']['crop_mode']!r}; the ONNX predictor "
                          f"supports {onnx_predict.CROP_MODES}")
    model = timm.create_model(config["arch"], num_classes=config["num_classes"], exportable=True, **config["kwargs"])
    model.load_state_dict(safetensors.torch.load_file(str(model_dir / WEIGHTS_FILE)))
    model.eval()
    out = model_dir / "onnx"
    out.mkdir(exist_ok=True)
    _, height, width = config["data_config"]["input_size"]
    with atomic_path(out / "model.onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 3, height, width),), str(tmp), dynamo=True, opset_version=opset,
                          input_names=["pixels"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    preprocess = {**{k: config["data_config"][k] for k in ("input_size", "mean", "std", "interpolation", "crop_pct",
                                                           "crop_mode")}, "classes": config["classes"], "opset": opset}
    atomic_write_text(out / "preprocess.json", json.dumps(preprocess, indent=2) + "\n")
    shutil.copyfile(onnx_predict.__file__, out / "predict.py")
    check = check_onnx(out, exported)
    atomic_write_text(out / "check.json", json.dumps(check, indent=2) + "\n")
    log.info("ONNX model %s: opset %d, %d test image(s), max probability difference %.2e, top-1 agreement %s",
             out / "model.onnx", opset, check["images"], check["max_abs_probability_difference"],
             check["top1_identical"])
    return out


def check_onnx(folder: Path, exported) -> dict:
    """The ONNX copy in ``folder`` against the PyTorch model on the model's test images (module docstring)."""
    import onnxruntime

    paths_file = folder.parent / TEST_PATHS_FILE
    if not paths_file.is_file():
        raise AutomlError(f"{paths_file}: missing; the check needs the task's test images (export the model "
                          "with a current automl)")
    paths = [Path(line) for line in paths_file.read_text().splitlines() if line]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise AutomlError(f"{paths_file}: {len(missing)} test image(s) are gone, e.g. {missing[0]}")
    config = json.loads((folder / "preprocess.json").read_text())
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_probs = onnx_predict.probabilities(session, paths, config)
    torch_probs = predict_proba(exported.model, pixel_batches(paths, exported.data_config, 64), exported.data_config)
    difference = float(np.abs(onnx_probs - torch_probs).max()) if len(paths) else 0.0
    identical = bool(np.array_equal(onnx_probs.argmax(axis=1), torch_probs.argmax(axis=1)))
    if difference > MAX_PROBABILITY_DIFFERENCE or not identical:
        raise ExportCheckError(f"{folder / 'model.onnx'}: on {len(paths)} test images the ONNX model differs from "
                               f"PyTorch by up to {difference:.2e} in a probability (allowed "
                               f"{MAX_PROBABILITY_DIFFERENCE:g}), top-1 identical: {identical}")
    return {"opset": config["opset"], "images": len(paths), "max_abs_probability_difference": difference,
            "top1_identical": identical, "onnxruntime": onnxruntime.__version__, "torch": torch.__version__}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
def main(cfg: DictConfig) -> None:
    settings: ExportSettings = OmegaConf.to_object(cfg)
    out = run_command(lambda: export_onnx(settings.model, settings.opset),
                      hint="python -m automl.export --help shows the settings")
    check = json.loads((out / "check.json").read_text())
    print(f"{out / 'model.onnx'} (opset {check['opset']}): checked on {check['images']} test image(s), max "
          f"probability difference {check['max_abs_probability_difference']:.1e}, top-1 identical "
          f"{check['top1_identical']}\nrun it without automl: python {out / 'predict.py'} images=<folder or image>")


if __name__ == "__main__":
    main()
