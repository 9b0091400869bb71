"""Fine-tuning stage: an Optuna study over (top-k bank model x hyperparameters), each trial a Lightning fit.

``run_finetune(task, candidates, settings, search_space, storage=..., device=..., seed=..., run_dir=...)``
runs (or joins, or resumes) the study and exports the best model; ``load_outcome`` reads an existing
study's outcome without training or writing anything; ``fit_once`` is the one fit both a trial and the
benchmarks' fixed recipe run. Budget, resume and scale-out semantics: :mod:`automl.finetune.search`.
"""

from automl.finetune.fit import FitResult, fit_once, predict_split, quiet_libraries, torch_threads
from automl.finetune.results import FinetuneOutcome, Refit, TrialResult
from automl.finetune.search import load_outcome, run_finetune
from automl.finetune.space import SearchSpace, check_search

__all__ = ["FinetuneOutcome", "FitResult", "Refit", "SearchSpace", "TrialResult", "check_search", "fit_once",
           "load_outcome", "predict_split", "quiet_libraries", "run_finetune", "torch_threads"]
