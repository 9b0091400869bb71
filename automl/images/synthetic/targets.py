"""The original builtin targets: handwritten digits, rendered Latin capitals, geometric shapes."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from automl.images.synthetic.draw import add_noise, blend, glyph_dataset, random_colors
from automl.images.synthetic.registry import SIZE, SyntheticDataset, register


@register("target")
def _make_digits(rng: np.random.Generator) -> SyntheticDataset:
    """scikit-learn's handwritten digits: 1797 grey 8x8 images, 10 classes (the same for every seed)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 ink levels → white background, dark ink, like scanned digits.
    pixels = (255 - digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    images = [Image.fromarray(p, mode="L") for p in pixels]
    return SyntheticDataset(images, digits.target.astype(np.int64), tuple(str(d) for d in range(10)))


@register("target")
def _make_glyphs(rng: np.random.Generator) -> SyntheticDataset:
    """Latin capitals A-Z rendered from DejaVu fonts: 26 classes x 40, 32x32 RGB."""
    return glyph_dataset("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 40, rng)


_SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon")


def _shape_polygon(shape: str, center: np.ndarray, radius: float, angle: float) -> list[tuple[float, float]]:
    """Vertices (pixels) of a polygonal ``shape`` of circumradius ``radius`` turned by ``angle`` radians."""
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
        )  # fmt: skip
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return [tuple(p) for p in base @ rotation.T + center]
    return [tuple(p) for p in np.stack([np.cos(theta), np.sin(theta)], 1) * radii[:, None] + center]


@register("target")
def _make_shapes(rng: np.random.Generator) -> SyntheticDataset:
    """Coloured geometric shapes on noisy backgrounds: 8 classes x 100, 32x32 RGB."""
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
            fg, bg = random_colors(rng)
            images.append(add_noise(blend(mask, fg, bg), rng, sigma=12.0))
            labels.append(label)
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), _SHAPES)
