"""``python -m automl task=<name> [bank=<name>|bank.dir=<path>] [stage=all|rank|finetune|calibrate|report]``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from automl import config  # noqa: F401  (registers the ${task_name:...} resolver before Hydra composes)
from automl.pipeline import run


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        return run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except KeyboardInterrupt:
        print("interrupted: caches, finished trials and the history are kept, a running trial is queued again; "
              "rerun the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
