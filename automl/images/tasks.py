"""Task specs → labelled train/val/test file lists.

A task comes from one of three sources, in this order of precedence (``conf/task/*.yaml`` or ``task.<field>=`` overrides):

* ``root``: an ImageFolder, either ``root/<class>/<image>`` or ``root/{train,val,test}/<class>/<image>``
  (any subset of the split folders);
* ``csv``: a CSV with columns ``path,label[,split]``, paths relative to the CSV;
* ``builtin``: an offline dataset from :mod:`automl.images.synthetic`, written once as an ImageFolder with
  train/val/test folders under the cache directory.

Missing val/test splits are carved out of train, stratified and seeded. Every image is decoded once
(:mod:`automl.images.scan`) so corrupt or oversized files are found before any work: skipped with a warning,
or an error with ``on_bad_image=error``. Empty classes, classes with one image and tasks with fewer
than two classes are errors naming the class.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automl.errors import AutomlError
from automl.images import synthetic
from automl.images.scan import ImageScan, scan_images
from automl.settings import TaskSettings

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class TaskError(AutomlError):
    """The task's data cannot be used as given; the message names the file, class or field."""


@dataclass(frozen=True)
class Split:
    """One split: ``paths[i]`` is an image of class index ``labels[i]``."""

    paths: tuple[Path, ...]
    labels: np.ndarray  # [N] int64

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class Task:
    """A labelled image classification task with train/val/test splits."""

    name: str
    classes: tuple[str, ...]
    splits: dict[str, Split]
    image_size: int | None  # user override of the models' input side in pixels, or None
    fingerprint: str  # hex digest of the classes and each split's (class, image content) multiset
    root: Path
    median_side: int  # median of min(width, height) over the train images, in pixels
    cache_dir: Path | None = None  # where what is derived from the images (scans, decoded pixels) is cached
    scans: Mapping[Path, ImageScan] = field(default_factory=dict)  # every image's size, mode and digest
    skipped: Mapping[Path, str] = field(default_factory=dict)  # files left out as unusable → why

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def meta(self) -> dict[str, int]:
        """Task meta-features used by the accuracy predictor."""
        return {
            "num_classes": self.num_classes,
            "num_train": len(self.splits["train"]),
            "image_side": self.image_size or self.median_side,
        }


def load_task(settings: TaskSettings, cache_dir: str | os.PathLike) -> Task:
    """Build the :class:`Task` described by ``settings``: its images scanned (bad ones skipped or an
    error, per ``on_bad_image``), its classes checked and its splits made."""
    if settings.root and settings.csv:
        raise TaskError(f"task {settings.label!r}: set task.root (an ImageFolder) or task.csv, not both")
    if not (settings.root or settings.csv or settings.builtin):
        raise TaskError("task: set task.root (an ImageFolder), task.csv or task.builtin")
    cache_dir = Path(cache_dir)
    # Your own data (root, then csv) takes precedence over the builtin default, so that
    # `python -m automl task.root=/data/flowers` works without a task file.
    if settings.root:
        root = Path(settings.root).expanduser().resolve()
        records = _folder_records(root)
    elif settings.csv:
        root = Path(settings.csv).expanduser().resolve().parent
        records = _csv_records(Path(settings.csv).expanduser().resolve())
    else:
        root = materialize_builtin(settings.builtin, cache_dir, settings.seed, settings.val_fraction,
                                   settings.test_fraction)
        records = _folder_records(root)

    source = str(Path(settings.csv).expanduser().resolve()) if settings.csv else str(root)
    cache_file = cache_dir / "scans" / f"{hashlib.sha1(source.encode()).hexdigest()[:16]}.json"
    records, scans, skipped = _drop_bad_images(records, cache_file, settings)
    # In content order, not listing order: the same images as a folder, a CSV or a moved copy carve the
    # same splits and have one fingerprint.
    records.sort(key=lambda record: (record[1], scans[record[0]].digest, record[2] or "", str(record[0])))
    classes = _class_names(records)
    splits = _make_splits(records, classes, settings.val_fraction, settings.test_fraction, settings.seed)
    train_sides = [scans[path].side for path in splits["train"].paths]
    return Task(
        name=settings.label,
        classes=classes,
        splits=splits,
        image_size=settings.image_size,
        fingerprint=_fingerprint(splits, classes, scans),
        root=root,
        median_side=int(np.median(train_sides)),
        cache_dir=cache_dir,
        scans=scans,
        skipped=skipped,
    )


# ------------------------------------------------------------------------------------------- sources
# A record is (path, class name, split or None); None means "train, or carve val/test from it".
Record = tuple[Path, str, str | None]


def _folder_records(root: Path) -> list[Record]:
    if not root.is_dir():
        raise TaskError(f"task.root {root} is not a folder")
    split_dirs = [root / split for split in SPLITS if (root / split).is_dir()]
    if split_dirs:
        return [rec for folder in split_dirs for rec in _class_folder_records(folder, folder.name)]
    return _class_folder_records(root, None)


def _class_folder_records(folder: Path, split: str | None) -> list[Record]:
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise TaskError(f"{folder}: no class folders (expected {folder}/<class>/<image>)")
    records = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise TaskError(f"{class_dir}: class {class_dir.name!r} has no images")
        records += [(path, class_dir.name, split) for path in files]
    return records


def _csv_records(csv_path: Path) -> list[Record]:
    if not csv_path.is_file():
        raise TaskError(f"task.csv {csv_path} does not exist")
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "label"} - set(reader.fieldnames or ())
        if missing:
            raise TaskError(f"{csv_path}: missing column(s) {sorted(missing)}; expected path,label[,split]")
        records = []
        for line, row in enumerate(reader, start=2):
            split = (row.get("split") or "").strip() or None
            if split is not None and split not in SPLITS:
                raise TaskError(f"{csv_path}:{line}: split {split!r} is not one of {SPLITS}")
            if not row["path"] or not row["label"]:
                raise TaskError(f"{csv_path}:{line}: empty path or label")
            records.append((csv_path.parent / row["path"], row["label"].strip(), split))
    if not records:
        raise TaskError(f"{csv_path}: no rows")
    return records


def materialize_builtin(name: str, cache_dir: Path, seed: int, val_fraction: float, test_fraction: float) -> Path:
    """Write builtin dataset ``name`` once as ``<cache>/tasks/<name>-.../{train,val,test}/<class>/*.png``."""
    if name not in synthetic.available("target"):
        raise TaskError(f"unknown builtin task {name!r}; available: {', '.join(synthetic.available('target'))}")
    root = cache_dir / "tasks" / f"{name}-seed{seed}-val{val_fraction:g}-test{test_fraction:g}"
    if root.is_dir():
        return root
    data = synthetic.generate(name, seed)
    labels = data.labels
    split_of = _carve(np.array([None] * len(labels), dtype=object), labels, data.classes,
                      val_fraction, test_fraction, seed, where=f"builtin task {name}")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root.parent))
    for index, (image, label, split) in enumerate(zip(data.images, labels, split_of, strict=True)):
        folder = staging / split / data.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index:05d}.png")
    try:
        os.replace(staging, root)  # atomic: a crash leaves no half-written task folder behind
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return root


# ------------------------------------------------------------------------------------------- checks
def _drop_bad_images(records: list[Record], cache_file: Path, settings: TaskSettings):
    """Decode every image once (:func:`automl.images.scan.scan_images`); return the good records, their
    scans and the unusable files (path → why)."""
    scans = scan_images([path for path, _, _ in records], cache_file, settings.max_image_pixels)
    good, readable, bad = [], {}, {}
    for record in records:
        result = scans[record[0]]
        if isinstance(result, str):
            bad[record[0]] = result
        else:
            good.append(record)
            readable[record[0]] = result
    if bad:
        listed = "\n  ".join(f"{path}: {reason}" for path, reason in list(bad.items())[:20])
        if settings.on_bad_image == "error":
            raise TaskError(f"{len(bad)} unusable image(s) (task.on_bad_image=error):\n  {listed}")
        log.warning("skipping %d unusable image(s):\n  %s", len(bad), listed)
    return good, readable, bad


def _class_names(records: list[Record]) -> tuple[str, ...]:
    names = {label for _, label, _ in records}
    if len(names) < 2:
        raise TaskError(f"a task needs at least 2 classes, found {len(names)}: {sorted(names)}")
    if all(name.lstrip("-").isdigit() for name in names):
        return tuple(sorted(names, key=int))
    return tuple(sorted(names))


def _make_splits(records: list[Record], classes: tuple[str, ...], val_fraction: float, test_fraction: float,
                 seed: int) -> dict[str, Split]:
    index = {name: i for i, name in enumerate(classes)}
    paths = [path for path, _, _ in records]
    labels = np.array([index[label] for _, label, _ in records], dtype=np.int64)
    split_of = np.array([split for _, _, split in records], dtype=object)
    given = {split for split in split_of if split is not None}
    for split in given:
        missing = set(range(len(classes))) - set(labels[split_of == split].tolist())
        if split == "train" and missing:
            raise TaskError(f"class(es) {sorted(classes[i] for i in missing)} have no training images")
    if "train" not in given and given:
        raise TaskError(f"the data has {sorted(given)} splits but no train split")
    unassigned = split_of == None  # noqa: E711 (elementwise comparison on an object array)
    if unassigned.all():
        split_of = _carve(split_of, labels, classes, val_fraction, test_fraction, seed, where="task")
    else:
        split_of[unassigned] = "train"
        split_of = _carve(split_of, labels, classes, val_fraction if "val" not in given else 0.0,
                          test_fraction if "test" not in given else 0.0, seed, where="task", pool="train")
    splits = {}
    for split in SPLITS:
        rows = np.flatnonzero(split_of == split)
        splits[split] = Split(tuple(paths[i] for i in rows), labels[rows])
    train_counts = np.bincount(splits["train"].labels, minlength=len(classes))
    single = [classes[i] for i in np.flatnonzero(train_counts < 2)]
    if single:
        raise TaskError(f"class(es) {single} have fewer than 2 training images; every class needs at least 2")
    return splits


def _carve(split_of: np.ndarray, labels: np.ndarray, classes, val_fraction: float, test_fraction: float,
           seed: int, where: str, pool: str | None = None) -> np.ndarray:
    """Assign stratified val/test splits out of the rows whose split is ``pool``; the rest become train."""
    # scikit-learn: a second that automl.predict, which imports this package, does not need
    from sklearn.model_selection import train_test_split

    split_of = split_of.copy()
    rows = np.flatnonzero(split_of == pool) if pool is not None else np.arange(len(labels))
    split_of[rows] = "train"
    counts = np.bincount(labels[rows], minlength=len(classes))
    smallest = int(np.argmin(counts))
    for split, fraction, remaining in (("test", test_fraction, 1.0), ("val", val_fraction, 1.0 - test_fraction)):
        if fraction <= 0:
            continue
        pool_rows = np.flatnonzero(split_of == "train")
        try:
            _, carved = train_test_split(pool_rows, test_size=fraction / remaining, random_state=seed,
                                         stratify=labels[pool_rows])
        except ValueError as exc:
            raise TaskError(
                f"{where}: cannot carve a stratified {split} split ({fraction:.0%}) out of the training images: "
                f"class {classes[smallest]!r} has only {counts[smallest]} image(s). Add images or provide "
                f"{split}/ data explicitly ({exc})"
            ) from exc
        split_of[carved] = split
    return split_of


def _fingerprint(splits: dict[str, Split], classes: tuple[str, ...], scans: dict[Path, ImageScan]) -> str:
    """Hex digest of what the task is: its classes and, per split, the multiset of (class, image content).
    Where the files are, their names and their order do not count."""
    entries = sorted(f"{split}\t{classes[label]}\t{scans[path].digest}" for split in SPLITS
                     for path, label in zip(splits[split].paths, splits[split].labels, strict=True))
    digest = hashlib.sha256(json.dumps(list(classes)).encode())
    digest.update("\n".join(entries).encode())
    return digest.hexdigest()[:16]
