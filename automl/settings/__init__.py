"""Typed settings of every stage: the Hydra structured configs that the commands are composed into, each
default stated once, here, and the glue that makes them (:func:`compose`, :func:`resolve`).

Hydra checks types and unknown keys while composing; each dataclass checks its ranges, choices and
cross-field rules (:func:`rule`, :func:`check_fields`) when the composed config becomes these objects
(:func:`resolve`). Stages take these objects, never a raw config.
"""

from automl.settings._checks import SettingsError, check_fields, check_value, rule
from automl.settings._finetuning import HPARAM_NAMES, STRATEGIES, AugmentSettings, FinetuneSettings, Hparams
from automl.settings._hydra import CONF_DIR, compose, register_run_schemas, resolve
from automl.settings._ranking import (
    MAX_PIXELS,
    BankSettings,
    PredictorSettings,
    ProbeSettings,
    RankSettings,
    TaskSettings,
    task_name,
)
from automl.settings._runs import RUN_SEED, STAGES, AutomlSettings, RunSettings
from automl.settings._tools import DemoBankSettings, ExportSettings, HistorySettings, PredictSettings

__all__ = [
    "CONF_DIR",
    "HPARAM_NAMES",
    "MAX_PIXELS",
    "RUN_SEED",
    "STAGES",
    "STRATEGIES",
    "AugmentSettings",
    "AutomlSettings",
    "BankSettings",
    "DemoBankSettings",
    "ExportSettings",
    "FinetuneSettings",
    "HistorySettings",
    "Hparams",
    "PredictSettings",
    "PredictorSettings",
    "ProbeSettings",
    "RankSettings",
    "RunSettings",
    "SettingsError",
    "TaskSettings",
    "check_fields",
    "check_value",
    "compose",
    "register_run_schemas",
    "resolve",
    "rule",
    "task_name",
]
