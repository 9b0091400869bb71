"""The offline demo bank: 4 tiny timm architectures x 3 synthetic sources, pretrained from scratch
(:mod:`automl.bank.pretrain`), so that both the architecture and the pretraining data vary across the
bank, as in the PARC paper's diverse banks. The builtin *target* tasks are never seen in pretraining.

``python -m automl.bank.demo [out=DIR] [seed=N]`` builds it (``python -m automl`` does on first use).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from automl._cli import run_command
from automl.bank.pretrain import EPOCHS, Pretraining, build_bank
from automl.settings import CONF_DIR

ARCHS = ("resnet", "effnet", "nfnet", "vit")
SOURCES = ("photos", "symbols", "textures")  # in the order of the manifest


def demo_plan(archs: Sequence[str] = ARCHS, sources: Sequence[str] = SOURCES, epochs: int = EPOCHS
              ) -> list[Pretraining]:
    """Every architecture on every source; fewer of either, or fewer epochs, give a quick bank of the same
    kind (tests)."""
    return [Pretraining(f"{arch}_{source}", arch, source, epochs) for source in sources for arch in archs]


def build_demo_bank(out_dir: str | Path, seed: int = 0, *, archs: Sequence[str] = ARCHS,
                    sources: Sequence[str] = SOURCES, epochs: int = EPOCHS) -> Path:
    """Build (or finish building) the demo bank in ``out_dir``; return the path of its ``bank.yaml``."""
    return build_bank(out_dir, "demo", demo_plan(archs, sources, epochs), seed,
                      command=f"python -m automl.bank.demo seed={seed}")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="demo_bank")
def main(cfg: DictConfig) -> None:
    """``python -m automl.bank.demo [out=DIR] [seed=N]``: build (or finish building) the demo bank."""
    settings = OmegaConf.to_object(cfg)
    print(run_command(lambda: build_demo_bank(settings.out, seed=settings.seed),
                      hint="python -m automl.bank.demo --help shows the settings",
                      resume="finished checkpoints are kept; rerun the same command to resume"))


if __name__ == "__main__":
    main()
