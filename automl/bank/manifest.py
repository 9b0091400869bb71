"""Bank manifests: the entries of a bank (inline in the ``bank`` settings or a folder's ``bank.yaml``)
parsed and validated into :class:`BankEntry` objects.

Every problem (bad field, unknown key, duplicate name, unreadable manifest) is a :class:`BankError`
naming the bank file and the entry. Format: README, "Using your own bank".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from automl.errors import AutomlError

MANIFEST = "bank.yaml"

_ENTRY_KEYS = {"name", "arch", "weights", "sha256", "num_classes", "source", "kwargs", "data_config"}
_SOURCE_KEYS = {"name", "num_images", "num_classes"}
_DATA_CONFIG_KEYS = {"input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode"}
_INTERPOLATIONS = {"nearest", "bilinear", "bicubic", "box", "hamming", "lanczos"}
_CROP_MODES = {"center", "squash", "border"}
# create_model kwargs the entry's own fields control; setting them in kwargs would contradict the entry.
_RESERVED_KWARGS = {"num_classes", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # names become file names and CSV cells
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class BankError(AutomlError):
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


def read_bank(name: str | None, models: list | None, folder: Path | None) -> Bank:
    """The bank of inline ``models`` (weight paths relative to the working directory) or of the
    ``bank.yaml`` manifest in ``folder`` (paths relative to it; its own name wins over ``name``)."""
    if models is not None:
        if not name:
            raise BankError("bank: missing required field `name` (an inline bank needs one)")
        return _parse_bank(name, models, origin=f"bank config {name!r}", root=Path.cwd())
    manifest = folder / MANIFEST
    try:
        data = yaml.safe_load(manifest.read_text())
    except FileNotFoundError as exc:
        raise BankError(f"{manifest}: bank manifest not found (bank.dir={folder})") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise BankError(f"{manifest}: cannot read the bank manifest: {exc}") from exc
    if not isinstance(data, Mapping):
        raise BankError(f"{manifest}: expected a mapping with `name` and `models`, got {type(data).__name__}")
    _check_keys(data, {"name", "models"}, str(manifest))
    name = _string({"name": data.get("name") or name}, "name", str(manifest))
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


def _string(raw: Mapping, key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BankError(f"{where}: `{key}` must be a non-empty string, got {value!r}")
    return value.strip()


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BankError(f"{where} must be an integer >= 0, got {value!r}")
    return value
