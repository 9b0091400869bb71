"""How long ``python -m automl.predict`` takes to start, against what importing torch and timm alone costs.

    python -m benchmarks.speed.startup [repeats=5] [docs=true]

Each command runs ``repeats`` times as a fresh process (medians; wall time and the process's peak resident
memory): ``import torch, timm`` (the floor: a predictor needs both), ``python -m automl.predict --help``, and
``python -m automl.predict`` on one image with a tiny exported model (made here: a random test_resnet at
32 px, so the model costs nothing and what is measured is start-up). Writes docs/results/startup.md.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks._pages import write_page
from benchmarks._script import parse


@dataclass
class Settings:
    repeats: int = 5
    docs: bool = True  # write docs/results/startup.md


def tiny_export(folder: Path) -> tuple[Path, Path]:
    """An exported model folder (random test_resnet, 32 px, 3 classes) and one image to classify."""
    import safetensors.torch
    import timm

    from automl.deploy import export_model

    weights = folder / "weights.safetensors"
    safetensors.torch.save_file(timm.create_model("test_resnet", num_classes=3).state_dict(), str(weights))
    data = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bilinear",
            "crop_pct": 1.0, "crop_mode": "center"}
    model = export_model(folder / "best", weights, {"arch": "test_resnet", "kwargs": {}, "num_classes": 3,
                                                    "classes": ["a", "b", "c"], "data_config": data})
    image = folder / "one.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(image)
    return model, image


def measure(command: list[str], repeats: int) -> tuple[float, float]:
    """Median wall seconds and median peak RSS (MB) of ``command`` run ``repeats`` times, each alone (the
    peak from GNU time's %M, the process's maximum resident set in KB)."""
    seconds, megabytes = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], check=True, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        megabytes.append(int(done.stderr.strip().splitlines()[-1]) / 1024)
    return statistics.median(seconds), statistics.median(megabytes)


def main() -> None:
    settings = parse(Settings, __doc__)
    with tempfile.TemporaryDirectory() as folder:
        model, image = tiny_export(Path(folder))
        commands = {
            "import torch, timm (the floor)": [sys.executable, "-c", "import torch, timm"],
            "python -m automl.predict --help": [sys.executable, "-m", "automl.predict", "--help"],
            "python -m automl.predict, one image": [sys.executable, "-m", "automl.predict", f"model={model}",
                                                   f"images={image}", f"out={folder}/p.csv"],
        }
        figures = {name: measure(command, settings.repeats) for name, command in commands.items()}
    floor_s, floor_mb = figures["import torch, timm (the floor)"]
    rows = [f"| {name} | {s:.2f} | {s / floor_s:.2f} | {mb:.0f} | {mb - floor_mb:+.0f} |"
            for name, (s, mb) in figures.items()]
    table = "\n".join(["| command | seconds (median) | / floor | peak RSS (MB) | - floor (MB) |",
                       "|---|---:|---:|---:|---:|", *rows])
    print(table)
    if settings.docs:
        note = (f"Medians of {settings.repeats} fresh processes each, one at a time; peak RSS is each "
                "process's maximum resident set (GNU time). The floor is what any predictor built on torch and "
                "timm pays before it does anything.")
        print(write_page("startup", "Start-up of automl.predict", f"{note}\n\n{table}"))


if __name__ == "__main__":
    main()
