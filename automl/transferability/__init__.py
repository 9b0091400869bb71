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

Scores run with BLAS and OpenMP limited to one thread (:func:`automl._threads.single_threaded`): at
probe sizes (N ~ 500) threads gain nothing and their pools fight, and one thread makes the numbers
independent of the core count (rank-based and mixture-based scores react to rounding). Parallelize
across models instead.
"""

from __future__ import annotations

# Importing the score modules registers them.
from automl.transferability import hscore, knn, leep, linear, logme, nce, ncti, nleep, parc, sfda  # noqa: F401
from automl.transferability._many import score_many
from automl.transferability._registry import ScoreSpec, register_score
from automl.transferability._score import available, needs_probs, score, score_spec

__all__ = ["ScoreSpec", "available", "needs_probs", "register_score", "score", "score_many", "score_spec"]
