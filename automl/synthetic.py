"""Offline image datasets: generated, or built from data that ships inside installed packages.

Two families, kept apart so the demo bank is never evaluated on what it was trained on:

* **targets** — the builtin tasks a user (and the tests) fine-tune on: ``digits`` (scikit-learn's
  handwritten digits, 8x8 grey), ``glyphs`` (Latin capitals rendered from matplotlib's DejaVu fonts),
  ``shapes`` (coloured geometric shapes on noisy backgrounds);
* **sources** — what the offline demo bank is pretrained on: ``textures`` (procedural patterns),
  ``photos`` (patches of scikit-learn's two sample photographs, labelled by region), ``symbols``
  (Greek lower-case letters from the same fonts).

Every generator is a pure function of its seed: ``generate(name, seed)`` returns the same pixels on
every machine with the same Pillow/FreeType.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

SIZE = 32  # side of every generated image, in pixels (digits keep their native 8x8)


@dataclass(frozen=True)
class SyntheticDataset:
    """A generated labelled dataset: ``images[i]`` (RGB or L PIL image) has class ``classes[labels[i]]``."""

    images: list[Image.Image]
    labels: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class _Generator:
    kind: str  # "target" or "source"
    make: Callable[[np.random.Generator], SyntheticDataset]
    description: str


_REGISTRY: dict[str, _Generator] = {}


def _register(kind: str, description: str):
    def wrap(make):
        _REGISTRY[make.__name__.removeprefix("_make_")] = _Generator(kind, make, description)
        return make

    return wrap


def available(kind: str | None = None) -> list[str]:
    """Names of the generators, optionally only ``kind="target"`` or ``kind="source"``."""
    return sorted(name for name, gen in _REGISTRY.items() if kind in (None, gen.kind))


def describe(name: str) -> str:
    return _get(name).description


def generate(name: str, seed: int = 0) -> SyntheticDataset:
    """Generate dataset ``name`` deterministically from ``seed``."""
    return _get(name).make(np.random.default_rng(seed))


def _get(name: str) -> _Generator:
    if name not in _REGISTRY:
        raise ValueError(f"unknown builtin dataset {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


# --------------------------------------------------------------------------------------------- helpers
def _random_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A foreground and a background RGB colour (uint8) at least 100 apart in luminance."""
    while True:
        fg, bg = rng.integers(0, 256, size=(2, 3))
        luminance = np.array([0.299, 0.587, 0.114])
        if abs(float(fg @ luminance - bg @ luminance)) >= 100:
            return fg.astype(np.uint8), bg.astype(np.uint8)


def _add_noise(pixels: np.ndarray, rng: np.random.Generator, sigma: float) -> Image.Image:
    noisy = pixels.astype(np.float32) + rng.normal(0.0, sigma, size=pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _blend(mask: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """mask [H, W] in [0, 1] → RGB uint8 image [H, W, 3] mixing ``fg`` over ``bg``."""
    return (mask[..., None] * fg + (1.0 - mask[..., None]) * bg).astype(np.uint8)


@functools.cache
def _font_files() -> tuple[Path, ...]:
    """The DejaVu TrueType fonts bundled with matplotlib (present wherever matplotlib is installed)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts = tuple(sorted(p for p in folder.glob("DejaVu*.ttf") if "Display" not in p.name))
    if not fonts:
        raise RuntimeError(f"no DejaVu fonts found in {folder}; is matplotlib installed completely?")
    return fonts


@functools.cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def _render_glyph(char: str, rng: np.random.Generator) -> Image.Image:
    """One character in a random DejaVu face, rotated, shifted and scaled, with colour and noise."""
    fonts = _font_files()
    canvas = 2 * SIZE  # render large, then downsample: smoother edges than rendering at 32 px
    font = _font(fonts[rng.integers(len(fonts))], int(rng.integers(30, 46)))
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    offset = rng.uniform(-6, 6, size=2)
    origin = ((canvas - (right - left)) / 2 - left + offset[0], (canvas - (bottom - top)) / 2 - top + offset[1])
    draw.text(origin, char, fill=255, font=font)
    mask = mask.rotate(float(rng.uniform(-20, 20)), resample=Image.BILINEAR)
    mask = mask.resize((SIZE, SIZE), Image.BILINEAR)
    fg, bg = _random_colors(rng)
    return _add_noise(_blend(np.asarray(mask, dtype=np.float32) / 255.0, fg, bg), rng, sigma=8.0)


def _glyph_dataset(alphabet: str, per_class: int, rng: np.random.Generator) -> SyntheticDataset:
    images, labels = [], []
    for label, char in enumerate(alphabet):
        for _ in range(per_class):
            images.append(_render_glyph(char, rng))
            labels.append(label)
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), tuple(alphabet))


# --------------------------------------------------------------------------------------------- targets
@_register("target", "scikit-learn's handwritten digits: 1797 grey 8x8 images, 10 classes")
def _make_digits(rng: np.random.Generator) -> SyntheticDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 ink levels → white background, dark ink, like scanned digits.
    pixels = (255 - digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    images = [Image.fromarray(p, mode="L") for p in pixels]
    return SyntheticDataset(images, digits.target.astype(np.int64), tuple(str(d) for d in range(10)))


@_register("target", "Latin capitals A-Z rendered from DejaVu fonts: 26 classes x 40, 32x32 RGB")
def _make_glyphs(rng: np.random.Generator) -> SyntheticDataset:
    return _glyph_dataset("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 40, rng)


_SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon")


def _shape_polygon(shape: str, center: np.ndarray, radius: float, angle: float) -> list[tuple[float, float]]:
    vertices = {"square": 4, "triangle": 3, "diamond": 4, "hexagon": 6}
    if shape in vertices:
        turn = angle + (np.pi / 4 if shape == "diamond" else 0.0)
        theta = turn + 2 * np.pi * np.arange(vertices[shape]) / vertices[shape]
        radii = np.full_like(theta, radius)
    elif shape == "star":
        theta = angle + np.pi * np.arange(10) / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    else:  # cross: 12-vertex plus sign
        arm = radius * 0.35
        base = np.array(
            [(-arm, -radius), (arm, -radius), (arm, -arm), (radius, -arm), (radius, arm), (arm, arm),
             (arm, radius), (-arm, radius), (-arm, arm), (-radius, arm), (-radius, -arm), (-arm, -arm)]
        )
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return [tuple(p) for p in base @ rotation.T + center]
    return [tuple(p) for p in np.stack([np.cos(theta), np.sin(theta)], 1) * radii[:, None] + center]


@_register("target", "coloured geometric shapes on noisy backgrounds: 8 classes x 100, 32x32 RGB")
def _make_shapes(rng: np.random.Generator) -> SyntheticDataset:
    canvas = 2 * SIZE
    images, labels = [], []
    for label, shape in enumerate(_SHAPES):
        for _ in range(100):
            radius = float(rng.uniform(0.2, 0.42) * canvas)
            center = rng.uniform(radius, canvas - radius, size=2)
            angle = float(rng.uniform(0, 2 * np.pi))
            mask = Image.new("L", (canvas, canvas), 0)
            draw = ImageDraw.Draw(mask)
            box = [*(center - radius), *(center + radius)]
            if shape == "circle":
                draw.ellipse(box, fill=255)
            elif shape == "ring":
                draw.ellipse(box, outline=255, width=max(3, int(radius * 0.3)))
            else:
                draw.polygon(_shape_polygon(shape, center, radius, angle), fill=255)
            mask = np.asarray(mask.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32) / 255.0
            fg, bg = _random_colors(rng)
            images.append(_add_noise(_blend(mask, fg, bg), rng, sigma=12.0))
            labels.append(label)
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), _SHAPES)


# --------------------------------------------------------------------------------------------- sources
_TEXTURES = (
    "stripes_horizontal", "stripes_vertical", "stripes_diagonal", "stripes_antidiagonal", "checker",
    "dots", "rings", "spokes", "white_noise", "blobs", "gradient", "zigzag",
)


def _texture(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A [SIZE, SIZE] pattern in [0, 1] of the given kind with random frequency, phase and jitter."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    freq = rng.uniform(0.25, 0.8)
    phase = rng.uniform(0, 2 * np.pi)
    jitter = rng.uniform(-0.15, 0.15)
    angles = {"stripes_horizontal": np.pi / 2, "stripes_vertical": 0.0,
              "stripes_diagonal": np.pi / 4, "stripes_antidiagonal": -np.pi / 4}
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
    pattern = pattern.astype(np.float64)
    low, high = pattern.min(), pattern.max()
    return (pattern - low) / (high - low) if high > low else np.zeros_like(pattern)


@_register("source", "procedural textures (stripes, checkers, rings, noise ...): 12 classes x 200, 32x32 RGB")
def _make_textures(rng: np.random.Generator) -> SyntheticDataset:
    images, labels = [], []
    for label, kind in enumerate(_TEXTURES):
        for _ in range(200):
            fg, bg = _random_colors(rng)
            images.append(_add_noise(_blend(_texture(kind, rng), fg, bg), rng, sigma=6.0))
            labels.append(label)
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), _TEXTURES)


@_register("source", "patches of scikit-learn's two sample photos, labelled by region: 12 classes x 200")
def _make_photos(rng: np.random.Generator) -> SyntheticDataset:
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
                    patch = Image.fromarray(photo[y0 : y0 + side, x0 : x0 + side]).resize((SIZE, SIZE), Image.BILINEAR)
                    if rng.random() < 0.5:
                        patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
                    images.append(patch)
                    labels.append(label)
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), tuple(classes))


@_register("source", "Greek lower-case letters rendered from DejaVu fonts: 24 classes x 100, 32x32 RGB")
def _make_symbols(rng: np.random.Generator) -> SyntheticDataset:
    return _glyph_dataset("αβγδεζηθικλμνξοπρστυφχψω", 100, rng)
