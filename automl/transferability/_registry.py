"""Score registry in timm's style: each score module decorates its function with ``@register_score``.

The registry records, next to the function, what the boundary validation needs to know about it:
whether it reads ``features`` and/or ``probs``, how many samples per class it needs, and its
keyword-only options (read from the signature, so an unknown option is caught before any work).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

ScoreFn = Callable[..., float]


@dataclass(frozen=True)
class ScoreSpec:
    """What the registry knows about one score."""

    name: str
    fn: ScoreFn  # fn(inputs: Inputs, **options) -> float
    uses_features: bool  # False for scores computed from source probabilities alone (leep, nce)
    needs_probs: bool  # needs probs [N, Cs] source-class probabilities
    min_per_class: int  # samples every class must have
    options: tuple[str, ...]  # keyword-only parameters of fn


_REGISTRY: dict[str, ScoreSpec] = {}


def register_score(
    name: str, *, uses_features: bool = True, needs_probs: bool = False, min_per_class: int = 1
) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator that registers ``fn(inputs: Inputs, *, option=default, ...) -> float`` under ``name``."""

    def decorator(fn: ScoreFn) -> ScoreFn:
        if name in _REGISTRY:
            raise ValueError(f"transferability score {name!r} is registered twice")
        params = list(inspect.signature(fn).parameters.values())
        options = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)
        if len(params) - len(options) != 1:
            raise TypeError(f"score {name!r}: expected fn(inputs, *, options...), got {fn.__name__}{params}")
        _REGISTRY[name] = ScoreSpec(name, fn, uses_features, needs_probs, min_per_class, options)
        return fn

    return decorator


def get_spec(name: str) -> ScoreSpec:
    """The registered spec of ``name``; ValueError listing the available names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown transferability score {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


__all__ = ["ScoreSpec", "get_spec", "register_score", "registered_names"]
