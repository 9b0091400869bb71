"""The PARC paper's fixed-budget, class-balanced probe set.

Scores are computed on a small probe set drawn from the task's training split: ``budget`` images,
classes as even as possible, at least ``min_per_class`` per class (:class:`automl.settings.ProbeSettings`). When
``C * min_per_class > budget`` the paper subsamples classes; ``subsample_classes=False`` makes that an
error instead.
"""

from __future__ import annotations

import logging

import numpy as np

from automl.settings import ProbeSettings

log = logging.getLogger(__name__)


def sample_probe(labels: np.ndarray, settings: ProbeSettings | None = None) -> np.ndarray:
    """Choose probe images.

    Args:
        labels: [N] int class of every training image.
        settings: the budget (if the split is smaller, all of it is used), the fewest images any kept
            class gets (scores need >= 2 per class), whether to keep a random ``budget // min_per_class``
            classes when there are too many, and the seed; the draw is a deterministic function of
            ``(labels, settings)``. None: the defaults.

    Returns:
        [M] sorted int64 indices into ``labels``; M = min(budget, N) over the kept classes.
    """
    settings = settings or ProbeSettings()
    budget, min_per_class = settings.budget, settings.min_per_class
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D integer array, got shape {labels.shape} {labels.dtype}")
    classes, counts = np.unique(labels, return_counts=True)
    too_small = classes[counts < min_per_class]
    if too_small.size:
        raise ValueError(f"class(es) {too_small.tolist()} have fewer than {min_per_class} images for the probe set")
    rng = np.random.default_rng(settings.seed)
    max_classes = budget // min_per_class
    if len(classes) > max_classes:
        if not settings.subsample_classes:
            raise ValueError(
                f"the task has {len(classes)} classes but a probe budget of {budget} allows at most {max_classes} "
                f"({min_per_class} per class); raise probe.budget or set probe.subsample_classes=true"
            )
        log.warning("probe: %d classes exceed the budget of %d images; using a random %d of them",
                    len(classes), budget, max_classes)
        keep = np.sort(rng.choice(len(classes), size=max_classes, replace=False))
        classes, counts = classes[keep], counts[keep]
    quota = _even_quota(counts, budget, rng)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _even_quota(counts: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Per-class sample sizes summing to min(budget, counts.sum()), as equal as the class sizes allow."""
    quota = np.zeros_like(counts)
    remaining = min(budget, int(counts.sum()))
    # Water-filling: give every class with spare images an equal share; the rounding remainder goes
    # to randomly chosen classes so no class is systematically favoured.
    while remaining > 0:
        open_classes = np.flatnonzero(quota < counts)
        share, extra = divmod(remaining, len(open_classes))
        add = np.full(len(open_classes), share)
        add[rng.choice(len(open_classes), size=extra, replace=False)] += 1
        add = np.minimum(add, counts[open_classes] - quota[open_classes])
        quota[open_classes] += add
        remaining -= int(add.sum())
    return quota
