"""What a bank entry's model expects and is: its input pipeline (data config) and its meta-features."""

from __future__ import annotations

import functools
import json
from typing import Any

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

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



def model_meta_of(entry: BankEntry) -> dict[str, float | None]:
    """Meta-features of an entry without loading its weights: :func:`model_meta` of its architecture and
    ``mflops``, the forward MFLOPs of one image at its input size (built and run on the meta device: no
    memory, no download), plus ``num_classes`` (of its head, 0 = headless) and ``source_num_images``/
    ``source_num_classes`` (None when the manifest does not say)."""
    check_arch(entry)
    with create_errors(entry):
        meta = _arch_meta(entry.arch, entry.num_classes, json.dumps(entry.kwargs, sort_keys=True, default=repr),
                          json.dumps(entry.data_config, sort_keys=True, default=list))
    source = entry.source or Source(name="")
    return {**meta, "num_classes": entry.num_classes, "source_num_images": source.num_images,
            "source_num_classes": source.num_classes}


@functools.lru_cache(maxsize=256)
def _arch_meta(arch: str, num_classes: int, kwargs_json: str, data_config_json: str) -> dict[str, float]:
    with torch.device("meta"):
        model = timm.create_model(arch, num_classes=num_classes, **json.loads(kwargs_json))
        config = timm.data.resolve_model_data_config(model, args=json.loads(data_config_json) or {})
        return {**model_meta(model), "mflops": forward_mflops(model, tuple(config["input_size"]))}


def training_gflop(images: int, mflops: float) -> float:
    """GFLOP of training on ``images`` images of a model of ``mflops`` forward MFLOPs per image: a step's
    forward and backward cost about 3 forwards."""
    return 3 * images * mflops / 1e3


def forward_mflops(model: nn.Module, input_size: tuple[int, int, int]) -> float:
    """Forward MFLOPs of one image of ``input_size`` (C, H, W) through ``model`` without its classifier
    (counted by torch's FlopCounterMode; the model may live on the meta device)."""
    device = next(model.parameters()).device
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    training = model.training
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.eval()  # batch norm on a batch of one
    # FlopCounterMode's module tracker hooks the autograd graph of every input that requires grad, and
    # fails on a parameter fed in directly (an attention-pool latent: test_vit3, SigLIP's "map" pool).
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            tokens = model.forward_features(torch.zeros(1, *input_size, device=device))
            model.forward_head(tokens, pre_logits=True) if isinstance(head, nn.Module) else None
    finally:
        model.train(training)
        for parameter in trainable:
            parameter.requires_grad_(True)
    return counter.get_total_flops() / 1e6
