"""The PARC paper's fixed-budget, class-balanced probe set.

Scores are computed on a small probe set drawn from the task's training split: ``budget`` images
(default 500), classes as even as possible, at least ``min_per_class`` (default 2) per class. When
``C * min_per_class > budget`` the paper subsamples classes; ``subsample_classes=False`` makes that an
error instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def sample_probe(labels: np.ndarray, budget: int = 500, min_per_class: int = 2, seed: int = 0,
                 subsample_classes: bool = True) -> np.ndarray:
    """Choose probe images.

    Args:
        labels: [N] int class of every training image.
        budget: number of probe images (if the split is smaller, all of it is used).
        min_per_class: the fewest images any kept class gets (scores need >= 2 per class).
        seed: the draw is a deterministic function of ``(labels, budget, min_per_class, seed)``.
        subsample_classes: keep a random ``budget // min_per_class`` classes when there are too many.

    Returns:
        [M] sorted int64 indices into ``labels``; M = min(budget, N) over the kept classes.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D integer array, got shape {labels.shape} {labels.dtype}")
    if budget < 2 * min_per_class or min_per_class < 1:
        raise ValueError(f"probe budget {budget} must hold at least 2 classes x min_per_class={min_per_class}")
    classes, counts = np.unique(labels, return_counts=True)
    too_small = classes[counts < min_per_class]
    if too_small.size:
        raise ValueError(f"class(es) {too_small.tolist()} have fewer than {min_per_class} images for the probe set")
    rng = np.random.default_rng(seed)
    max_classes = budget // min_per_class
    if len(classes) > max_classes:
        if not subsample_classes:
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


def probe_from_config(labels: np.ndarray, probe_cfg: Mapping[str, Any], seed: int | None = None) -> np.ndarray:
    """:func:`sample_probe` with the ``probe`` config group's settings (a missing key: its default);
    ``seed``, when given, replaces ``probe.seed`` (the benchmark draws one probe set per seed)."""
    casts = {"budget": int, "min_per_class": int, "seed": int, "subsample_classes": bool}
    settings = {key: cast(probe_cfg[key]) for key, cast in casts.items() if key in probe_cfg}
    if seed is not None:
        settings["seed"] = seed
    return sample_probe(labels, **settings)


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
