"""What a task is, in a few numbers a person reads (and a run folder keeps, so its report needs no images):
its classes, images per class in each split, image sizes and modes, and the files left out."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from automl.images.tasks import SPLITS, Task

MAX_SKIPPED = 50  # skipped files listed by name; the rest are counted
COMMON_SIZES = 5  # most frequent image sizes listed


@dataclass(frozen=True)
class TaskSummary:
    """A task as a run's report shows it (JSON-ready: :meth:`as_dict` and :meth:`from_dict`).

    Sizes are in pixels as a model sees the images (EXIF orientation applied); ``width`` and ``height``
    are [min, median, max] over every usable image of every split.
    """

    name: str
    fingerprint: str
    classes: list[str]
    image_size: int | None  # the override of the models' input side (task.image_size), or None
    counts: dict[str, list[int]]  # split → [C] images per class, in ``classes`` order
    width: list[int]  # [min, median, max]
    height: list[int]
    common_sizes: dict[str, int]  # "WxH" → images, the most frequent first
    modes: dict[str, int]  # the files' PIL mode before conversion to RGB → images
    skipped: dict[str, str]  # unusable file → why (the first MAX_SKIPPED)
    n_skipped: int  # unusable files in all

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split_size(self, split: str) -> int:
        """Images in ``split``."""
        return sum(self.counts[split])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSummary:
        return cls(**data)


def summarize_task(task: Task) -> TaskSummary:
    """The summary of ``task`` (its images' sizes and modes come from its scan: nothing is read again)."""
    counts = {split: np.bincount(task.splits[split].labels, minlength=task.num_classes).tolist() for split in SPLITS}
    scans = [task.scans[path] for split in SPLITS for path in task.splits[split].paths]
    widths, heights = np.array([s.width for s in scans]), np.array([s.height for s in scans])
    sizes = Counter(f"{s.width}x{s.height}" for s in scans)
    return TaskSummary(
        name=task.name, fingerprint=task.fingerprint, classes=list(task.classes), image_size=task.image_size,
        counts=counts, width=_spread(widths), height=_spread(heights),
        common_sizes=dict(sizes.most_common(COMMON_SIZES)),
        modes=dict(Counter(s.mode for s in scans).most_common()),
        skipped={str(path): reason for path, reason in list(task.skipped.items())[:MAX_SKIPPED]},
        n_skipped=len(task.skipped))


def _spread(values: np.ndarray) -> list[int]:
    """[min, median, max] of ``values`` ([0, 0, 0] for none)."""
    if not len(values):
        return [0, 0, 0]
    return [int(values.min()), int(np.median(values)), int(values.max())]
