"""A deployable copy of an exported model (``python -m automl.export model=<run>/best [format=onnx] [opset=18]``).

Writes ``<model>/onnx/``, a folder that works wherever it is copied: ``model.onnx`` (weights inside, batch
size free, the opset recorded; a model past ONNX's 2 GB limit keeps them in ``model.onnx.data`` beside
it), ``preprocess.json`` (input pipeline and class names), ``predict.py``
(:mod:`automl.deploy.onnx_predict`, which needs only numpy, Pillow and onnxruntime) and ``check.json``:
the ONNX model through ``predict.py``'s own preprocessing against the PyTorch model through automl's, on
every image of the task's test split (``test.csv`` of the model folder) — the largest difference of a
class probability and whether every top-1 class agrees. A copy that disagrees is an error, not a file.
The model files are written in a staging folder and moved in, data file first: a crash or a re-export
never leaves a model that points to weights that are not there.

The model is rebuilt with ``timm.create_model(..., exportable=True)``: some timm layers (memory-efficient
activations, fused attention) have ONNX-friendly twins that must be chosen when the model is created.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import timm
import torch

from automl._fileio import atomic_write_text, read_csv_rows
from automl.deploy import onnx_predict
from automl.deploy.exported import TEST_FILE, WEIGHTS_FILE, load_exported, predict_proba
from automl.errors import AutomlError
from automl.images import _portable
from automl.images.pixels import pixel_batches

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
    model.load_state_dict(safetensors.torch.load_file(str(model_dir / WEIGHTS_FILE), device="cpu"))
    model.eval()
    out = model_dir / "onnx"
    out.mkdir(exist_ok=True)
    _, height, width = config["data_config"]["input_size"]
    with warnings.catch_warnings(), _exporter_output_to_log():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (torch.zeros(2, 3, height, width),), dynamo=True, opset_version=opset,
                                    input_names=["pixels"], output_names=["logits"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    _save_model(program, out)
    preprocess = {**{k: config["data_config"][k] for k in ("input_size", "mean", "std", "interpolation", "crop_pct",
                                                           "crop_mode")}, "classes": config["classes"], "opset": opset}
    atomic_write_text(out / "preprocess.json", json.dumps(preprocess, indent=2) + "\n")
    atomic_write_text(out / "predict.py", standalone_predictor())
    check = check_onnx(out, exported)
    atomic_write_text(out / "check.json", json.dumps(check, indent=2) + "\n")
    log.debug("ONNX model %s: opset %d, %d test image(s), max probability difference %.2e, top-1 agreement %s",
             out / "model.onnx", opset, check["images"], check["max_abs_probability_difference"],
             check["top1_identical"])
    return out


MODEL_FILE = "model.onnx"
DATA_FILE = MODEL_FILE + ".data"  # only for a model past ONNX's 2 GB protobuf limit


def _save_model(program, out: Path) -> None:
    """``out/model.onnx`` (and its data file when the weights cannot be inside), moved in from a staging
    folder, the data first; a data file of an earlier export that the new model does not use is removed."""
    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=out) as staging:
        program.save(Path(staging) / MODEL_FILE)  # external data only past 2 GB (ONNXProgram.save's default)
        data = Path(staging) / DATA_FILE
        if data.is_file():
            os.replace(data, out / DATA_FILE)
        os.replace(Path(staging) / MODEL_FILE, out / MODEL_FILE)
        if not data.exists() and (out / DATA_FILE).is_file() and not _uses_external_data(out / MODEL_FILE):
            (out / DATA_FILE).unlink()


def _uses_external_data(path: Path) -> bool:
    import onnx

    return any(onnx.external_data_helper.uses_external_data(tensor)
               for tensor in onnx.load(str(path), load_external_data=False).graph.initializer)


@contextlib.contextmanager
def _exporter_output_to_log() -> Iterator[None]:
    """The exporter prints its progress (``[torch.onnx] Obtain model graph ... ✅``): into the log at debug
    level, not onto the user's console."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        yield
    for line in captured.getvalue().splitlines():
        log.debug("torch.onnx: %s", line)


def standalone_predictor() -> str:
    """``predict.py``: :mod:`automl.deploy.onnx_predict` with :mod:`automl.images._portable`, which it imports,
    inlined, so that it runs without automl."""
    script = Path(onnx_predict.__file__).read_text()
    portable = Path(_portable.__file__).read_text()
    shared = portable[portable.index("IMAGE_EXTENSIONS = "):]
    import_line = next(line for line in script.splitlines(keepends=True) if "automl.images._portable" in line)
    return script.replace(import_line, "\n" + shared + "\n")


def check_onnx(folder: Path, exported) -> dict:
    """The ONNX copy in ``folder`` against the PyTorch model on the model's test images (module docstring)."""
    import onnxruntime

    test_file = folder.parent / TEST_FILE
    if not test_file.is_file():
        raise AutomlError(f"{test_file}: missing; the check needs the task's test images (export the model "
                          "with a current automl)")
    paths = [Path(row["path"]) for row in read_csv_rows(test_file)]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise AutomlError(f"{test_file}: {len(missing)} test image(s) are gone, e.g. {missing[0]}")
    config = json.loads((folder / "preprocess.json").read_text())
    session = onnxruntime.InferenceSession(str(folder / MODEL_FILE), providers=["CPUExecutionProvider"])
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
