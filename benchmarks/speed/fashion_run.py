"""One whole ``python -m automl`` run on a Fashion-MNIST-shaped folder: 70k 28x28 grey PNGs, 10 classes.

The folder holds handwritten digits (``benchmarks/speed/_folders.py``, also what ``benchmarks/speed/scan.py`` scans), made
once under ``folder`` (seeded). The run uses a
3-model bank (resnet, effnet, nfnet pretrained on textures, made once under ``bank``) so every model is a
candidate whatever the ranking says, and any ``args`` passed through, so the same settings can be run by
another checkout of automl (``code=<its folder>``) for a before/after comparison. Printed: wall time,
peak memory of the run's process and the exported model's test accuracy (the run's own log has
the stages' seconds).

    python -m benchmarks.speed.fashion_run [images=70000] [code=.] [args="finetune.n_trials=6 ..."]
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from automl.bank.demo import build_demo_bank
from benchmarks._script import parse
from benchmarks.speed._folders import DIGITS_FOLDER, digit_folder


@dataclass
class Settings:
    images: int = 70000
    folder: str = DIGITS_FOLDER
    bank: str = "outputs/cache/bench/fashion-bank"
    code: str = "."  # the automl checkout that runs (its own package and conf/)
    args: str = ""  # more overrides for python -m automl, as one string
    out: str = "outputs/bench/fashion_run"


def main() -> None:
    settings = parse(Settings, __doc__)
    folder = Path(settings.folder).resolve()
    digit_folder(folder, settings.images)
    bank = Path(settings.bank).resolve()
    build_demo_bank(bank, archs=["resnet", "effnet", "nfnet"], sources=["textures"])
    out = Path(settings.out).resolve()
    run_dir = out / time.strftime("%Y-%m-%d_%H-%M-%S")
    # args first: Hydra's flags (--config-dir ...) must precede the overrides
    command = [sys.executable, "-m", "automl", *shlex.split(settings.args), "task=folder", f"task.root={folder}",
               "task.image_size=32", f"bank.dir={bank}", f"cache_dir={out / 'cache'}",
               f"storage=sqlite:///{out / 'automl.db'}", f"finetune.artifacts_dir={out / 'artifacts'}",
               "finetune.progress_bar=false", f"hydra.run.dir={run_dir}"]
    code = Path(settings.code).resolve()
    print("running:", shlex.join(command), f"(code: {code})", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=code, env={**os.environ, "PYTHONPATH": str(code)})
    wall = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    print(f"exit {result.returncode}; wall {wall / 60:.0f} min {wall % 60:.0f} s; peak memory {peak_gb:.2f} GB")
    best = run_dir / "best" / "config.json"
    if best.is_file():
        exported = json.loads(best.read_text())
        print("exported:", {key: value for key, value in exported.items() if "accuracy" in key or key == "arch"})
    print(f"run folder: {run_dir}")


if __name__ == "__main__":
    main()
