"""Decoding images from disk into RGB.

Every image that enters automl goes through :func:`load_image`, so all of the pipeline sees the same
pixels: any PIL mode (1, L, LA, P, RGBA, CMYK, I;16, I, F) becomes 8-bit RGB, transparency is composited
onto white, EXIF orientation is applied, and a file that cannot be decoded raises :class:`BadImageError`
naming the path. An image of more than ``max_pixels`` pixels (PIL's decompression-bomb limit by
default; ``task.max_image_pixels``) is a bad image too, refused before its pixels are decoded.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from automl.errors import AutomlError

MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS)
Image.MAX_IMAGE_PIXELS = None  # checked here, against the caller's limit, with the file named
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class BadImageError(AutomlError):
    """A file that is not a decodable image; the message names the file."""


def is_image_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16/32-bit grey: scale the full range of the type to 8 bits rather than clipping.
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


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``path`` fully into an RGB image (EXIF orientation applied).

    Raises:
        BadImageError: the file is missing, truncated, not an image or larger than ``max_pixels``; the
            message names the path.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadImageError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
    return decode_image(data, path, max_pixels)


def decode_image(data: bytes, path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode the encoded bytes of the file ``path`` (named in errors) like :func:`load_image`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise BadImageError(f"{path}: {width}x{height} = {width * height} pixels, more than the "
                                        f"limit of {max_pixels} (task.max_image_pixels)")
                image.load()
                image = ImageOps.exif_transpose(image)
                return _to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, BadImageError):
            raise
        raise BadImageError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
