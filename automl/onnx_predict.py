"""Classify images with an exported ONNX model; needs only numpy, Pillow and onnxruntime.

``python -m automl.export format=onnx`` copies this file next to ``model.onnx`` and ``preprocess.json``, so
that a deployment target needs neither PyTorch nor automl:

    python predict.py images=<folder or image> [model=model.onnx] [out=predictions.csv]

It decodes an image as automl does (any mode to RGB, transparency onto white, EXIF orientation), resizes
its shorter side to ``floor(size / crop_pct)`` and crops the centre (timm's eval transform), normalises
with the model's mean and std, and writes ``path,label,probability``.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
INTERPOLATIONS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                  "box": Image.BOX, "hamming": Image.HAMMING, "lanczos": Image.LANCZOS}
CROP_MODES = ("center", "squash")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB: 16/32-bit grey scaled to 8 bits, transparency composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
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


def preprocess(path: str | Path, config: dict) -> np.ndarray:
    """One image → uint8 [3, H, W] through the model's eval pipeline (``preprocess.json``)."""
    _, height, width = config["input_size"]
    with Image.open(path) as image:
        image.load()
        image = to_rgb(ImageOps.exif_transpose(image))
    interpolation = INTERPOLATIONS[config["interpolation"]]
    scale = (math.floor(height / config["crop_pct"]), math.floor(width / config["crop_pct"]))
    if config.get("crop_mode", "center") == "squash":
        image = image.resize((scale[1], scale[0]), interpolation)
    else:  # the shorter side to the scale, the aspect ratio kept (torchvision's Resize(int))
        short, long = sorted(image.size)
        new_short, new_long = scale[0], int(scale[0] * long / short)
        size = (new_short, new_long) if image.size[0] <= image.size[1] else (new_long, new_short)
        if size != image.size:
            image = image.resize(size, interpolation)
    top = round((image.size[1] - height) / 2.0)
    left = round((image.size[0] - width) / 2.0)
    image = image.crop((left, top, left + width, top + height))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def normalize(pixels: np.ndarray, config: dict) -> np.ndarray:
    """uint8 [B, 3, H, W] → float32 normalised with the model's mean and std (0..1 units)."""
    mean = np.asarray(config["mean"], dtype=np.float32).reshape(1, -1, 1, 1) * 255
    std = np.asarray(config["std"], dtype=np.float32).reshape(1, -1, 1, 1) * 255
    return (pixels.astype(np.float32) - mean) / std


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def probabilities(session, paths: Sequence[str | Path], config: dict, batch_size: int = 64) -> np.ndarray:
    """Class probabilities [N, C] of the ONNX ``session`` (onnxruntime) for the images at ``paths``."""
    name = session.get_inputs()[0].name
    chunks = [softmax(session.run(None, {name: normalize(batch, config)})[0])
              for batch in _batches(paths, config, batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, len(config["classes"])), dtype=np.float32)


def _batches(paths: Sequence[str | Path], config: dict, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(paths), batch_size):
        yield np.stack([preprocess(path, config) for path in paths[start : start + batch_size]])


def main(argv: Sequence[str]) -> int:
    import onnxruntime

    here = Path(__file__).resolve().parent
    args = {"model": str(here / "model.onnx"), "out": "predictions.csv"}
    for arg in argv:
        if arg in ("-h", "--help") or "=" not in arg:
            print(__doc__)
            return 0 if arg in ("-h", "--help") else 2
        key, value = arg.split("=", 1)
        args[key] = value
    if "images" not in args:
        print("error: images=<folder or image> is required\n" + __doc__, file=sys.stderr)
        return 2
    model = Path(args["model"])
    config = json.loads((model.parent / "preprocess.json").read_text())
    images = Path(args["images"])
    paths = [images] if images.is_file() else sorted(p for p in images.rglob("*") if p.suffix.lower() in EXTENSIONS)
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    probs = probabilities(session, paths, config)
    with open(args["out"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "probability"])
        for path, row in zip(paths, probs, strict=True):
            writer.writerow([str(path), config["classes"][int(row.argmax())], f"{row.max():.6f}"])
    print(f"predictions: {args['out']} ({len(paths)} image(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
