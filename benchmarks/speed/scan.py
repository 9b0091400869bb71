"""The task scan on a Fashion-MNIST-shaped folder: 70k 28x28 grey PNGs in 10 class folders.

Measured in one run, each the median of ``repeats``:

* **cold** — a scan with no cache: every file read once, hashed and decoded (``automl.images.scan``), with 1
  process and with a pool of ``workers`` processes (what ``scan_workers`` picks on 2 cores);
* **warm** — the same scan again: only a ``stat`` per file against the task's scan cache;
* **reference** — what the scan must at least do: read every file and decode it with PIL, serially.

Goals (issue 13): cold <= 15 s, warm <= 2 s on 2 cores. The folder (handwritten digits,
``benchmarks/speed/_folders.py``) is generated once under ``folder`` (seeded; ~1 min) and shared with
``benchmarks/speed/fashion_run.py``.

    python -m benchmarks.speed.scan [images=70000] [repeats=3] [folder=outputs/cache/bench/fashion-70k]
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from automl.images.scan import scan_images, scan_workers
from automl.settings import MAX_PIXELS
from benchmarks._script import parse
from benchmarks.speed._folders import DIGITS_FOLDER, digit_folder


@dataclass
class Settings:
    images: int = 70000
    repeats: int = 3
    folder: str = DIGITS_FOLDER
    workers: int = 2  # the pool size measured next to the single process


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    settings = parse(Settings, __doc__)
    paths = digit_folder(Path(settings.folder), settings.images)
    megabytes = sum(path.stat().st_size for path in paths) / 1e6
    print(f"{len(paths)} PNGs, {megabytes:.1f} MB; scan_workers() would use {scan_workers(len(paths))} process(es) "
          "on this machine")
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for workers in (1, settings.workers):
            cold = []
            for repeat in range(settings.repeats):
                cache_file = Path(cache) / f"cold-{workers}-{repeat}.json"
                cold.append(timed(lambda f=cache_file, w=workers: scan_images(paths, f, MAX_PIXELS, workers=w)))
            rows.append((f"cold, {workers} process(es)", statistics.median(cold)))
        warm_file = Path(cache) / "cold-1-0.json"
        rows.append(("warm", statistics.median(timed(lambda: scan_images(paths, warm_file, MAX_PIXELS))
                                               for _ in range(settings.repeats))))
    reference = statistics.median(timed(lambda: [Image.open(io.BytesIO(p.read_bytes())).load() for p in paths])
                                  for _ in range(settings.repeats))
    rows.append(("reference: read + PIL decode", reference))
    print(f"\n{'what':<32} {'s (median)':>10}  {'/ reference':>11}")
    for name, seconds in rows:
        print(f"{name:<32} {seconds:>10.2f}  {seconds / reference:>11.2f}")
    cold = min(seconds for name, seconds in rows if name.startswith("cold"))
    warm = next(seconds for name, seconds in rows if name == "warm")
    print(f"\ncold {cold:.1f} s (goal <= 15 s), warm {warm:.2f} s (goal <= 2 s)")


if __name__ == "__main__":
    main()
