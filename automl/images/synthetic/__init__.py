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
scipy and matplotlib. Class names are also folder names (:func:`automl.images.tasks.materialize_builtin`
writes ``<split>/<class>/``), so the newer generators name characters by their Unicode names.
"""

# Importing the generator modules registers their datasets.
from automl.images.synthetic import (  # noqa: F401
    sources,
    sources_stimuli,
    targets,
    targets_materials,
    targets_real,
    targets_text,
)
from automl.images.synthetic.registry import SIZE, SyntheticDataset, available, generate, register

__all__ = ["SIZE", "SyntheticDataset", "available", "generate", "register"]
