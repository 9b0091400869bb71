"""Offline image datasets: generated, or built from data that ships inside installed packages.

Two families, kept apart so that a bank pretrained on the sources is never evaluated on the images it
was trained on:

* **targets**: the builtin tasks a user (and the tests) fine-tune on:

  - ``digits``: scikit-learn's handwritten digits, 8x8 grey (the only seed-independent dataset);
  - ``glyphs``: Latin capitals rendered from matplotlib's DejaVu fonts;
  - ``shapes``: coloured geometric shapes on noisy backgrounds;
  - ``scenes``: patches of matplotlib's Grace Hopper photo, labelled by region (real photos);
  - ``materials``: procedural material textures (wood, marble, brick, weave ...);
  - ``fonts``: which of 8 font faces renders a random letter or digit (fine-grained);
  - ``fewshot``: 20 math symbols and arrows, 10 images each (few-shot);
  - ``characters``: 100 letters, symbols and currency signs, 16 images each (many classes);
  - ``terrain``: hillshaded patches of two real elevation models, labelled by region;

* **sources**: what banks of tiny models are pretrained on:

  - ``textures``: procedural patterns (stripes, checkers, rings, noise ...);
  - ``photos``: patches of scikit-learn's two sample photographs, labelled by region;
  - ``symbols``: Greek lower-case letters from the DejaVu fonts;
  - ``gratings``: Gabor and sinusoidal gratings, labelled by orientation x frequency band;
  - ``printed``: digits and arithmetic symbols in the DejaVu and STIX fonts;
  - ``counting``: 1 to 8 blobs on noisy backgrounds, labelled by count.

Images are ``SIZE`` x ``SIZE`` RGB unless noted. Every generator is a pure function of its seed:
``generate(name, seed)`` returns the same pixels on every machine with the same numpy, Pillow/FreeType,
scipy and matplotlib. Class names are also folder names (:func:`automl.tasks.materialize_builtin`
writes ``<split>/<class>/``), so the newer generators name characters by their Unicode names.
"""

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


# The generator modules register themselves on import and need the names above, hence imported last.
from automl.synthetic import (  # noqa: E402, F401
    sources,
    sources_stimuli,
    targets,
    targets_materials,
    targets_real,
    targets_text,
)

__all__ = ["SIZE", "SyntheticDataset", "available", "generate", "register"]
