"""``python -m benchmarks [overrides]`` (also ``python -m automl.bench`` from a checkout): the meta-benchmark's
command line (Hydra, ``benchmarks/conf/bench.yaml`` over automl's own configs)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from automl._cli import run_command
from automl.settings import resolve
from benchmarks.metabench.run import run_bench
from benchmarks.settings import BENCH_CONF_DIR


@hydra.main(version_base="1.3", config_path=str(BENCH_CONF_DIR), config_name="bench")
def main(cfg: DictConfig) -> None:
    """``python -m automl.bench [bench.targets=[digits,glyphs]] [bank=...] [bench.paper.oracle_csv=...]``."""
    def bench() -> None:
        settings = resolve(cfg)
        run_bench(settings, Path(HydraConfig.get().runtime.output_dir), publish=settings.bench.docs)

    run_command(bench, hint="python -m automl.bench --help lists the settings",
                resume="the oracle fits measured so far are in the history; rerun the same command to resume")


if __name__ == "__main__":
    main()
