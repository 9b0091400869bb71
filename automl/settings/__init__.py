"""Typed settings of every stage: the Hydra structured configs that ``python -m automl`` and
``python -m automl.bench`` are composed into (registered in Hydra's ConfigStore by
:mod:`automl.config`), each default stated once, here.

Hydra checks types and unknown keys while composing; each dataclass checks its ranges, choices and
cross-field rules (:mod:`automl.settings.checks`) when the composed config becomes these objects
(:func:`automl.config.resolve`). Stages take these objects, never a raw config.
"""

from automl.settings.checks import SettingsError
from automl.settings.finetuning import HPARAM_NAMES, AugmentSettings, FinetuneSettings, Hparams
from automl.settings.ranking import (
    BankSettings,
    PredictorSettings,
    ProbeSettings,
    RankSettings,
    TaskSettings,
    task_name,
)
from automl.settings.runs import (
    META_TARGETS,
    STAGES,
    AutomlSettings,
    BenchRunSettings,
    BenchSettings,
    OracleSettings,
    PaperSettings,
    RunSettings,
)

__all__ = [
    "HPARAM_NAMES", "META_TARGETS", "STAGES", "AugmentSettings", "AutomlSettings", "BankSettings", "BenchRunSettings",
    "BenchSettings", "FinetuneSettings", "Hparams", "OracleSettings", "PaperSettings", "PredictorSettings",
    "ProbeSettings", "RankSettings", "RunSettings", "SettingsError", "TaskSettings", "task_name",
]
