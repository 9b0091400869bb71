"""The composed config of a run: what every run shares (:class:`RunSettings`, which the benchmarks extend)
and ``python -m automl``'s stages (:class:`AutomlSettings`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from automl.settings._checks import check_fields, rule
from automl.settings._finetuning import FinetuneSettings
from automl.settings._ranking import BankSettings, ProbeSettings, RankSettings, TaskSettings

STAGES = ("rank", "finetune", "calibrate", "report")
RUN_SEED: Any = "${seed}"  # the task's split seed and the probe's seed follow the run's unless set


def _from_env(name: str, default: str) -> Any:
    return field(default_factory=lambda: os.environ.get(name, default))


@dataclass
class RunSettings:
    """What every run shares: the seed, the device, and where caches and the shared database live."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda[:i] | mps: where features are extracted and models trained
    cache_dir: str = _from_env("AUTOML_CACHE_DIR", "outputs/cache")  # builtin tasks, banks, features
    storage: str = _from_env("AUTOML_STORAGE", "sqlite:///outputs/automl.db")  # Optuna studies + history
    task: TaskSettings = field(default_factory=lambda: TaskSettings(seed=RUN_SEED))
    bank: BankSettings = field(default_factory=lambda: BankSettings(name="demo", build="demo"))
    probe: ProbeSettings = field(default_factory=lambda: ProbeSettings(seed=RUN_SEED))
    rank: RankSettings = field(default_factory=RankSettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)


@dataclass
class AutomlSettings(RunSettings):
    """``python -m automl``: the stages to run and the search space of the finetune stage."""

    stage: str = field(default="all", metadata=rule(choices=("all", *STAGES)))
    search_space: dict[str, Any] = field(default_factory=dict)  # conf/search_space: Optuna distributions

    def __post_init__(self) -> None:
        check_fields(self, "")

    @property
    def stages(self) -> tuple[str, ...]:
        return STAGES if self.stage == "all" else (self.stage,)
