"""Drawing helpers shared by the generators: colours, noise, blending, resampling, fonts and glyphs.

Conventions: a *mask* or *pattern* is a float array [H, W] in [0, 1]; a *colour* is a uint8 RGB triple;
pixel arrays are [H, W, 3]. Generators render at ``2 * SIZE`` and downsample, for smoother edges.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from automl.images.synthetic.registry import SIZE, SyntheticDataset

LUMINANCE = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights: RGB -> perceived brightness


# ---------------------------------------------------------------------------------------- colours & noise
def random_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A foreground and a background RGB colour (uint8) at least 100 apart in luminance."""
    while True:
        fg, bg = rng.integers(0, 256, size=(2, 3))
        if abs(float(fg @ LUMINANCE - bg @ LUMINANCE)) >= 100:
            return fg.astype(np.uint8), bg.astype(np.uint8)


def add_noise(pixels: np.ndarray, rng: np.random.Generator, sigma: float) -> Image.Image:
    """RGB uint8 pixels [H, W, 3] plus Gaussian noise of ``sigma`` grey levels, clipped, as a PIL image."""
    noisy = pixels.astype(np.float32) + rng.normal(0.0, sigma, size=pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def blend(mask: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """mask [H, W] in [0, 1] → RGB uint8 image [H, W, 3] mixing ``fg`` over ``bg``."""
    return (mask[..., None] * fg + (1.0 - mask[..., None]) * bg).astype(np.uint8)


def normalize(pattern: np.ndarray) -> np.ndarray:
    """Rescale an array to [0, 1] (min → 0, max → 1); a constant array becomes zeros."""
    pattern = pattern.astype(np.float64)
    low, high = pattern.min(), pattern.max()
    return (pattern - low) / (high - low) if high > low else np.zeros_like(pattern)


def smooth_noise(rng: np.random.Generator, side: int, sigma: float) -> np.ndarray:
    """Tileable Gaussian-filtered white noise [side, side] in [0, 1]; ``sigma`` (pixels) sets the grain."""
    return normalize(ndimage.gaussian_filter(rng.standard_normal((side, side)), sigma, mode="wrap"))


def fbm(rng: np.random.Generator, side: int, sigma: float, octaves: int = 5, gain: float = 0.5) -> np.ndarray:
    """Fractal Brownian motion [side, side] in [0, 1]: octaves of smooth noise, each half the grain of the
    last and ``gain`` times its amplitude, starting at grain ``sigma`` pixels."""
    total = sum(gain**i * (smooth_noise(rng, side, sigma / 2**i) - 0.5) for i in range(octaves))
    return normalize(total)


def downsample(pixels: np.ndarray, factor: int = 2) -> np.ndarray:
    """Box-filter [H, W, ...] by an integer ``factor`` (H, W divisible by it) → [H/f, W/f, ...]."""
    height, width = pixels.shape[:2]
    blocks = pixels.reshape(height // factor, factor, width // factor, factor, *pixels.shape[2:])
    return blocks.mean(axis=(1, 3))


# ------------------------------------------------------------------------------------ packaged data
def mpl_data(*parts: str) -> Path:
    """A file or folder inside matplotlib's mpl-data (fonts, sample data), e.g. ``("sample_data", name)``."""
    import matplotlib

    path = Path(matplotlib.get_data_path()).joinpath(*parts)
    if not path.exists():
        raise RuntimeError(f"{path} is missing; is matplotlib installed completely?")
    return path


def font_file(name: str) -> Path:
    """A TrueType font bundled with matplotlib, by file name, e.g. ``"cmr10.ttf"``."""
    return mpl_data("fonts", "ttf", name)


@functools.cache
def dejavu_fonts() -> tuple[Path, ...]:
    """The 12 DejaVu faces (Sans, Serif, Mono; regular, bold, oblique, bold oblique) bundled with matplotlib."""
    folder = mpl_data("fonts", "ttf")
    fonts = tuple(sorted(p for p in folder.glob("DejaVu*.ttf") if "Display" not in p.name))
    if not fonts:
        raise RuntimeError(f"no DejaVu fonts found in {folder}; is matplotlib installed completely?")
    return fonts


@functools.cache
def stix_fonts() -> tuple[Path, ...]:
    """The 4 STIX General text faces (regular, bold, italic, bold italic) bundled with matplotlib."""
    return tuple(font_file(f"STIXGeneral{style}.ttf") for style in ("", "Bol", "Italic", "BolIta"))


@functools.cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def char_name(char: str) -> str:
    """A folder-safe class name for a character: its Unicode name, e.g. ``"€"`` → ``"euro_sign"``."""
    return unicodedata.name(char).lower().replace(" ", "_").replace("-", "_")


# ---------------------------------------------------------------------------------------------- glyphs
def render_glyph(
    char: str,
    rng: np.random.Generator,
    fonts: Sequence[Path] | None = None,
    *,
    scale: float = 1.0,
    rotation: float = 20.0,
) -> Image.Image:
    """One character as a SIZE x SIZE RGB image: a random face of ``fonts`` (default: DejaVu) at 30-45 px
    (times ``scale``) on a 64 px canvas, shifted by up to 6 px, rotated by up to ``rotation`` degrees,
    downsampled, in random contrasting colours, with noise of 8 grey levels."""
    fonts = dejavu_fonts() if fonts is None else fonts
    canvas = 2 * SIZE  # render large, then downsample: smoother edges than rendering at 32 px
    font = _font(fonts[rng.integers(len(fonts))], round(int(rng.integers(30, 46)) * scale))
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    offset = rng.uniform(-6, 6, size=2)
    origin = (
        (canvas - (right - left)) / 2 - left + offset[0],
        (canvas - (bottom - top)) / 2 - top + offset[1],
    )
    draw.text(origin, char, fill=255, font=font)
    mask = mask.rotate(float(rng.uniform(-rotation, rotation)), resample=Image.BILINEAR)
    mask = mask.resize((SIZE, SIZE), Image.BILINEAR)
    fg, bg = random_colors(rng)
    return add_noise(blend(np.asarray(mask, dtype=np.float32) / 255.0, fg, bg), rng, sigma=8.0)


def glyph_dataset(
    alphabet: Sequence[str],
    per_class: int,
    rng: np.random.Generator,
    fonts: Sequence[Path] | None = None,
    classes: Sequence[str] | None = None,
) -> SyntheticDataset:
    """``per_class`` :func:`render_glyph` images of each character; class names default to the characters."""
    images, labels = [], []
    for label, char in enumerate(alphabet):
        for _ in range(per_class):
            images.append(render_glyph(char, rng, fonts))
            labels.append(label)
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), tuple(classes or alphabet))
