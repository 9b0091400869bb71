"""What the benchmark's stages hand on: :class:`BenchData` (from a bank x targets or from the paper's
files) and, per method, :class:`MethodScores` for each ``Key`` (target, probe seed); :class:`BenchError`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from automl.errors import AutomlError

Key = tuple[str, int]  # (target, probe seed)


class BenchError(AutomlError):
    """The benchmark cannot run as configured; the message names the setting or file."""


def checked_names(value: Sequence[str] | None, known: Sequence[str], where: str, default: Sequence[str]) -> list[str]:
    """``value`` (a list of names, or None for ``default``) checked against ``known``."""
    if value is None:
        return list(default)
    unknown = [v for v in value if v not in known]
    if unknown:
        raise BenchError(f"{where}: unknown name(s) {unknown}; known: {list(known)}")
    return list(value)


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
    fingerprints: dict[str, str] = field(default_factory=dict)  # target -> task fingerprint (measured data)


@dataclass
class MethodScores:
    """One method's scores of the bank on one (target, seed): higher = predicted to transfer better."""

    scores: dict[str, float]  # model -> score
    seconds: dict[str, float]  # model -> seconds to compute it, probe features given
