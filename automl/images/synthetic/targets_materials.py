"""The ``materials`` target: procedural material textures (wood, marble, brick, weave, scales, cells,
cracks, fur, sand, clouds). The ``textures`` source has periodic patterns and single-scale noise; these
are built from domain-warped rings, turbulence, tilings, Voronoi diagrams, strokes and multi-octave noise.

Every material is a function of the generator returning a pattern [CANVAS, CANVAS] in [0, 1] at twice
the output resolution; it is box-downsampled to SIZE x SIZE and coloured with two random colours.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from automl.images.synthetic.draw import (
    add_noise,
    blend,
    downsample,
    fbm,
    normalize,
    random_colors,
    smooth_noise,
)
from automl.images.synthetic.registry import SIZE, SyntheticDataset, register

CANVAS = 2 * SIZE  # pixels


def _coords(rng: np.random.Generator, max_angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Canvas pixel coordinates (u along, v across), rotated by up to ``max_angle`` degrees, each [C, C]."""
    y, x = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float64)
    a = np.deg2rad(rng.uniform(-max_angle, max_angle))
    return x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)


def _wood(rng: np.random.Generator) -> np.ndarray:
    """Growth rings around a centre off the canvas, warped by noise, with sharp late-wood edges."""
    direction = rng.uniform(0, 2 * np.pi)
    centre = CANVAS / 2 + rng.uniform(0.7, 2.0) * CANVAS * np.array([np.cos(direction), np.sin(direction)])
    y, x = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float64)
    radius = np.hypot(x - centre[0], y - centre[1]) / CANVAS
    rings = (radius * rng.uniform(3, 8) + rng.uniform(0.6, 1.4) * fbm(rng, CANVAS, 16, octaves=3)) % 1.0
    return 0.85 * rings ** rng.uniform(2, 4) + 0.15 * smooth_noise(rng, CANVAS, 0.8)


def _marble(rng: np.random.Generator) -> np.ndarray:
    """Thin veins: a sine across the slab whose phase is perturbed by turbulence (sum of |noise| octaves)."""
    u, _ = _coords(rng, 90)
    turbulence = sum(np.abs(smooth_noise(rng, CANVAS, 24 / 2**i) - 0.5) / 2**i for i in range(4))
    veins = np.sin(2 * np.pi * (u / CANVAS * rng.uniform(1, 3) + rng.uniform(1, 2.5) * turbulence))
    return (1 - np.abs(veins)) ** rng.uniform(3, 6)


def _brick(rng: np.random.Generator) -> np.ndarray:
    """Running-bond bricks of random size and shade, dark mortar joints, tilted by up to 10 degrees."""
    u, v = _coords(rng, 10)
    height = rng.uniform(8, 16)
    width, mortar = height * rng.uniform(1.8, 2.6), rng.uniform(1.5, 3.0)
    row = np.floor(v / height).astype(int)
    u = u + (row % 2) * width / 2  # every other course shifted by half a brick
    col = np.floor(u / width).astype(int)
    shades = rng.uniform(0.55, 1.0, size=(row.max() - row.min() + 1, col.max() - col.min() + 1))
    joint = (u % width < mortar) | (v % height < mortar)
    grain = 0.8 + 0.2 * smooth_noise(rng, CANVAS, 1)
    return np.where(joint, 0.0, shades[row - row.min(), col - col.min()]) * grain


def _weave(rng: np.random.Generator) -> np.ndarray:
    """Basket weave: blocks of 1-3 parallel threads alternating between horizontal and vertical."""
    u, v = _coords(rng, 20)
    period, threads = rng.uniform(8, 16), rng.integers(1, 4)
    horizontal = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    across = np.where(horizontal, v, u)
    along = np.where(horizontal, u, v)
    thread = np.abs(np.sin(np.pi * threads * across / period))  # round thread cross-section
    shadow = 0.6 + 0.4 * np.sin(np.pi * (along % period) / period)  # darker where it dives under
    return thread * shadow


def _scales(rng: np.random.Generator) -> np.ndarray:
    """Overlapping rows of domed round scales, each row half a scale offset and painted over the one below."""
    u, v = _coords(rng, 30)
    radius = rng.uniform(6, 12)
    pattern = np.zeros_like(u)
    for row in range(int((v.max() - v.min()) / radius) + 3, -2, -1):
        centre_v = v.min() + row * radius
        du = (u - (row % 2) * radius) % (2 * radius) - radius
        dist = np.hypot(du, v - centre_v) / radius
        dome = np.where(dist > 0.85, 0.0, 0.4 + 0.6 * (1 - dist))  # dark rim, bright centre
        pattern = np.where(dist < 1, dome, pattern)
    return pattern


def _voronoi(rng: np.random.Generator, count: int, warp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest and second-nearest distances (pixels) to ``count`` random points on the torus, with the
    pixel grid displaced by up to ``warp`` pixels of smooth noise, and the nearest point's index: [C, C] each."""
    y, x = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float64)
    x = x + warp * (smooth_noise(rng, CANVAS, 3) - 0.5)
    y = y + warp * (smooth_noise(rng, CANVAS, 3) - 0.5)
    points = rng.uniform(0, CANVAS, size=(count, 2))
    dx = np.abs(x[..., None] - points[:, 0])
    dy = np.abs(y[..., None] - points[:, 1])
    dist = np.hypot(np.minimum(dx, CANVAS - dx), np.minimum(dy, CANVAS - dy))  # wrap around: tileable
    nearest = np.sort(dist, axis=-1)
    return nearest[..., 0], nearest[..., 1], dist.argmin(axis=-1)


def _cells(rng: np.random.Generator) -> np.ndarray:
    """Cobbles: Voronoi cells of random shade, domed towards their seed, with dark borders."""
    first, second, index = _voronoi(rng, int(rng.integers(8, 26)), warp=0)
    shade = rng.uniform(0.4, 1.0, size=index.max() + 1)[index]
    return np.where(second - first < rng.uniform(1.5, 3), 0.0, shade * (1 - 0.4 * first / first.max()))


def _cracks(rng: np.random.Generator) -> np.ndarray:
    """Dried mud: thin jagged cracks (Voronoi borders of a noise-warped grid) on a faintly mottled ground."""
    first, second, _ = _voronoi(rng, int(rng.integers(6, 15)), warp=6)
    ground = 0.25 * fbm(rng, CANVAS, 8, octaves=3)
    return np.where(second - first < rng.uniform(0.8, 1.8), 1.0, ground)


def _fur(rng: np.random.Generator) -> np.ndarray:
    """Fur or grass: 150-300 short strokes of random brightness along a common direction, +-0.35 rad."""
    mask = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(mask)
    count = int(rng.integers(150, 300))
    angle = rng.uniform(0, np.pi) + rng.uniform(-0.35, 0.35, size=count)
    length = rng.uniform(6, 16, size=count)
    start = rng.uniform(-8, CANVAS + 8, size=(count, 2))
    end = start + length[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    for a, b, level, width in zip(start, end, rng.integers(70, 256, size=count), rng.integers(1, 3, size=count),
                                  strict=True):  # fmt: skip
        draw.line([tuple(a), tuple(b)], fill=int(level), width=int(width))
    return np.asarray(mask, dtype=np.float64) / 255.0


def _sand(rng: np.random.Generator) -> np.ndarray:
    """Fine grains (lightly blurred white noise) over gentle two-octave shading."""
    grains = normalize(ndimage.gaussian_filter(rng.random((CANVAS, CANVAS)), rng.uniform(0.5, 0.8)))
    return 0.6 * grains + 0.4 * fbm(rng, CANVAS, 10, octaves=2)


def _clouds(rng: np.random.Generator) -> np.ndarray:
    """Six-octave fBm, thresholded softly into wisps of cloud against clear sky."""
    field = fbm(rng, CANVAS, 10, octaves=6, gain=0.65)
    threshold = rng.uniform(0.3, 0.5)
    return np.clip((field - threshold) / rng.uniform(0.3, 0.5), 0, 1)


_MATERIALS = {"wood": _wood, "marble": _marble, "brick": _brick, "weave": _weave, "scales": _scales,
              "cells": _cells, "cracks": _cracks, "fur": _fur, "sand": _sand, "clouds": _clouds}  # fmt: skip


@register("target")
def _make_materials(rng: np.random.Generator) -> SyntheticDataset:
    """Procedural material textures: 10 classes x 80, 32x32 RGB, two random colours >= 100 apart in
    luminance (so colour is no cue), noise of 6 grey levels."""
    images, labels = [], []
    for label, make in enumerate(_MATERIALS.values()):
        for _ in range(80):
            pattern = downsample(make(rng))
            fg, bg = random_colors(rng)
            images.append(add_noise(blend(pattern, fg, bg), rng, sigma=6.0))
            labels.append(label)
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), tuple(_MATERIALS))
