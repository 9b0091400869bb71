"""What the benchmark's stages hand on: :class:`BenchData` (from a bank x targets or from the paper's
files) and, per method, :class:`MethodScores` for each ``Key`` (target, probe seed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Key = tuple[str, int]  # (target, probe seed)


@dataclass
class BenchData:
    """Everything the metrics need, from our bank x targets or from the paper's files.

    ``scores[(target, seed)][model][score]`` are raw transferability scores and ``seconds`` the time each
    took (s); ``oracle[target][model]`` the fine-tuned test accuracy (percent); ``model_meta[model]`` and
    ``task_meta[target]`` the predictor's meta-features (``depth`` is required for the plasticity
    ensemble).
    """

    targets: list[str]
    seeds: list[int]
    oracle: dict[str, dict[str, float]]
    scores: dict[Key, dict[str, dict[str, float]]]
    seconds: dict[Key, dict[str, dict[str, float]]]
    model_meta: dict[str, dict[str, Any]]
    task_meta: dict[str, dict[str, Any]]


@dataclass
class MethodScores:
    """One method's scores of the bank on one (target, seed): higher = predicted to transfer better."""

    scores: dict[str, float]  # model -> score
    seconds: dict[str, float]  # model -> seconds to compute it, probe features given
