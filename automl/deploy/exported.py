"""The exported model folder (``best/``): write it, load it, and predict with it.

``<dir>/model.safetensors`` holds the fine-tuned state dict; ``<dir>/config.json`` everything needed to
rebuild and feed the model without the bank or the task: the timm architecture and kwargs, the class
names, the eval input pipeline (input size, mean/std, interpolation, crop_pct, crop_mode), where it
came from (bank entry, weights, digest; task name and fingerprint; study and trial), the
hyperparameters and the measured ``val_accuracy``/``test_accuracy`` (percent). The config records the
weights' sha256, so a folder whose two files do not belong together is an error, not a silent mismatch.

:func:`predict_proba` is the one evaluation path: the search computes each trial's test accuracy with
it, and ``automl.deploy.predict`` uses it on an exported folder, both on :mod:`automl.images.pixels` batches of
``EVAL_BATCH_SIZE``, so both see the same pixels and numbers.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import timm
import torch
from torch import nn

from automl._fileio import atomic_path, atomic_write_text, file_sha256
from automl.errors import AutomlError
from automl.images.pixels import normalize

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TEST_FILE = "test.csv"  # the task's test images, path,label (what test_accuracy was measured on)
FORMAT_VERSION = 1
EVAL_BATCH_SIZE = 64  # the search's test evaluation and automl.deploy.predict's default: identical batches
_DATA_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")
_GIVEN = ("arch", "kwargs", "num_classes", "classes", "data_config")  # what export_model's caller provides
_REQUIRED = ("format_version", *_GIVEN, "weights_sha256")


class ExportError(AutomlError):
    """An exported model folder that cannot be used; the message names the folder and the field."""


@dataclass
class ExportedModel:
    """A loaded export: ``model`` (eval mode, CPU) and its ``config`` (config.json)."""

    model: nn.Module
    config: dict[str, Any]

    @property
    def data_config(self) -> dict[str, Any]:
        return self.config["data_config"]

    @property
    def classes(self) -> list[str]:
        return list(self.config["classes"])


def save_weights(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write a state dict as safetensors, atomically (a crash leaves the old file or none), from CPU copies in
    the standard layout whatever device and layout trained it: the file loads on a machine without a GPU."""
    path = Path(path)
    with atomic_path(path) as tmp:
        safetensors.torch.save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    return path


def export_model(out_dir: str | os.PathLike, weights: str | os.PathLike, config: Mapping[str, Any],
                 test_images: Iterable[tuple[str | os.PathLike, str]] = ()) -> Path:
    """Write ``out_dir/{model.safetensors, config.json, test.csv}`` from a trial's weights file, its config
    and the task's test images as (path, class name) pairs.

    ``config`` must hold ``arch, kwargs, num_classes, classes, data_config`` (keys in ``_DATA_KEYS``)
    and may hold anything JSON-serialisable besides (provenance, hparams, accuracies). Concurrent
    exporters on one machine are serialised by a lock file; each file is replaced atomically.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"format_version": FORMAT_VERSION, **config}
    data_config = config.get("data_config") or {}
    missing = [key for key in _GIVEN if key not in config]
    missing += [f"data_config.{key}" for key in _DATA_KEYS if key not in data_config]
    if missing:
        raise ExportError(f"export to {out_dir}: config is missing {missing}")
    with open(out_dir.parent / f".{out_dir.name}.lock", "w") as lock:  # next to the folder: it holds only the model
        fcntl.flock(lock, fcntl.LOCK_EX)
        with atomic_path(out_dir / WEIGHTS_FILE) as tmp:
            tmp.write_bytes(Path(weights).read_bytes())
        config["weights_sha256"] = file_sha256(out_dir / WEIGHTS_FILE)
        with atomic_path(out_dir / TEST_FILE) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            writer.writerows((str(path), label) for path, label in test_images)
        atomic_write_text(out_dir / CONFIG_FILE, json.dumps(_jsonable(config), indent=2) + "\n")
    return out_dir


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    """``model_dir/config.json``, validated (ExportError naming the folder and field otherwise)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ExportError(f"model={model_dir}: not a folder (expected an exported model, e.g. <run>/best)")
    path = model_dir / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ExportError(f"{path}: missing; {model_dir} is not an exported model folder") from exc
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ExportError(f"{path}: expected a JSON object, got {type(config).__name__}")
    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        raise ExportError(f"{path}: missing field(s) {missing}")
    if config["format_version"] != FORMAT_VERSION:
        raise ExportError(f"{path}: format_version {config['format_version']!r}; this automl reads {FORMAT_VERSION}")
    classes, num_classes = config["classes"], config["num_classes"]
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes) and len(classes) == num_classes):
        raise ExportError(f"{path}: classes must be a list of {num_classes} (num_classes) names, got {classes!r}")
    data_config = config["data_config"]
    if not isinstance(data_config, dict) or any(key not in data_config for key in _DATA_KEYS):
        raise ExportError(f"{path}: data_config must hold {list(_DATA_KEYS)}, got {data_config!r}")
    if not isinstance(config["kwargs"], dict):
        raise ExportError(f"{path}: kwargs must be an object, got {config['kwargs']!r}")
    return config


def load_exported(model_dir: str | os.PathLike) -> ExportedModel:
    """Rebuild the exported model (no network, no pickle): timm architecture + safetensors weights."""
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ExportError(f"{weights}: missing")
    if file_sha256(weights) != config["weights_sha256"]:
        raise ExportError(f"{weights}: sha256 differs from {CONFIG_FILE}'s weights_sha256 (the two files are "
                          "from different exports or the weights are damaged)")
    try:
        model = timm.create_model(config["arch"], pretrained=False, num_classes=config["num_classes"],
                                  **config["kwargs"])
        model.load_state_dict(safetensors.torch.load_file(str(weights), device="cpu"))
    except Exception as exc:  # unknown arch, bad kwargs, damaged file, shapes: all mean a bad export
        raise ExportError(f"{model_dir}: cannot rebuild {config['arch']!r} from {WEIGHTS_FILE}: "
                          f"{type(exc).__name__}: {exc}") from exc
    return ExportedModel(model=model.eval(), config=config)


@torch.inference_mode()
def predict_proba(model: nn.Module, batches: Iterable[torch.Tensor], data_config: Mapping[str, Any], *,
                  device: str = "cpu") -> np.ndarray:
    """Class probabilities [N, C] (float32, softmax of fp32 logits) of ``model`` for uint8 pixel batches
    ([b, C, H, W], :mod:`automl.images.pixels`), normalised with ``data_config``.

    The model is evaluated in eval mode on ``device`` in float32 and is put back in its previous mode.
    """
    was_training = model.training
    model.eval().to(device)
    try:
        chunks = [torch.softmax(model(normalize(batch.to(device), data_config)).float(), dim=1).cpu()
                  for batch in batches]
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), dtype=np.float32)
