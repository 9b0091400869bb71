"""``python -m automl.bench [overrides]``: the benchmark's command line (Hydra, ``conf/bench.yaml``)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from automl.bench.run import run_bench
from automl.bench.settings import BenchError


@hydra.main(version_base="1.3", config_path="../../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    """``python -m automl.bench [bench.targets=[digits,glyphs]] [bank=...] [bench.paper.oracle_csv=...]``."""
    try:
        run_bench(cfg, Path(HydraConfig.get().runtime.output_dir))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
