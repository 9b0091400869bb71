"""Shared fixtures: small real image folders written to tmp dirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, seed: int, size: int = 16, mode: str = "RGB") -> Path:
    """A real random image file (format from the suffix)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def write_image_folder(root: Path, counts: dict[str, int], suffix: str = ".png", start_seed: int = 0) -> Path:
    """root/<class>/<i><suffix> with ``counts[class]`` images per class."""
    seed = start_seed
    for name, count in counts.items():
        for i in range(count):
            write_image(root / name / f"{i:03d}{suffix}", seed)
            seed += 1
    return root


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
