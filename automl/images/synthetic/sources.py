"""Pretraining sources: procedural textures, sample-photo patches, Greek letters, printed digits and symbols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from automl.images.synthetic.draw import (
    add_noise,
    blend,
    char_name,
    dejavu_fonts,
    glyph_dataset,
    normalize,
    random_colors,
    stix_fonts,
)
from automl.images.synthetic.registry import SIZE, SyntheticDataset, register

_TEXTURES = (
    "stripes_horizontal", "stripes_vertical", "stripes_diagonal", "stripes_antidiagonal", "checker",
    "dots", "rings", "spokes", "white_noise", "blobs", "gradient", "zigzag",
)  # fmt: skip


def _texture(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A [SIZE, SIZE] pattern in [0, 1] of the given kind with random frequency, phase and jitter."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    freq = rng.uniform(0.25, 0.8)
    phase = rng.uniform(0, 2 * np.pi)
    jitter = rng.uniform(-0.15, 0.15)
    angles = {"stripes_horizontal": np.pi / 2, "stripes_vertical": 0.0,
              "stripes_diagonal": np.pi / 4, "stripes_antidiagonal": -np.pi / 4}  # fmt: skip
    cx, cy = rng.uniform(8, 24, size=2)
    if kind in angles:
        a = angles[kind] + jitter
        pattern = np.sin(freq * (x * np.cos(a) + y * np.sin(a)) + phase)
    elif kind == "checker":
        a = jitter
        u, v = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)
        pattern = np.sign(np.sin(freq * u + phase) * np.sin(freq * v + phase))
    elif kind == "dots":
        pattern = (np.sin(freq * x + phase) + np.sin(freq * y + phase)) > 1.0
    elif kind == "rings":
        pattern = np.sin(freq * np.hypot(x - cx, y - cy) + phase)
    elif kind == "spokes":
        pattern = np.sin(rng.integers(3, 9) * np.arctan2(y - cy, x - cx) + phase)
    elif kind == "white_noise":
        pattern = rng.random((SIZE, SIZE))
    elif kind == "blobs":
        pattern = ndimage.gaussian_filter(rng.random((SIZE, SIZE)), sigma=rng.uniform(2.0, 4.0), mode="wrap")
    elif kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        pattern = x * np.cos(a) + y * np.sin(a)
    else:  # zigzag
        pattern = np.sin(freq * (y + rng.uniform(2, 5) * np.abs(((x * freq) % 2) - 1)) + phase)
    return normalize(pattern)


@register("source")
def _make_textures(rng: np.random.Generator) -> SyntheticDataset:
    """Procedural textures (stripes, checkers, rings, noise ...): 12 classes x 200, 32x32 RGB."""
    images, labels = [], []
    for label, kind in enumerate(_TEXTURES):
        for _ in range(200):
            fg, bg = random_colors(rng)
            images.append(add_noise(blend(_texture(kind, rng), fg, bg), rng, sigma=6.0))
            labels.append(label)
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), _TEXTURES)


@register("source")
def _make_photos(rng: np.random.Generator) -> SyntheticDataset:
    """Patches of scikit-learn's two sample photos (china, flower), labelled by their 2x3 grid cell:
    12 classes x 200, 32x32 RGB, random side 32 px to half a cell, random horizontal flip."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    images, labels, classes = [], [], []
    rows, cols = 2, 3
    for photo_name, photo in zip(photos.filenames, photos.images, strict=True):
        height, width = photo.shape[:2]
        for r in range(rows):
            for c in range(cols):
                label = len(classes)
                classes.append(f"{Path(photo_name).stem}_r{r}c{c}")
                top, left = r * height // rows, c * width // cols
                cell_h, cell_w = height // rows, width // cols
                for _ in range(200):
                    side = int(rng.integers(32, min(cell_h, cell_w) // 2))
                    y0 = top + int(rng.integers(0, cell_h - side))
                    x0 = left + int(rng.integers(0, cell_w - side))
                    crop = photo[y0 : y0 + side, x0 : x0 + side]
                    patch = Image.fromarray(crop).resize((SIZE, SIZE), Image.BILINEAR)
                    if rng.random() < 0.5:
                        patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
                    images.append(patch)
                    labels.append(label)
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), tuple(classes))


@register("source")
def _make_symbols(rng: np.random.Generator) -> SyntheticDataset:
    """Greek lower-case letters rendered from DejaVu fonts: 24 classes x 100, 32x32 RGB."""
    return glyph_dataset("αβγδεζηθικλμνξοπρστυφχψω", 100, rng)


PRINTED = "0123456789+−×÷=%#@"  # digits and arithmetic symbols; kept out of the `characters` target


@register("source")
def _make_printed(rng: np.random.Generator) -> SyntheticDataset:
    """Printed digits and arithmetic symbols in the 12 DejaVu and 4 STIX faces, jittered like the glyph
    renderer: 18 classes x 110, 32x32 RGB, classes named by Unicode (``digit_zero`` ... ``commercial_at``)."""
    return glyph_dataset(PRINTED, 110, rng, dejavu_fonts() + stix_fonts(), [char_name(c) for c in PRINTED])
