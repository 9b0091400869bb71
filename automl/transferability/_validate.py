"""Input validation for every transferability score, done once at the API boundary.

Every problem ends in a ``ValueError`` that names the argument and what is wrong with it (and the
offending row or class), never in a NaN or a traceback from deep inside numpy. What passes comes out
as an :class:`Inputs`: float64 read-only arrays and labels 0..C-1 with every class present.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse import csr_array

if TYPE_CHECKING:
    from ._registry import ScoreSpec

PROBS_SUM_TOLERANCE = 1e-3  # |sum_z probs[i, z] - 1| allowed per row (float32 softmax is far inside)
_LISTED = 5  # at most this many offending classes are named in a message


@dataclass(frozen=True)
class Inputs:
    """Validated score inputs.

    features: [N, D] float64, finite (None for scores that do not read features)
    labels:   [N] intp in 0..C-1, every class present
    probs:    [N, Cs] float64, finite, >= 0, rows summing to 1 (None unless the score needs them)
    counts:   [C] intp, samples per class
    """

    features: np.ndarray | None
    labels: np.ndarray
    probs: np.ndarray | None
    counts: np.ndarray

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.counts)

    def class_sums(self, x: np.ndarray) -> np.ndarray:
        """Per-class sums of the rows of x [N, ...] -> [C, ...] (= one_hot.T @ x, at O(N) cost)."""
        return self._indicator @ x

    @cached_property
    def _indicator(self) -> csr_array:
        """[C, N] sparse class indicator."""
        n = self.n_samples
        return csr_array((np.ones(n), (self.labels, np.arange(n))), shape=(self.n_classes, n))

    @cached_property
    def constant_features(self) -> bool:
        """True when every sample has the same feature vector (the features carry no information)."""
        return bool((self.features == self.features[0]).all())


def validate(spec: ScoreSpec, features: object, labels: object, probs: object) -> Inputs:
    """Check the arguments of ``score(spec.name, ...)`` against what the score needs; returns them as
    :class:`Inputs` or raises ValueError."""
    name = spec.name
    label_array = _labels(labels)
    n = len(label_array)
    feature_array = None
    if spec.uses_features:
        if features is None:
            raise ValueError(f"{name} needs features [N, D] (penultimate-layer features of the probe set)")
        feature_array, _ = _float_matrix(features, "features", n)
    prob_array = None
    if spec.needs_probs:
        if probs is None:
            raise ValueError(f"{name} needs probs [N, Cs] source-class probabilities")
        prob_array = _probabilities(probs, n)
    counts = _class_counts(label_array, name, spec.min_per_class)
    return Inputs(feature_array, label_array, prob_array, counts)


def _labels(labels: object) -> np.ndarray:
    array = np.asarray(labels)
    if array.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers 0..C-1, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D [N], got shape {array.shape}")
    return _read_only(array.astype(np.intp, copy=False))


def _float_matrix(value: object, what: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """[n, >= 1] finite float64 read-only array, and its row sums."""
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise ValueError(f"{what} must be a float array (float32 or float64), got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(
            f"{what} must be 2-D [N, {'D' if what == 'features' else 'Cs'}], got shape {array.shape}"
        )
    if array.shape[0] != n:
        raise ValueError(f"{what} has {array.shape[0]} rows but labels has {n} entries")
    if array.shape[1] == 0:
        raise ValueError(f"{what} has no columns (shape {array.shape})")
    array = array.astype(np.float64, copy=False)
    # One reduction instead of an elementwise isfinite: a row with NaN or inf sums to NaN or inf.
    sums = array.sum(axis=1)
    if not np.isfinite(sums).all():
        bad = ~np.isfinite(array).all(axis=1)
        if bad.any():
            raise ValueError(
                f"{what} contain NaN or inf in {int(bad.sum())} of {n} rows (first: row {int(np.argmax(bad))})"
            )
    return _read_only(array), sums


def _probabilities(probs: object, n: int) -> np.ndarray:
    array, sums = _float_matrix(probs, "probs", n)
    if array.min() < 0:
        negative = (array < 0).any(axis=1)
        raise ValueError(
            f"probs must be non-negative; {int(negative.sum())} of {n} rows have negative entries "
            f"(first: row {int(np.argmax(negative))})"
        )
    off = np.abs(sums - 1.0) > PROBS_SUM_TOLERANCE
    if off.any():
        first = int(np.argmax(off))
        raise ValueError(
            f"probs rows must sum to 1 (tolerance {PROBS_SUM_TOLERANCE:g}); {int(off.sum())} of {n} rows "
            f"do not (row {first} sums to {sums[first]:.6g}); pass softmax probabilities, not logits"
        )
    return array


def _class_counts(labels: np.ndarray, name: str, min_per_class: int) -> np.ndarray:
    n = len(labels)
    if n == 0:
        raise ValueError("labels is empty: need at least 2 classes")
    if labels.min() < 0:
        raise ValueError(f"labels must be 0..C-1, got negative label {int(labels.min())}")
    if labels.max() >= n:  # C <= N when every class is present; also keeps bincount small
        raise ValueError(
            f"labels must be 0..C-1 with every class present, got label {int(labels.max())} for {n} samples"
        )
    counts = np.bincount(labels)
    if len(counts) < 2:
        raise ValueError(f"{name} needs at least 2 classes, got 1 (every label is {int(labels[0])})")
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        plural = "es" if len(missing) > 1 else ""
        raise ValueError(f"labels must be 0..C-1, missing class{plural} {_name_classes(missing)}")
    small = np.flatnonzero(counts < min_per_class)
    if len(small):
        sizes = ", ".join(f"class {c} has {counts[c]}" for c in small[:_LISTED])
        more = f" (and {len(small) - _LISTED} more)" if len(small) > _LISTED else ""
        raise ValueError(f"{name} needs at least {min_per_class} samples per class; {sizes}{more}")
    return _read_only(counts)


def _name_classes(classes: np.ndarray) -> str:
    listed = ", ".join(str(c) for c in classes[:_LISTED])
    return listed + (f" (and {len(classes) - _LISTED} more)" if len(classes) > _LISTED else "")


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view: score code can never modify the caller's arrays in place."""
    view = array.view()
    view.flags.writeable = False
    return view


def check_int_option(
    name: str,
    option: str,
    value: object,
    minimum: int,
    maximum: int | None = None,
    *,
    allow_none: bool = False,
) -> None:
    """ValueError unless ``value`` is an int in [minimum, maximum] (or None when allowed)."""
    if value is None and allow_none:
        return
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not is_int or value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(
            f"{name}: option {option} must be an integer {bounds}{' or None' if allow_none else ''}, got {value!r}"
        )
