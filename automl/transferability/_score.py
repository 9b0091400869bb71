"""The scores' common entry points: look a score up in the registry, validate its input once, run it
single-threaded."""

from __future__ import annotations

from automl._threads import single_threaded
from automl.transferability._registry import ScoreSpec, get_spec, registered_names
from automl.transferability._validate import validate


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
