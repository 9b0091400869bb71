"""Classify images with an exported ONNX model; needs only numpy, Pillow and onnxruntime.

``python -m automl.export format=onnx`` writes this file next to ``model.onnx`` and ``preprocess.json`` (the
three make a folder that works wherever it is copied), so that a deployment target needs neither PyTorch
nor automl:

    python predict.py images=<folder or image> [model=model.onnx] [out=<csv>]

It decodes an image as automl does (any mode to RGB, transparency onto white, EXIF orientation), resizes
its shorter side to ``floor(size / crop_pct)`` and crops the centre (timm's eval transform), normalises
with the model's mean and std, and writes ``path,label,probability`` (``true_label`` too for a labelled
ImageFolder), by default as ``predictions-<images>.csv`` next to the model. It prints what
``python -m automl.predict`` prints: one image's label and probability, the CSV, and for a labelled
ImageFolder ``accuracy: <percent>``.
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

from automl.images._portable import folder_images, to_rgb  # inlined by the export: no automl needed there

INTERPOLATIONS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                  "box": Image.BOX, "hamming": Image.HAMMING, "lanczos": Image.LANCZOS}
CROP_MODES = ("center", "squash")


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

    args = {"model": str(Path(__file__).resolve().parent / "model.onnx")}
    for arg in argv:
        if arg in ("-h", "--help") or "=" not in arg:
            print(__doc__)
            return 0 if arg in ("-h", "--help") else 2
        key, value = arg.split("=", 1)
        args[key] = value
    if "images" not in args:
        print("error: images=<folder or image> is required\n" + __doc__, file=sys.stderr)
        return 2
    model, images = Path(args["model"]), Path(args["images"])
    if not model.is_file():
        print(f"error: model={model}: no such file", file=sys.stderr)
        return 2
    config = json.loads((model.parent / "preprocess.json").read_text())
    classes = config["classes"]
    if images.is_file():
        paths, targets = [images], None
    elif images.is_dir():
        paths, targets = folder_images(images, classes)
    else:
        print(f"error: images={images}: no such file or folder", file=sys.stderr)
        return 2
    if not paths:
        print(f"error: images={images}: no image files in it", file=sys.stderr)
        return 2
    out = Path(args.get("out") or model.parent / f"predictions-{images.resolve().stem or 'images'}.csv")
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    probs = probabilities(session, paths, config)
    predicted = probs.argmax(axis=1)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "probability", *(["true_label"] if targets is not None else [])])
        for i, path in enumerate(paths):
            truth = [classes[targets[i]]] if targets is not None else []
            writer.writerow([str(path), classes[predicted[i]], f"{probs[i, predicted[i]]:.6f}", *truth])
    tmp.replace(out)
    if len(paths) == 1:
        print(f"{paths[0]}: {classes[predicted[0]]} ({100 * probs[0, predicted[0]]:.1f}%)")
    print(f"predictions: {out}")
    if targets is not None:
        print(f"accuracy: {100.0 * float(np.mean(predicted == targets)):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
