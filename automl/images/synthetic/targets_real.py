"""Targets cut from real rasters that ship with matplotlib, labelled by the region a patch comes from:
``scenes`` (the Grace Hopper photo) and ``terrain`` (two elevation models). The sources' photos are
scikit-learn's china.jpg and flower.jpg, never used here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from PIL import Image

from automl.images.synthetic.draw import add_noise, mpl_data
from automl.images.synthetic.registry import SIZE, SyntheticDataset, register

# 3x3 grid cells of grace_hopper.jpg (512 wide, 600 high), row by row, named by what they mostly show.
_SCENES = ("flag_stars", "cap", "backdrop", "flag_stripes", "face", "backdrop_shoulder",
           "name_tag_sleeve", "collar_tie", "ribbons")  # fmt: skip


class _Dem(NamedTuple):
    file: str  # in matplotlib's sample_data
    key: str  # of the elevation array [H, W] in metres
    rows: tuple[str, ...]  # class-name prefixes of the grid rows, north to south; always 3 columns
    sides: tuple[int, int]  # patch side in pixels, [low, high)
    spacing: tuple[float, float]  # pixel size in metres, east-west and north-south
    south_up: bool  # whether the array's row 0 is its southern edge


_DEMS = {
    # A 3 arc-second grid at 36.6 N (Tennessee).
    "jacksboro": _Dem(
        "jacksboro_fault_dem.npz", "elevation", ("north_", "middle_", "south_"), (32, 97), (74.0, 93.0), False
    ),
    # 1/30 x 1/45 degree at 49 N: the Salish Sea (Vancouver Island, the strait, the mainland).
    "topobathy": _Dem("topobathy.npz", "topo", ("",), (20, 41), (2430.0, 2470.0), True),
}
_COLS = ("west", "centre", "east")
_CMAPS = ("gist_earth", "terrain", "cividis", "copper")


def _region_patches(
    raster: np.ndarray, rows: int, cols: int, per_cell: int, sides: tuple[int, int], rng: np.random.Generator
) -> Iterator[tuple[int, np.ndarray]]:
    """(cell index, patch) pairs: ``per_cell`` square patches of random side in ``sides`` (pixels) at
    random positions entirely inside each cell of a rows x cols grid over ``raster`` [H, W, ...]."""
    height, width = raster.shape[:2]
    cell_h, cell_w = height // rows, width // cols
    for cell in range(rows * cols):
        top, left = cell // cols * cell_h, cell % cols * cell_w
        for _ in range(per_cell):
            side = int(rng.integers(*sides))
            y0 = top + int(rng.integers(0, cell_h - side + 1))
            x0 = left + int(rng.integers(0, cell_w - side + 1))
            yield cell, raster[y0 : y0 + side, x0 : x0 + side]


@register("target")
def _make_scenes(rng: np.random.Generator) -> SyntheticDataset:
    """Patches of matplotlib's Grace Hopper photo labelled by 3x3 grid cell: 9 classes x 90, 32x32 RGB.
    Sides 32-127 px, anywhere inside the cell; brightness x0.85-1.15 and each channel x0.94-1.06."""
    photo = np.asarray(Image.open(mpl_data("sample_data", "grace_hopper.jpg")).convert("RGB"))
    images, labels = [], []
    for cell, patch in _region_patches(photo, 3, 3, 90, (32, 128), rng):
        pixels = np.asarray(Image.fromarray(patch).resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32)
        gain = rng.uniform(0.85, 1.15) * rng.uniform(0.94, 1.06, size=3)
        images.append(Image.fromarray(np.clip(pixels * gain, 0, 255).astype(np.uint8)))
        labels.append(cell)
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), _SCENES)


def _relief(elevation: np.ndarray, spacing: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Elevation patch [h, w] (metres) → RGB uint8 [h, w, 3]: half grey hillshade, half a random colour
    map stretched over the patch's own range (a flat patch gets a 1 m range) and shaded; sun from azimuth
    270-360, altitude 30-60 degrees; vertical exaggeration 0.7-1.5."""
    import matplotlib
    from matplotlib.colors import LightSource

    light = LightSource(azdeg=rng.uniform(270, 360), altdeg=rng.uniform(30, 60))
    shading = {"vert_exag": rng.uniform(0.7, 1.5), "dx": spacing[0], "dy": spacing[1]}
    if rng.random() < 0.5:
        rgb = np.repeat(light.hillshade(elevation, **shading)[..., None], 3, axis=2)
    else:
        cmap = matplotlib.colormaps[_CMAPS[rng.integers(len(_CMAPS))]]
        mode = ("overlay", "soft")[rng.integers(2)]
        low, high = float(elevation.min()), float(elevation.max())
        rgb = light.shade(elevation, cmap, blend_mode=mode, vmin=low, vmax=max(high, low + 1.0), **shading)
        rgb = rgb[..., :3]  # drop alpha
    return (rgb * 255).round().astype(np.uint8)


@register("target")
def _make_terrain(rng: np.random.Generator) -> SyntheticDataset:
    """Hillshaded patches of matplotlib's two real elevation models labelled by grid cell: the Jacksboro
    fault DEM (344x403 px, 3x3 cells, sides 32-96 px) and the Salish Sea topo-bathymetry (91x120 px, 1x3
    cells, sides 20-40 px): 12 classes x 75, 32x32 RGB, noise of 3 grey levels."""
    images, labels, classes = [], [], []
    for name, dem in _DEMS.items():
        elevation = np.load(mpl_data("sample_data", dem.file))[dem.key].astype(np.float64)
        elevation = np.flipud(elevation) if dem.south_up else elevation  # north up, as the hillshade expects
        first = len(classes)
        classes += [f"{name}_{row}{col}" for row in dem.rows for col in _COLS]
        for cell, patch in _region_patches(elevation, len(dem.rows), len(_COLS), 75, dem.sides, rng):
            relief = Image.fromarray(_relief(patch, dem.spacing, rng)).resize((SIZE, SIZE), Image.BILINEAR)
            images.append(add_noise(np.asarray(relief), rng, sigma=3.0))
            labels.append(first + cell)
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), tuple(classes))
