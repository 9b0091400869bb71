"""``python -m automl task=<name> [bank=<name>|bank.dir=<path>] [stage=all|rank|finetune|calibrate|report]``."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from automl.cli import run_command
from automl.config import CONF_DIR, resolve  # importing it registers the schemas and resolvers
from automl.pipeline import run


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_command(lambda: run(resolve(cfg), Path(HydraConfig.get().runtime.output_dir)),
                       hint="python -m automl --help lists the settings",
                       resume="caches, finished trials and the history are kept, a running trial is queued "
                              "again; rerun the same command to resume")


if __name__ == "__main__":
    main()
