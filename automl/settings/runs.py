"""The two composed configs: a pipeline run (``python -m automl``) and a benchmark run
(``python -m automl.bench``), each the settings of its stages plus where state lives."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from automl.settings.checks import SettingsError, check_fields, rule
from automl.settings.finetuning import AugmentSettings, FinetuneSettings, Hparams
from automl.settings.ranking import BankSettings, ProbeSettings, RankSettings, TaskSettings

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


@dataclass
class OracleSettings:
    """The benchmark's fixed fine-tuning recipe (no search): every model trained alike on every target.
    (How fits run: ``finetune.precision``, ``num_workers``, ``limit_train_batches``, ``torch_threads``.)"""

    hparams: Hparams = field(default_factory=lambda: Hparams(lr=3e-3, epochs=30, label_smoothing=0.0))
    augment: AugmentSettings = field(default_factory=lambda: AugmentSettings(scale=[0.7, 1.0]))


@dataclass
class PaperSettings:
    """The PARC paper's released oracle CSV and probe sets (dbolya/parc), instead of a bank."""

    oracle_csv: str | None = None  # columns Architecture,Source Dataset,Target Dataset,Oracle
    probes_dir: str | None = None  # <arch>_<source>_<target>_<run>.pkl (or .npz twins); runs = probe_seeds
    targets: list[str] | None = None  # null: every target of the CSV that has probe sets
    depth: dict[str, int] = field(default_factory=lambda: {  # weight layers (dbolya/parc constants.model_layers)
        "resnet50": 50, "resnet18": 18, "googlenet": 22, "alexnet": 8, "resnet101": 101})


META_TARGETS = ("digits", "glyphs", "shapes", "scenes", "materials", "fonts", "fewshot", "characters", "terrain")


@dataclass
class BenchSettings:
    """The benchmark's own block (``bench.*``)."""

    mode: str = field(default="ranking", metadata=rule(choices=("ranking", "build", "end_to_end")))
    data: str = field(default="meta", metadata=rule(choices=("meta", "bank", "paper")))  # what ranking mode ranks
    meta_dir: str | None = None  # the meta-benchmark's data (null: the copy shipped in automl/data/metabench)
    banks: list[str] | None = None  # build and end_to_end modes: the meta-benchmark banks (null: all)
    pipeline: list[str] = field(default_factory=list)  # end_to_end mode: overrides of python -m automl's defaults
    targets: list[Any] = field(default_factory=lambda: list(META_TARGETS))  # task names or mappings
    probe_seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # one probe set per seed
    oracle: OracleSettings = field(default_factory=OracleSettings)
    plasticity: list[str] | None = None  # scores ensembled with depth/50 (null: every score, []: none)
    scatter: list[str] | None = None  # methods in scatter.png (null: linear, knn, parc and the predictor)
    trust_pickle: bool = False  # the paper's probe sets are pickles, which run code when loaded
    paper: PaperSettings = field(default_factory=PaperSettings)

    def __post_init__(self) -> None:
        check_fields(self, "bench")
        seeds = self.probe_seeds
        if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise SettingsError(f"bench.probe_seeds={list(seeds)} must be a non-empty list of distinct integers >= 0")
        if not self.targets:
            raise SettingsError("bench.targets must be a non-empty list of task config names or mappings")


@dataclass
class BenchRunSettings(RunSettings):
    """``python -m automl.bench``."""

    bench: BenchSettings = field(default_factory=BenchSettings)
