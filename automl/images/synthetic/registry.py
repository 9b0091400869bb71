"""The registry of builtin datasets: generators register under a name and a kind; ``generate`` runs one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

SIZE = 32  # side of every generated image, in pixels (digits keep their native 8x8)


@dataclass(frozen=True)
class SyntheticDataset:
    """A generated labelled dataset: ``images[i]`` (RGB or L PIL image) has class ``classes[labels[i]]``."""

    images: list[Image.Image]
    labels: np.ndarray  # [N] int64, indices into classes
    classes: tuple[str, ...]


Maker = Callable[[np.random.Generator], SyntheticDataset]
_REGISTRY: dict[str, tuple[str, Maker]] = {}  # name -> (kind, maker)


def register(kind: str) -> Callable[[Maker], Maker]:
    """Decorator: register ``_make_<name>`` as dataset ``name`` of ``kind`` ("target" or "source")."""

    def wrap(make: Maker) -> Maker:
        _REGISTRY[make.__name__.removeprefix("_make_")] = (kind, make)
        return make

    return wrap


def available(kind: str | None = None) -> list[str]:
    """Names of the generators, optionally only ``kind="target"`` or ``kind="source"``."""
    return sorted(name for name, (gen_kind, _) in _REGISTRY.items() if kind in (None, gen_kind))


def generate(name: str, seed: int = 0) -> SyntheticDataset:
    """Generate dataset ``name`` deterministically from ``seed``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown builtin dataset {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name][1](np.random.default_rng(seed))
