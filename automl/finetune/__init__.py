"""Fine-tuning stage: an Optuna study over (top-k bank model x hyperparameters), each trial a Lightning fit.

``run_finetune(task, candidates, settings, search_space, storage=..., device=..., seed=..., run_dir=...)``
runs (or joins, or resumes) the study and exports the best model; ``load_outcome`` summarises an
existing study without training. Budget, resume and scale-out semantics: :mod:`automl.finetune.search`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automl.finetune.outcome import FinetuneOutcome, TrialResult
    from automl.finetune.search import load_outcome, run_finetune

__all__ = ["FinetuneOutcome", "TrialResult", "load_outcome", "run_finetune"]


def __getattr__(name: str) -> Any:
    # Lazy: importing a light submodule (attrs, space) does not import Lightning and Optuna's integration.
    if name in ("FinetuneOutcome", "TrialResult"):
        from automl.finetune import outcome

        return getattr(outcome, name)
    if name in ("load_outcome", "run_finetune"):
        from automl.finetune import search

        return getattr(search, name)
    raise AttributeError(f"module 'automl.finetune' has no attribute {name!r}")
