"""The search space (``conf/search_space``) as Optuna distributions plus fixed values, and the model
categorical over the candidates."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from automl.finetune.attrs import MODEL_PARAM
from automl.settings import HPARAM_NAMES, FinetuneSettings, Hparams, SettingsError

log = logging.getLogger(__name__)


class SearchSpace:
    """``conf/search_space`` parsed: Optuna distributions plus fixed values, and the model categorical.

    Each entry is ``{type: float|int, low, high, log?, step?}``, ``{type: categorical, choices: [...]}``
    or a plain scalar (fixed). Names must be :class:`Hparams` fields.
    """

    def __init__(self, spec: Mapping[str, Any], models: Sequence[str]):
        self.spec = dict(spec)
        self.distributions: dict[str, BaseDistribution] = {MODEL_PARAM: CategoricalDistribution(list(models))}
        self.fixed: dict[str, Any] = {}
        for name, value in self.spec.items():
            if name not in HPARAM_NAMES:
                raise SettingsError(f"search_space.{name}: not a hyperparameter; known: {list(HPARAM_NAMES)}")
            if isinstance(value, Mapping):
                self.distributions[name] = _distribution(value, f"search_space.{name}")
            else:
                self.fixed[name] = value

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's values for every distribution (enqueued fixed params are honoured by Optuna)."""
        values = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, FloatDistribution):
                values[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
            elif isinstance(dist, IntDistribution):
                values[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
            else:
                values[name] = trial.suggest_categorical(name, dist.choices)
        return values

    def enqueueable(self, config: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The entries of ``config`` that fix a searched parameter to an allowed value; others are dropped
        (fixed hyperparameters silently, unknown names and values outside the space with a warning)."""
        params = {}
        for name, value in config.items():
            dist = self.distributions.get(name)
            if dist is None:
                if name not in HPARAM_NAMES:
                    log.warning("%s: %r is not a hyperparameter; ignored", where, name)
                continue
            try:
                allowed = dist._contains(dist.to_internal_repr(value))
            except (ValueError, TypeError):
                allowed = False
            if allowed:
                params[name] = value
            else:
                log.warning("%s: %s=%r is outside the search space; the sampler chooses it", where, name, value)
        return params


def _distribution(spec: Mapping[str, Any], where: str) -> BaseDistribution:
    kind = spec.get("type")
    keys = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
            "categorical": {"type", "choices"}}
    if kind not in keys:
        raise SettingsError(f"{where}: type must be float, int or categorical, got {kind!r}")
    unknown = sorted(set(spec) - keys[kind])
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {unknown} for type {kind}; known: {sorted(keys[kind])}")
    try:
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list | tuple) or not choices:
                raise ValueError("choices must be a non-empty list")
            return CategoricalDistribution(list(choices))
        if "low" not in spec or "high" not in spec:
            raise ValueError("low and high are required")
        if kind == "float":
            return FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)),
                                     step=None if spec.get("step") is None else float(spec["step"]))
        return IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)),
                               step=int(spec.get("step") or 1))
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{where}: {exc}") from exc


def check_search(settings: FinetuneSettings, search_space: Mapping[str, Any], models: Sequence[str]) -> SearchSpace:
    """The parsed search space over ``models``, checked against the settings (before any work is done)."""
    if not models:
        raise SettingsError("finetune: no candidate models")
    if len(set(models)) != len(models):
        raise SettingsError(f"finetune: duplicate candidate names {list(models)}")
    space = SearchSpace(search_space, models)
    Hparams.from_mapping({**settings.default_hparams.as_dict(), **space.fixed}, where="search_space")
    epochs = space.distributions.get("epochs")
    planned = (epochs.choices if isinstance(epochs, CategoricalDistribution) else [epochs.high] if epochs
               else [space.fixed.get("epochs", settings.default_hparams.epochs)])
    if max(planned) > settings.max_epochs:
        raise SettingsError(f"search_space.epochs reaches {max(planned)} > finetune.max_epochs={settings.max_epochs}")
    return space
