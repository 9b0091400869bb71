"""What a bank entry's model expects and is: its input pipeline (data config) and its meta-features."""

from __future__ import annotations

import functools
import json
from typing import Any

import timm
import torch
from torch import nn

from automl.bank.manifest import BankEntry, Source
from automl.bank.weights import check_arch, create_errors


def resolve_data_config(entry: BankEntry, model: nn.Module, image_size: int | None = None) -> dict[str, Any]:
    """The input pipeline ``model`` expects: timm's data config with the entry's overrides.

    Returns ``{input_size: (C, H, W), mean, std (0..1 units), interpolation, crop_pct, crop_mode}``:
    ``entry.data_config`` wins over timm's pretrained config, and ``image_size`` (the task's override,
    pixels) replaces H and W.
    """
    config = timm.data.resolve_model_data_config(model, args=dict(entry.data_config or {}))
    if image_size is not None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        config["input_size"] = (config["input_size"][0], image_size, image_size)
    return config


def model_meta(model: nn.Module) -> dict[str, int]:
    """``num_params`` (all parameters) and ``depth``: the number of Conv/Linear layers with weights,
    excluding the classifier (the PARC paper's plasticity meta-feature; independent of the head)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    head_ids = {id(m) for m in head.modules()} if isinstance(head, nn.Module) else set()
    layers = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    depth = sum(1 for m in model.modules()
                if isinstance(m, layers) and m.weight is not None and id(m) not in head_ids)
    return {"num_params": sum(p.numel() for p in model.parameters()), "depth": depth}



def model_meta_of(entry: BankEntry) -> dict[str, int | None]:
    """Meta-features of an entry without loading its weights: :func:`model_meta` of its architecture
    (built on the meta device: no memory, no download) plus ``source_num_images``/``source_num_classes``
    (None when the manifest does not say)."""
    check_arch(entry)
    with create_errors(entry):
        meta = _arch_meta(entry.arch, entry.num_classes, json.dumps(entry.kwargs, sort_keys=True, default=repr))
    source = entry.source or Source(name="")
    return {**meta, "source_num_images": source.num_images, "source_num_classes": source.num_classes}


@functools.lru_cache(maxsize=256)
def _arch_meta(arch: str, num_classes: int, kwargs_json: str) -> dict[str, int]:
    kwargs = json.loads(kwargs_json)
    with torch.device("meta"):
        return model_meta(timm.create_model(arch, num_classes=num_classes, **kwargs))
