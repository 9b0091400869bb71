"""Pretraining sources of psychophysics-like stimuli: ``gratings`` (orientation and spatial frequency)
and ``counting`` (numerosity)."""

from __future__ import annotations

import numpy as np

from automl.images.synthetic.draw import LUMINANCE, add_noise, blend, downsample, random_colors, smooth_noise
from automl.images.synthetic.registry import SIZE, SyntheticDataset, register

_ORIENTATIONS = (0, 30, 60, 90, 120, 150)  # bar angle, degrees counter-clockwise from horizontal
_BANDS = {"low": (1.5, 3.0), "mid": (4.0, 6.5), "high": (8.5, 12.0)}  # cycles per image (Nyquist: 16)


@register("source")
def _make_gratings(rng: np.random.Generator) -> SyntheticDataset:
    """Sinusoidal gratings labelled by bar orientation (6 bins of 30 deg, +-7.5 deg inside a bin) x
    frequency band (3, in cycles per image): 18 classes x 110, 32x32 RGB. Half are Gabor patches (Gaussian
    envelope of sigma 0.6-1.2 wavelengths, clipped to 5-14 px, off-centre by up to 6 px); random phase,
    contrast 0.3-1, colours and noise (2-20 grey levels)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) - (SIZE - 1) / 2
    images, labels, classes = [], [], []
    for degrees in _ORIENTATIONS:
        for band, (low, high) in _BANDS.items():
            for _ in range(110):
                theta = np.deg2rad(degrees + rng.uniform(-7.5, 7.5))
                wavelength = SIZE / rng.uniform(low, high)  # pixels
                # The wave runs along the bars' normal; y points down, so this normal turns bars anticlockwise.
                across = x * np.sin(theta) + y * np.cos(theta)
                carrier = np.cos(2 * np.pi * across / wavelength + rng.uniform(0, 2 * np.pi))
                envelope = 1.0
                if rng.random() < 0.5:
                    cx, cy = rng.uniform(-6, 6, size=2)
                    sigma = np.clip(rng.uniform(0.6, 1.2) * wavelength, 5, 14)  # at least ~1 visible cycle
                    envelope = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
                mask = 0.5 + 0.5 * rng.uniform(0.3, 1.0) * carrier * envelope
                fg, bg = random_colors(rng)
                images.append(add_noise(blend(mask, fg, bg), rng, sigma=rng.uniform(2, 20)))
                labels.append(len(classes))
            classes.append(f"deg{degrees:03d}_{band}")
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), tuple(classes))


def _contrasting(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random RGB colour (uint8) at least 80 apart in luminance from ``background``."""
    while True:
        colour = rng.integers(0, 256, size=3)
        if abs(float((colour - background) @ LUMINANCE)) >= 80:
            return colour.astype(np.uint8)


def _blob_layout(rng: np.random.Generator, count: int, canvas: int) -> np.ndarray:
    """``count`` non-touching circles inside the canvas: [count, 3] rows of (x, y, radius) in pixels,
    radii 3 to 9 - count / 2 (more blobs, smaller blobs), at least 3 px apart."""
    while True:  # restart the rare layouts that leave no room for the next blob
        placed: list[np.ndarray] = []
        for radius in rng.uniform(3, 9 - count / 2, size=count):
            for _ in range(200):
                centre = rng.uniform(radius + 1, canvas - radius - 1, size=2)
                if all(np.hypot(*(centre - other[:2])) > radius + other[2] + 3 for other in placed):
                    placed.append(np.array([*centre, radius]))
                    break
            else:
                break
        if len(placed) == count:
            return np.stack(placed)


@register("source")
def _make_counting(rng: np.random.Generator) -> SyntheticDataset:
    """1 to 8 separate elliptical blobs of random size, aspect and colour on a mottled, noisy background,
    labelled by count: 8 classes x 250, 32x32 RGB (drawn at 64 px, downsampled; noise of 10 grey levels)."""
    canvas = 2 * SIZE
    y, x = np.mgrid[0:canvas, 0:canvas].astype(np.float64) + 0.5
    images, labels = [], []
    for label, count in enumerate(range(1, 9)):
        for _ in range(250):
            bg, other = random_colors(rng)
            pixels = blend(0.35 * smooth_noise(rng, canvas, rng.uniform(3, 10)), other, bg).astype(np.float64)
            for cx, cy, radius in _blob_layout(rng, count, canvas):
                angle, aspect = rng.uniform(0, np.pi), rng.uniform(0.6, 1.0)
                u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
                v = ((y - cy) * np.cos(angle) - (x - cx) * np.sin(angle)) / aspect
                inside = np.clip(radius - np.hypot(u, v) + 0.5, 0, 1)[..., None]  # 1 px anti-aliased edge
                pixels = inside * _contrasting(rng, bg) + (1 - inside) * pixels
            images.append(add_noise(downsample(pixels), rng, sigma=10.0))
            labels.append(label)
    classes = tuple(f"count_{n}" for n in range(1, 9))
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), classes)
