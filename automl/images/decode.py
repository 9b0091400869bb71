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

from PIL import Image, ImageOps, UnidentifiedImageError

from automl.errors import AutomlError
from automl.images._portable import to_rgb
from automl.settings import MAX_PIXELS

Image.MAX_IMAGE_PIXELS = None  # checked here, against the caller's limit, with the file named


class BadImageError(AutomlError):
    """A file that is not a decodable image; the message names the file."""


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
                return to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, BadImageError):
            raise
        raise BadImageError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
