"""``python -m automl task=<name> [bank=<name>|bank.dir=<path>] [stage=all|rank|finetune|calibrate|report]``."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from automl._cli import run_command
from automl.settings import CONF_DIR, register_run_schemas, resolve

register_run_schemas()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)

    def run_stages() -> float | None:
        # imported here: torch, timm and Lightning take seconds that --help and config errors do not need
        from automl.run.stages import run

        return run(resolve(cfg), run_dir).best_val_accuracy

    return run_command(run_stages, run_dir=run_dir,
                       hint="python -m automl --help lists the settings",
                       resume="caches, finished trials and the history are kept, a running trial continues "
                              "from its last epoch; rerun the same command to resume")


if __name__ == "__main__":
    main()
