"""Fine-tuning stage: an Optuna study over (top-k bank model x hyperparameters), each trial a Lightning fit.

``run_finetune(cfg, task, candidates, run_dir, storage=...)`` runs (or joins, or resumes) the study and
exports the best model; ``load_outcome`` summarises an existing study without training. Budget, resume
and scale-out semantics: :mod:`automl.finetune.search`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automl.finetune.search import FinetuneOutcome, TrialResult, load_outcome, run_finetune

__all__ = ["FinetuneOutcome", "TrialResult", "load_outcome", "run_finetune"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m automl.finetune.search` does not import the module twice.
    if name in __all__:
        from automl.finetune import search

        return getattr(search, name)
    raise AttributeError(f"module 'automl.finetune' has no attribute {name!r}")
