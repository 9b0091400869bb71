"""Model bank: bank specs → timm models with their checkpoint weights, loaded safely.

A bank is a list of entries (``conf/bank/<name>.yaml`` inline, or a folder holding a ``bank.yaml``
manifest; format in ``ARCHITECTURE.md``). Each entry names a timm architecture and where its weights
live: ``hf-hub:<repo>``, ``timm`` / ``timm:<tag>`` (timm's pretrained tags, fetched through the Hugging
Face cache), or a local ``.safetensors`` / weights-only ``torch.save`` state dict. Local files are
never unpickled with ``weights_only=False``: loading a checkpoint executes no code from it.

Every problem (bad manifest field, unknown architecture, sha256 mismatch, truncated file, unsafe
pickle, shapes that don't fit) is a :class:`BankError` naming the bank file and the entry.

``python -m automl.bank build [--out DIR] [--seed N]`` builds the offline demo bank
(:mod:`automl.demo_bank`).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import hashlib
import json
import logging
import os
import pickle
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import safetensors.torch
import timm
import torch
import yaml
from torch import nn

from automl.config import to_container

log = logging.getLogger(__name__)

MANIFEST = "bank.yaml"
BUILDERS = ("demo",)  # values of the bank config's ``build`` key

_BANK_KEYS = {"name", "models", "dir", "build"}
_ENTRY_KEYS = {"name", "arch", "weights", "sha256", "num_classes", "source", "kwargs", "data_config"}
_SOURCE_KEYS = {"name", "num_images", "num_classes"}
_DATA_CONFIG_KEYS = {"input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode"}
_INTERPOLATIONS = {"nearest", "bilinear", "bicubic", "box", "hamming", "lanczos"}
_CROP_MODES = {"center", "squash", "border"}
# create_model kwargs the entry's own fields control; setting them in kwargs would contradict the entry.
_RESERVED_KWARGS = {"num_classes", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # names become file names and CSV cells
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class BankError(ValueError):
    """A bank config, manifest entry or checkpoint that cannot be used; the message names the file and entry."""


@dataclass(frozen=True)
class Source:
    """What a checkpoint was pretrained on (meta-features for the accuracy predictor)."""

    name: str
    num_images: int | None = None
    num_classes: int | None = None


@dataclass(frozen=True)
class BankEntry:
    """One checkpoint of a bank, as validated from the manifest.

    ``weights`` is ``"hf-hub:<repo>"``, ``"timm"``, ``"timm:<tag>"`` or an absolute path to a local file.
    ``num_classes`` is the classifier size stored in the checkpoint (0 = headless). ``data_config``
    holds the input the checkpoint expects (any of input_size [3, H, W], mean, std in 0..1 units,
    interpolation, crop_pct, crop_mode); missing keys fall back to timm's pretrained config.
    """

    name: str
    arch: str
    weights: str
    num_classes: int
    sha256: str | None = None
    source: Source | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    data_config: dict[str, Any] | None = None
    origin: str = field(default="", compare=False)  # the bank file (or config) that defined the entry

    @property
    def is_local(self) -> bool:
        return not (self.weights == "timm" or self.weights.startswith(("timm:", "hf-hub:")))

    @property
    def source_name(self) -> str:
        """What the checkpoint was pretrained on ("" when the manifest does not say)."""
        return self.source.name if self.source else ""

    @property
    def label(self) -> str:
        """How error messages name the entry: ``<bank file>: model '<name>'``."""
        return f"{self.origin}: model {self.name!r}"


@dataclass(frozen=True)
class Bank:
    name: str
    entries: tuple[BankEntry, ...]
    root: Path  # the folder local weight paths were resolved against

    def __iter__(self) -> Iterator[BankEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


# ---------------------------------------------------------------------------------------------- loading
def load_bank(cfg: Mapping, cache_dir: str | os.PathLike) -> Bank:
    """Read and validate the bank described by ``cfg`` (the ``bank`` config group).

    ``cfg`` is either inline, ``{name, models: [...]}`` (relative weight paths are relative to the
    working directory), or ``{name, dir}`` naming a folder with a ``bank.yaml`` manifest (paths
    relative to the manifest; the manifest's own name wins over ``cfg``'s). ``build: demo`` builds the
    offline demo bank when its manifest is missing, but only in its own folder ``cache_dir/banks/<name>``:
    a ``dir`` elsewhere without a manifest is an error, never a surprise build.
    """
    cfg = to_container(cfg)
    if not isinstance(cfg, Mapping):
        raise BankError(f"bank config must be a mapping, got {type(cfg).__name__}")
    _check_keys(cfg, _BANK_KEYS, "bank config")
    build = cfg.get("build")
    if build is not None and build not in BUILDERS:
        raise BankError(f"bank config: build={build!r}; known builders: {', '.join(BUILDERS)}")
    if "models" in cfg:
        if cfg.get("dir") is not None or build is not None:
            raise BankError("bank config: give either `models` (an inline bank) or `dir` (a folder with "
                            f"{MANIFEST}), not both")
        name = _require_name(cfg, "bank config")
        return _parse_bank(name, cfg["models"], origin=f"bank config {name!r}", root=Path.cwd())

    if cfg.get("dir") is None and build is None:
        raise BankError(f"bank config: set `models` (an inline bank) or `dir` (a folder with {MANIFEST})")
    own_folder = (Path(cache_dir) / "banks" / str(cfg.get("name") or "")).expanduser().resolve()
    folder = Path(cfg.get("dir") or own_folder).expanduser().resolve()
    manifest = folder / MANIFEST
    if not manifest.is_file():
        if build is None or folder != own_folder or not cfg.get("name"):
            hint = (f"; the {build} bank is built only in {own_folder} (build one here with "
                    f"`python -m automl.bank build --out {folder}`)" if build else "")
            raise BankError(f"{manifest}: bank manifest not found (bank.dir={cfg.get('dir')}){hint}")
        from automl.demo_bank import build_demo_bank

        log.info("bank %s: %s is missing; building the offline demo bank", cfg.get("name"), manifest)
        build_demo_bank(manifest.parent)
    try:
        data = yaml.safe_load(manifest.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BankError(f"{manifest}: cannot read the bank manifest: {exc}") from exc
    if not isinstance(data, Mapping):
        raise BankError(f"{manifest}: expected a mapping with `name` and `models`, got {type(data).__name__}")
    _check_keys(data, {"name", "models"}, str(manifest))
    name = data.get("name") or _require_name(cfg, str(manifest))
    return _parse_bank(name, data.get("models"), origin=str(manifest), root=manifest.parent)


def _parse_bank(name: str, models: Any, origin: str, root: Path) -> Bank:
    if not isinstance(models, list) or not models:
        raise BankError(f"{origin}: `models` must be a non-empty list of entries")
    entries, seen = [], {}
    for index, raw in enumerate(models):
        entry = _parse_entry(raw, f"{origin}: models[{index}]", origin, root)
        if entry.name in seen:
            raise BankError(f"{origin}: duplicate model name {entry.name!r} (models[{seen[entry.name]}] "
                            f"and models[{index}])")
        seen[entry.name] = index
        entries.append(entry)
    return Bank(name=str(name), entries=tuple(entries), root=root)


def _parse_entry(raw: Any, where: str, origin: str, root: Path) -> BankEntry:
    if not isinstance(raw, Mapping):
        raise BankError(f"{where}: expected a mapping with name, arch, weights, num_classes; got {raw!r}")
    if isinstance(raw.get("name"), str):
        where = f"{where} ({raw['name']!r})"
    _check_keys(raw, _ENTRY_KEYS, where)
    for key in ("name", "arch", "weights", "num_classes"):
        if raw.get(key) is None:
            raise BankError(f"{where}: missing required field `{key}`")
    name, arch, weights = (_string(raw, key, where) for key in ("name", "arch", "weights"))
    if not _NAME_RE.match(name):
        raise BankError(f"{where}: name {name!r} may only use letters, digits and _.+- (it names files)")
    sha256 = raw.get("sha256")
    if sha256 is not None:
        sha256 = _string(raw, "sha256", where).lower()
        if not _SHA256_RE.match(sha256):
            raise BankError(f"{where}: sha256 must be 64 hex digits, got {raw['sha256']!r}")
    entry = BankEntry(
        name=name,
        arch=arch,
        weights=weights,
        num_classes=_count(raw.get("num_classes"), f"{where}: num_classes"),
        sha256=sha256,
        source=_parse_source(raw.get("source"), f"{where}: source"),
        kwargs=_parse_kwargs(raw.get("kwargs"), f"{where}: kwargs"),
        data_config=_parse_data_config(raw.get("data_config"), f"{where}: data_config"),
        origin=origin,
    )
    if entry.is_local:
        path = Path(weights).expanduser()
        return replace(entry, weights=str(path if path.is_absolute() else (root / path).resolve()))
    if sha256 is not None:
        raise BankError(f"{where}: sha256 can only be verified for local weight files, not {weights!r}")
    return entry


def _parse_source(raw: Any, where: str) -> Source | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise BankError(f"{where}: expected {{name, num_images, num_classes}}, got {raw!r}")
    _check_keys(raw, _SOURCE_KEYS, where)
    num_images, num_classes = raw.get("num_images"), raw.get("num_classes")
    return Source(
        name=_string(raw, "name", where),
        num_images=None if num_images is None else _count(num_images, f"{where}.num_images"),
        num_classes=None if num_classes is None else _count(num_classes, f"{where}.num_classes"),
    )


def _parse_kwargs(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(key, str) for key in raw):
        raise BankError(f"{where}: expected a mapping of timm.create_model keyword arguments, got {raw!r}")
    reserved = sorted(_RESERVED_KWARGS & set(raw))
    if reserved:
        raise BankError(f"{where}: {reserved} are set by automl (use the entry's num_classes/weights fields)")
    return dict(raw)


def _parse_data_config(raw: Any, where: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise BankError(f"{where}: expected a mapping with keys among {sorted(_DATA_CONFIG_KEYS)}, got {raw!r}")
    _check_keys(raw, _DATA_CONFIG_KEYS, where)
    config: dict[str, Any] = {}
    if "input_size" in raw:
        size = raw["input_size"]
        if not (isinstance(size, list | tuple) and len(size) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise BankError(f"{where}: input_size must be [channels, height, width] positive ints, got {size!r}")
        config["input_size"] = tuple(size)
    channels = config.get("input_size", (3,))[0]
    for key in ("mean", "std"):
        if key in raw:
            values = raw[key]
            if not (isinstance(values, list | tuple) and len(values) == channels
                    and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)):
                raise BankError(f"{where}: {key} must be {channels} numbers (0..1 pixel units), got {values!r}")
            if key == "std" and min(values) <= 0:
                raise BankError(f"{where}: std must be positive, got {values!r}")
            config[key] = tuple(float(v) for v in values)
    if "interpolation" in raw:
        if raw["interpolation"] not in _INTERPOLATIONS:
            raise BankError(f"{where}: interpolation must be one of {sorted(_INTERPOLATIONS)}, "
                            f"got {raw['interpolation']!r}")
        config["interpolation"] = raw["interpolation"]
    if "crop_pct" in raw:
        crop_pct = raw["crop_pct"]
        if not (isinstance(crop_pct, int | float) and not isinstance(crop_pct, bool) and crop_pct > 0):
            raise BankError(f"{where}: crop_pct must be a positive number, got {crop_pct!r}")
        config["crop_pct"] = float(crop_pct)
    if "crop_mode" in raw:
        if raw["crop_mode"] not in _CROP_MODES:
            raise BankError(f"{where}: crop_mode must be one of {sorted(_CROP_MODES)}, got {raw['crop_mode']!r}")
        config["crop_mode"] = raw["crop_mode"]
    return config


def _check_keys(raw: Mapping, allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise BankError(f"{where}: unknown field(s) {unknown}; known: {sorted(allowed)}")


def _require_name(raw: Mapping, where: str) -> str:
    if raw.get("name") is None:
        raise BankError(f"{where}: missing required field `name`")
    return _string(raw, "name", where)


def _string(raw: Mapping, key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BankError(f"{where}: `{key}` must be a non-empty string, got {value!r}")
    return value.strip()


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BankError(f"{where} must be an integer >= 0, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------- weights
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
    _check_arch(entry)
    model = _load_local(entry) if entry.is_local else _load_pretrained(entry)
    if num_classes is not None:
        model.reset_classifier(num_classes)
    return model


def _check_arch(entry: BankEntry) -> None:
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
    if entry.sha256 is not None:
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise BankError(f"{entry.label}: sha256 mismatch for {path}: the manifest says {entry.sha256}, "
                            f"the file has {actual} (changed or corrupt download?)")
    state = _read_state_dict(path, entry)
    with _create_errors(entry):
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


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, streamed; cached in-process while its (path, size, mtime) is unchanged."""
    stat = os.stat(path)
    return _file_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_digest(entry: BankEntry) -> str:
    """Identity of the entry's weights for caches and history: a local file's sha256, else the hub name."""
    if not entry.is_local:
        return entry.weights
    try:
        return file_sha256(entry.weights)
    except OSError as exc:
        raise BankError(f"{entry.label}: cannot read weights file {entry.weights}: {exc}") from exc


# ------------------------------------------------------------------------------------- input and meta
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


@contextlib.contextmanager
def _create_errors(entry: BankEntry) -> Iterator[None]:
    """What ``timm.create_model`` raises for kwargs the architecture rejects, as a BankError naming the entry."""
    try:
        yield
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise BankError(f"{entry.label}: timm.create_model({entry.arch!r}, **{entry.kwargs}) failed: "
                        f"{type(exc).__name__}: {exc}") from exc


def model_meta_of(entry: BankEntry) -> dict[str, int | None]:
    """Meta-features of an entry without loading its weights: :func:`model_meta` of its architecture
    (built on the meta device: no memory, no download) plus ``source_num_images``/``source_num_classes``
    (None when the manifest does not say)."""
    _check_arch(entry)
    with _create_errors(entry):
        meta = _arch_meta(entry.arch, entry.num_classes, json.dumps(entry.kwargs, sort_keys=True, default=repr))
    source = entry.source or Source(name="")
    return {**meta, "source_num_images": source.num_images, "source_num_classes": source.num_classes}


@functools.lru_cache(maxsize=256)
def _arch_meta(arch: str, num_classes: int, kwargs_json: str) -> dict[str, int]:
    kwargs = json.loads(kwargs_json)
    with torch.device("meta"):
        return model_meta(timm.create_model(arch, num_classes=num_classes, **kwargs))


# ------------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m automl.bank", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the offline demo bank (resumable)")
    default_out = Path(os.environ.get("AUTOML_CACHE_DIR", "outputs/cache")) / "banks" / "demo"
    build.add_argument("--out", type=Path, default=default_out, help=f"bank folder (default {default_out})")
    build.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from automl.demo_bank import build_demo_bank

    print(build_demo_bank(args.out, seed=args.seed))


if __name__ == "__main__":
    main()
