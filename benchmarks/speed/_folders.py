"""The benchmarks' Fashion-MNIST-shaped folder: ``count`` 28x28 grey PNGs of handwritten digits in
``<folder>/<digit>/``, made once (seeded; ~1 min per 70k) and reused by every script that names it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

DIGITS_FOLDER = "outputs/cache/bench/fashion-70k"


def digit_folder(folder: Path, count: int) -> list[Path]:
    """The folder's PNG paths (made first unless a complete one is there).

    Each image is one of scikit-learn's 8x8 digits drawn anew at 28x28 with a random scale, rotation,
    stroke width, shift and pixel noise, so no two images are alike and a model has something to learn.
    """
    from scipy import ndimage
    from sklearn.datasets import load_digits

    done = folder / "complete"
    if not (done.is_file() and int(done.read_text()) == count):
        digits = load_digits()
        rng = np.random.default_rng(0)
        for index in range(count):
            source = rng.integers(len(digits.images))
            canvas = np.zeros((28, 28))
            glyph = ndimage.zoom(digits.images[source] / 16.0, rng.uniform(2.0, 2.8), order=1)
            glyph = ndimage.rotate(glyph, rng.uniform(-15, 15), reshape=False, order=1)
            glyph = ndimage.grey_dilation(glyph, size=int(rng.integers(1, 3)))
            top, left = (rng.integers(0, 28 - side + 1) for side in glyph.shape)
            canvas[top:top + glyph.shape[0], left:left + glyph.shape[1]] = glyph
            pixels = 255 * canvas + rng.normal(0, 10, canvas.shape)
            path = folder / str(digits.target[source]) / f"{index:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").save(path)
        done.write_text(str(count))
    return sorted(folder.glob("*/*.png"))
