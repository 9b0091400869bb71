"""Bank checkpoints → timm models with their weights, loaded safely.

``weights`` is ``hf-hub:<repo>``, ``timm`` / ``timm:<tag>`` (timm's pretrained tags, fetched through the
Hugging Face cache), or a local ``.safetensors`` / weights-only ``torch.save`` state dict. Local files
are never unpickled with ``weights_only=False``: loading a checkpoint executes no code from it. A
pinned ``sha256`` is verified before a file is read. Every failure is a :class:`BankError` naming the
entry.
"""

from __future__ import annotations

import contextlib
import difflib
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path

import safetensors.torch
import timm
import torch
from torch import nn

from automl._fileio import file_sha256
from automl.bank.manifest import BankEntry, BankError


def create_model(entry: BankEntry, num_classes: int | None = None) -> nn.Module:
    """The timm model of ``entry`` with its checkpoint weights loaded (in train mode, on the CPU).

    Args:
        entry: a validated bank entry.
        num_classes: None keeps the checkpoint's classifier (``entry.num_classes`` outputs, 0 = headless);
            an int replaces it with a freshly initialised head of that size (0 removes it).

    Raises:
        BankError: unknown architecture, bad kwargs, weights missing/unreachable, sha256 mismatch,
            unreadable or unsafe file, or a state dict whose keys/shapes don't fit the architecture.
    """
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 0):
        raise ValueError(f"num_classes must be None or an int >= 0, got {num_classes!r}")
    check_arch(entry)
    model = _load_local(entry) if entry.is_local else _load_pretrained(entry)
    if num_classes is not None:
        model.reset_classifier(num_classes)
    return model


def check_arch(entry: BankEntry) -> None:
    if not timm.is_model(entry.arch):
        close = difflib.get_close_matches(entry.arch, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise BankError(f"{entry.label}: unknown timm architecture {entry.arch!r} (timm {timm.__version__}){hint}")


def _load_pretrained(entry: BankEntry) -> nn.Module:
    """timm's own pretrained loading (Hugging Face hub or its cache); the head is the checkpoint's."""
    if entry.weights.startswith("hf-hub:"):
        name = entry.weights
    else:
        tag = entry.weights.removeprefix("timm").removeprefix(":")
        name = f"{entry.arch}.{tag}" if tag else entry.arch
    try:
        model = timm.create_model(name, pretrained=True, **entry.kwargs)
    except Exception as exc:  # hub, cache, tag and kwargs errors come in many types; all end here
        raise BankError(
            f"{entry.label}: timm.create_model({name!r}, pretrained=True, **{entry.kwargs}) failed "
            f"({type(exc).__name__}: {exc}). Offline, timm finds pretrained weights only in the Hugging Face "
            "cache (HF_HOME; HF_HUB_OFFLINE=1 fails fast instead of retrying): download the checkpoint once "
            "and point `weights` at the local .safetensors file."
        ) from exc
    architecture = model.pretrained_cfg.get("architecture", entry.arch)
    if architecture != entry.arch:
        raise BankError(f"{entry.label}: {entry.weights!r} is a {architecture!r} checkpoint, not {entry.arch!r}")
    if model.num_classes != entry.num_classes:
        raise BankError(f"{entry.label}: the checkpoint has {model.num_classes} classes but the entry says "
                        f"num_classes: {entry.num_classes}")
    return model


def _load_local(entry: BankEntry) -> nn.Module:
    path = Path(entry.weights)
    if not path.is_file():
        raise BankError(f"{entry.label}: weights file {path} not found")
    verified_digest(entry)
    state = _read_state_dict(path, entry)
    with create_errors(entry):
        model = timm.create_model(entry.arch, num_classes=entry.num_classes, **entry.kwargs)
    _check_fits(state, model, entry)
    model.load_state_dict(state)
    return model


def _read_state_dict(path: Path, entry: BankEntry) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            state = safetensors.torch.load_file(path, device="cpu")
        else:
            # weights_only=True: the unpickler only accepts tensors and plain containers; any other
            # global (os.system, a custom class ...) is refused before it can be called.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if "Unsupported" in line
                       or "WeightsUnpickler" in line), str(exc).splitlines()[0] if str(exc) else "")
        raise BankError(f"{entry.label}: {path} is not a plain state dict: it would need "
                        f"torch.load(weights_only=False), which can run arbitrary code, so automl refuses it "
                        f"({reason}). Re-save it with safetensors or torch.save(model.state_dict()).") from exc
    except Exception as exc:  # safetensors/zip/pickle readers raise assorted types for damaged files
        raise BankError(f"{entry.label}: cannot read {path} (truncated or not a checkpoint?): "
                        f"{type(exc).__name__}: {exc}") from exc
    if not (isinstance(state, Mapping)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        keys = list(state)[:5] if isinstance(state, Mapping) else type(state).__name__
        raise BankError(f"{entry.label}: {path} must hold a flat {{name: tensor}} state dict "
                        f"(model.state_dict()), got {keys}")
    return dict(state)


def _check_fits(state: Mapping[str, torch.Tensor], model: nn.Module, entry: BankEntry) -> None:
    """Name the first key whose shape differs, then missing and unexpected keys."""
    expected = model.state_dict()
    hint = f" (do num_classes={entry.num_classes} and kwargs={entry.kwargs} match the checkpoint?)"
    for key, tensor in expected.items():
        if key in state and state[key].shape != tensor.shape:
            raise BankError(f"{entry.label}: {entry.weights} does not fit {entry.arch}: {key!r} has shape "
                            f"{list(state[key].shape)} in the checkpoint but {list(tensor.shape)} in the model{hint}")
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise BankError(f"{entry.label}: {entry.weights} does not fit {entry.arch}: "
                        f"{len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} unexpected key(s) "
                        f"{unexpected[:3]}{hint}")




def verified_digest(entry: BankEntry) -> str:
    """:func:`weights_digest`, after checking a local file against the entry's pinned ``sha256``: caches
    keyed by it never serve a checkpoint that no longer matches its manifest."""
    digest = weights_digest(entry)
    if entry.sha256 is not None and digest != entry.sha256:
        raise BankError(f"{entry.label}: sha256 mismatch for {entry.weights}: the manifest says {entry.sha256}, "
                        f"the file has {digest} (changed or corrupt download?)")
    return digest


def weights_digest(entry: BankEntry) -> str:
    """Identity of the entry's weights for caches and history: a local file's sha256, else the hub name."""
    if not entry.is_local:
        return entry.weights
    try:
        return file_sha256(entry.weights)
    except OSError as exc:
        raise BankError(f"{entry.label}: cannot read weights file {entry.weights}: {exc}") from exc


@contextlib.contextmanager
def create_errors(entry: BankEntry) -> Iterator[None]:
    """What ``timm.create_model`` raises for kwargs the architecture rejects, as a BankError naming the entry."""
    try:
        yield
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise BankError(f"{entry.label}: timm.create_model({entry.arch!r}, **{entry.kwargs}) failed: "
                        f"{type(exc).__name__}: {exc}") from exc
