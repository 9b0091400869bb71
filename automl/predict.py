"""``python -m automl.predict model=<dir> images=<folder or file> [out=predictions.csv] [batch_size=64]
[device=auto] [num_workers=0]``: classify images with an exported model (``<run>/best``).

Writes a CSV ``path,label,probability`` (the predicted class name and its softmax probability), atomically.
When ``images`` is a labelled ImageFolder (``<images>/<class>/<image>``, every class folder named after
one of the model's classes) it also prints ``accuracy: <percent>``. The exported model's eval
transform and the same decoding as training are used, so on the task's ``test/`` folder this
reproduces the ``test_accuracy`` in the model's config.json.
"""

from __future__ import annotations

import csv
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from automl.config import select_device
from automl.fileio import atomic_path
from automl.finetune.export import EVAL_BATCH_SIZE, ExportError, load_exported, predict_proba
from automl.images import BadImageError, is_image_file, load_image

log = logging.getLogger(__name__)
USAGE = ("usage: python -m automl.predict model=<exported model dir> images=<folder or file> "
         "[out=predictions.csv] [batch_size=64] [device=auto] [num_workers=0]")
_KEYS = {"model", "images", "out", "batch_size", "device", "num_workers"}


class PredictError(ValueError):
    """Bad arguments or inputs; the message names the argument or file."""


def find_images(images: Path, classes: Sequence[str]) -> tuple[list[Path], np.ndarray | None]:
    """Image files under ``images`` (a file or a folder, recursively, sorted) and their class indices
    when ``images`` is a labelled ImageFolder whose class folders are all among ``classes`` (else None)."""
    if images.is_file():
        if not is_image_file(images):
            raise PredictError(f"images={images}: not an image file extension")
        return [images], None
    if not images.is_dir():
        raise PredictError(f"images={images}: no such file or folder")
    paths = sorted(p for p in images.rglob("*") if p.is_file() and is_image_file(p)
                   and not any(part.startswith(".") for part in p.relative_to(images).parts))
    if not paths:
        raise PredictError(f"images={images}: no image files in it")
    folders = {p.relative_to(images).parts[0] if len(p.relative_to(images).parts) > 1 else None for p in paths}
    index = {name: i for i, name in enumerate(classes)}
    if None in folders or not folders <= set(index):
        return paths, None
    return paths, np.array([index[p.relative_to(images).parts[0]] for p in paths], dtype=np.int64)


def _readable(paths: list[Path], labels: np.ndarray | None) -> tuple[list[Path], np.ndarray | None]:
    """Drop (and report) the files that cannot be decoded."""
    good = []
    for i, path in enumerate(paths):
        try:
            load_image(path)
            good.append(i)
        except BadImageError as exc:
            log.warning("skipping %s", exc)
    if not good:
        raise PredictError("no readable images")
    return [paths[i] for i in good], None if labels is None else labels[good]


def predict(model_dir: str | Path, images: str | Path, out: str | Path = "predictions.csv", *,
            batch_size: int = EVAL_BATCH_SIZE, device: str = "auto", num_workers: int = 0) -> float | None:
    """Write the predictions CSV; return the accuracy in percent for a labelled ImageFolder, else None."""
    exported = load_exported(model_dir)
    classes = exported.classes
    paths, labels = find_images(Path(images), classes)
    device = select_device(device)
    try:
        probs = predict_proba(exported.model, paths, exported.transform, batch_size=batch_size, device=device,
                              num_workers=num_workers)
    except BadImageError:  # rare: find the unreadable files once, then predict the rest
        paths, labels = _readable(paths, labels)
        probs = predict_proba(exported.model, paths, exported.transform, batch_size=batch_size, device=device,
                              num_workers=num_workers)
    predicted = probs.argmax(axis=1)
    with atomic_path(out) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "probability"])
        for path, cls, row in zip(paths, predicted, probs, strict=True):
            writer.writerow([str(path), classes[cls], f"{row[cls]:.6f}"])
    return None if labels is None else 100.0 * float(np.mean(predicted == labels))


def _int_arg(args: dict, key: str, default: int, low: int) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PredictError(f"{key}={value!r} must be an integer >= {low}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        bad = [arg for arg in argv if "=" not in arg]
        if bad:
            raise PredictError(f"arguments must be key=value, got {bad}")
        args = OmegaConf.to_container(OmegaConf.from_dotlist(argv))
        unknown = sorted(set(args) - _KEYS)
        if unknown:
            raise PredictError(f"unknown argument(s) {unknown}; known: {sorted(_KEYS)}")
        missing = [key for key in ("model", "images") if args.get(key) in (None, "")]
        if missing:
            raise PredictError(f"missing {', '.join(f'{key}=' for key in missing)}")
        out = Path(str(args.get("out", "predictions.csv")))
        accuracy = predict(str(args["model"]), str(args["images"]), out,
                           batch_size=_int_arg(args, "batch_size", EVAL_BATCH_SIZE, 1),
                           device=str(args.get("device", "auto")),
                           num_workers=_int_arg(args, "num_workers", 0, 0))
    except (PredictError, ExportError, ValueError) as exc:
        print(f"error: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    print(f"predictions: {out}")
    if accuracy is not None:
        print(f"accuracy: {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
