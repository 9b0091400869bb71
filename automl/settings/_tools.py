"""Settings of the small command-line tools: predict, history, export and the demo bank builder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from automl.settings._checks import SettingsError, check_fields, rule
from automl.settings._ranking import MAX_PIXELS


def _cache_dir() -> str:
    return os.environ.get("AUTOML_CACHE_DIR", "outputs/cache")


@dataclass
class PredictSettings:
    """``python -m automl.predict``: classify images with an exported model."""

    model: str = "???"  # an exported model folder (<run>/best)
    images: str = "???"  # an image, a folder (a labelled ImageFolder gives an accuracy), a .csv (path[,label]) or .txt list
    out: str | None = None  # the predictions CSV; null: predictions-<images>.csv next to the model folder
    top_k: int = field(default=3, metadata=rule(integer=True, ge=1))  # classes per image in the CSV
    batch_size: int = field(default=64, metadata=rule(integer=True, ge=1))
    device: str = "auto"
    max_image_pixels: int = field(default=MAX_PIXELS, metadata=rule(integer=True, ge=1))  # larger: skipped

    def __post_init__(self) -> None:
        check_fields(self, "")


@dataclass
class HistorySettings:
    """``python -m automl.history``: the measured transfers in the ``storage`` database."""

    action: str = field(default="list", metadata=rule(choices=("list", "export", "import")))
    file: str | None = None  # the CSV to export to or import from
    storage: str = field(default_factory=lambda: os.environ.get("AUTOML_STORAGE", "sqlite:///outputs/automl.db"))

    def __post_init__(self) -> None:
        check_fields(self, "")
        if self.action != "list" and not self.file:
            raise SettingsError(f"action={self.action} needs file=<path of the CSV>")


@dataclass
class ExportSettings:
    """``python -m automl.export``: a deployable copy of an exported model."""

    model: str = "???"  # an exported model folder (<run>/best)
    format: str = field(default="onnx", metadata=rule(choices=("onnx",)))
    opset: int = field(default=18, metadata=rule(integer=True, ge=13))  # ONNX opset version

    def __post_init__(self) -> None:
        check_fields(self, "")


@dataclass
class DemoBankSettings:
    """``python -m automl.bank.demo``: build the offline demo bank."""

    out: str = field(default_factory=lambda: os.path.join(_cache_dir(), "banks", "demo"))
    seed: int = 0
