"""Transferability scores: how well a pretrained model's probe-set features (or source-class
probabilities) fit a target labelling, computed without fine-tuning. Higher = better transfer.

    from automl.transferability import score, available
    available()                               # ['hscore', 'hscore_shrink', 'knn', 'leep', ...]
    score("parc", features, labels)           # features [N, D] float, labels [N] ints 0..C-1
    score("knn", features, labels, k=3)       # options are keyword arguments
    score("leep", None, labels, probs=probs)  # probs [N, Cs] source-class probabilities

Each score lives in its own module, registered with ``@register_score``; its module docstring gives
the formula, the scale, the reference code it reproduces and what it does with constant features.
``score`` validates the input once (``_validate``) and raises ValueError for bad input, TypeError for
an option the score does not have.

Scores run with BLAS and OpenMP limited to one thread (:func:`automl.threads.single_threaded`): at
probe sizes (N ~ 500) threads gain nothing and their pools fight, and one thread makes the numbers
independent of the core count (rank-based and mixture-based scores react to rounding). Parallelize
across models instead.
"""

from __future__ import annotations

from automl.threads import single_threaded

from ._registry import ScoreSpec, get_spec, register_score, registered_names
from ._validate import validate


def available() -> list[str]:
    """Names of the registered scores, sorted."""
    return registered_names()


def needs_probs(name: str) -> bool:
    """Whether ``score(name, ...)`` needs ``probs`` (source-class probabilities), e.g. leep and nce."""
    return get_spec(name).needs_probs


def score_spec(name: str) -> ScoreSpec:
    """What the registry knows about ``name``: its inputs, samples needed per class, and options."""
    return get_spec(name)


def score(name: str, features: object, labels: object, probs: object = None, **options: object) -> float:
    """Transferability score ``name`` of features [N, D] (float32/64) for labels [N] (ints 0..C-1, every
    class present); ``probs`` [N, Cs] source-class probabilities for the scores that need them (leep, nce).
    Returns a float, higher = better transfer; the scale depends on the score (see its module)."""
    spec = get_spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        known = ", ".join(spec.options) or "none"
        raise TypeError(f"score {name!r} got unknown option(s) {', '.join(unknown)}; its options: {known}")
    inputs = validate(spec, features, labels, probs)
    with single_threaded():
        return float(spec.fn(inputs, **options))


# Importing the score modules registers them.
from . import hscore, knn, leep, linear, logme, nce, ncti, nleep, parc, sfda  # noqa: E402, F401
from ._many import score_many  # noqa: E402

__all__ = ["ScoreSpec", "available", "needs_probs", "register_score", "score", "score_many", "score_spec"]
