"""Shared helpers and fixtures: small real image folders and banks written to tmp dirs, and the quick
pipeline run (``debug=quick``) the end-to-end tests start, in this process or as a command.

The test folders mirror the package (tests/<stage>/ tests automl/<stage>/, tests/benchmarks/ the research
under benchmarks/); they import these helpers as ``from conftest import ...`` (pytest puts tests/ on the
path for this file), so a test file's name must be unique across the folders."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


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


def huge_png(path: Path, side: int = 14000) -> Path:
    """A valid PNG header claiming ``side`` x ``side`` grey pixels, with almost no data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------------------------- the quick run
def quick_overrides(bank: Path, work: Path, *extra: str, cache: Path | None = None) -> list[str]:
    """The overrides of a quick run on the bank folder ``bank``: ``debug=quick`` (conf/debug/quick.yaml: on
    the CPU with one thread, a 100-image probe, trials of 2 epochs of 2 batches), the bank never built, and
    the run's state (cache, SQLite database of the history and Optuna, trial artifacts) under ``work``, or
    the cache in ``cache`` when a module's tests share one. ``extra`` comes last: a test that needs other
    values (longer trials, another probe budget) overrides the quick ones there."""
    return [f"bank.dir={bank}", "bank.build=null", f"cache_dir={cache or work / 'cache'}",
            f"storage=sqlite:///{work}/automl.db", f"finetune.artifacts_dir={work}/artifacts", "debug=quick", *extra]


def run_pipeline(overrides: list[str], run_dir: Path):
    """The pipeline in this process, as ``python -m automl <overrides> hydra.run.dir=<run_dir>`` runs it."""
    from automl.run.stages import run
    from automl.settings import compose, resolve

    return run(resolve(compose(overrides)), run_dir)


def automl_command(*args: str, cwd: Path, module: str = "automl") -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` from ``cwd`` in a subprocess (one OpenMP thread, 160 columns)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)
