"""Typed settings of ``python -m automl.bench`` (``benchmarks/conf/bench.yaml``): a run's settings
(:class:`automl.settings.RunSettings`) plus the benchmark's own block, ``bench.*``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from automl.settings import (
    CONF_DIR,
    AugmentSettings,
    Hparams,
    RunSettings,
    SettingsError,
    check_fields,
    compose,
    register_run_schemas,
    rule,
)

BENCH_CONF_DIR = Path(__file__).resolve().parent / "conf"  # bench.yaml; its groups are automl's (CONF_DIR)


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
    meta_dir: str | None = None  # the meta-benchmark's data (null: the copy automl ships, automl/predictor/metabench)
    banks: list[str] | None = None  # build and end_to_end modes: the meta-benchmark banks (null: all)
    pipeline: list[str] = field(default_factory=list)  # end_to_end mode: overrides of python -m automl's defaults
    targets: list[Any] = field(default_factory=lambda: list(META_TARGETS))  # task names or mappings
    probe_seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # one probe set per seed
    oracle: OracleSettings = field(default_factory=OracleSettings)
    plasticity: list[str] | None = None  # scores ensembled with depth/50 (null: every score, []: none)
    scatter: list[str] | None = None  # methods in scatter.png (null: linear, knn, parc and the predictor)
    trust_pickle: bool = False  # the paper's probe sets are pickles, which run code when loaded
    docs: bool = True  # the command also writes the figures' page of docs/results/ (ranking.md, end-to-end.md)
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


register_run_schemas()
ConfigStore.instance().store(name="bench_schema", node=BenchRunSettings)
OmegaConf.register_new_resolver("automl_conf_dir", lambda: str(CONF_DIR), replace=True)


def compose_bench(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The config ``python -m automl.bench <overrides>`` runs with (automl's compose with bench.yaml)."""
    return compose(overrides, config_name="bench", return_hydra_config=return_hydra_config, config_dir=BENCH_CONF_DIR)
