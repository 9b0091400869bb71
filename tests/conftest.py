"""Shared fixtures: small real image folders written to tmp dirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, seed: int, size: int = 16, mode: str = "RGB") -> Path:
    """A real random image file (format from the suffix)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def write_image_folder(root: Path, counts: dict[str, int], suffix: str = ".png", start_seed: int = 0) -> Path:
    """root/<class>/<i><suffix> with ``counts[class]`` images per class."""
    seed = start_seed
    for name, count in counts.items():
        for i in range(count):
            write_image(root / name / f"{i:03d}{suffix}", seed)
            seed += 1
    return root


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


TINY_DATA_CONFIG = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bilinear",
                    "crop_pct": 1.0}


def write_random_bank(folder: Path, models: dict[str, tuple[str, dict]], num_classes: int,
                      num_images: int = 0) -> Path:
    """A bank of randomly initialised timm models (32 px input): ``folder/<name>.safetensors`` + ``bank.yaml``.

    ``models`` maps entry names to ``(timm architecture, create_model kwargs)``.
    """
    import safetensors.torch
    import timm
    import torch
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for seed, (name, (arch, kwargs)) in enumerate(models.items()):
        torch.manual_seed(seed)
        safetensors.torch.save_file(timm.create_model(arch, num_classes=num_classes, **kwargs).state_dict(),
                                    str(folder / f"{name}.safetensors"))
        entries.append({"name": name, "arch": arch, "weights": f"{name}.safetensors", "num_classes": num_classes,
                        "kwargs": kwargs,
                        "source": {"name": "random", "num_images": num_images, "num_classes": num_classes},
                        "data_config": TINY_DATA_CONFIG})
    (folder / "bank.yaml").write_text(yaml.safe_dump({"name": folder.name, "models": entries}))
    return folder


@pytest.fixture(scope="session")
def meta():
    """The shipped meta-benchmark's cells (read-only: tests restrict it with ``dataclasses.replace``)."""
    from automl.predictor.shipped import load_meta

    return load_meta()


@pytest.fixture(scope="session")
def small_demo_bank(tmp_path_factory) -> Path:
    """The real demo-bank recipe, shrunk: 2 architectures x 2 source datasets, 1 epoch (~10 s)."""
    from automl.bank.demo import build_demo_bank

    folder = tmp_path_factory.mktemp("small_demo_bank")
    build_demo_bank(folder, archs=["resnet", "effnet"], sources=["textures", "photos"], epochs=1)
    return folder


def run_cli(main, *args: str) -> int:
    """Run a Hydra command-line ``main`` in this process as ``python -m ... <args>``; its exit status."""
    import sys

    argv = sys.argv
    sys.argv = ["automl", *args]
    try:
        main()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
    return 0
