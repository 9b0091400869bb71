"""Several scores of one model's probe features at once, as the rank stage and the benchmark need them."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from automl.transferability._score import needs_probs, score


def score_many(names: Sequence[str], features: np.ndarray, labels: np.ndarray, probs: np.ndarray | None = None,
               options: Mapping[str, Mapping] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """Every score in ``names`` of one model → (scores, seconds per score).

    ``labels`` may have gaps (a probe that subsampled classes); they are renumbered 0..C-1 once. A score
    that needs ``probs`` when the model has none (a headless checkpoint) is NaN and takes no time; any
    other error propagates. ``options[name]`` are that score's keyword options.
    """
    options = options or {}
    labels = np.unique(labels, return_inverse=True)[1]
    scores, seconds = {}, {}
    for name in names:
        if needs_probs(name) and probs is None:
            scores[name] = math.nan
            continue
        start = time.perf_counter()
        scores[name] = score(name, features, labels, probs, **dict(options.get(name) or {}))
        seconds[name] = time.perf_counter() - start
    return scores, seconds
