"""What automl shares with the torch-free ONNX predictor, which inlines this module (numpy and Pillow only:
the predictor runs where automl is not installed): which files are images, the images of a folder and
their classes, and any PIL image mode to 8-bit RGB."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB: 16/32-bit grey scaled to 8 bits, transparency composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        if image.mode == "F":
            high = max(float(values.max()), 1e-12)
        image = Image.fromarray(np.clip(values / high * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("LA", "RGBA", "La", "RGBa"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def is_image_file(path: str | Path) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def folder_images(folder: Path, classes: Sequence[str]) -> tuple[list[Path], np.ndarray | None]:
    """The image files under ``folder`` (recursively, sorted, hidden ones left out) and their class indices
    when ``folder`` is a labelled ImageFolder (``<folder>/<class>/...``, every class folder one of
    ``classes``), else None."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    tops = {p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else None for p in paths}
    index = {name: i for i, name in enumerate(classes)}
    if not paths or None in tops or not tops <= set(index):
        return paths, None
    return paths, np.array([index[p.relative_to(folder).parts[0]] for p in paths], dtype=np.int64)
