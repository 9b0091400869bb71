"""The decoded-pixel cache against decoding on the fly (issue 35.2): throughput and memory of both paths.

    OMP_NUM_THREADS=1 python -m benchmarks.speed.pixel_paths [sizes=[2000,20000]] [batches=300] [fit_batches=20]

A task of ``max(sizes)`` crops of real photographs (150-600 px, JPEG and PNG, a third grey;
``benchmarks.speed.realistic.build_task``, made once under ``folder`` in one part per core) and, for each of
``sizes``, a CSV task of its first images (train/val/test carved 70/15/15). Each path runs on each task in a
fresh process, with an empty pixel cache:

* **cached** (``finetune.pixel_cache_gb=null``): the splits decoded once into ``cache_dir/pixels/`` (the
  decoding time and the folder's size are reported), then memory-mapped; the loader runs in the process.
* **streaming** (``finetune.pixel_cache_gb=0``): nothing cached; the loader's worker processes
  (``finetune.num_workers=auto``) decode each batch.

In that process: ``batches`` training batches through the loader and the batch augmentation on the CPU
(images/s; the first batch, which starts the workers, left out; they persist through the epochs), then a real
trial (``fit_once``: ``fit_batches`` training batches of ``arch`` at 224 px, the whole validation split, the
test split). Memory: the process's peak RSS (the kernel's), its peak anonymous memory and the loader workers'
peak memory of their own (:class:`MemoryPeak`). Writes docs/results/pixel-paths.md.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from automl.bank import create_model, load_bank, resolve_data_config
from automl.finetune import fit_once, quiet_libraries
from automl.finetune.data import TaskDataModule, resolve_num_workers
from automl.images import load_task
from automl.images.pixels import cache_bytes
from automl.settings import AugmentSettings, BankSettings, FinetuneSettings, Hparams, TaskSettings
from benchmarks._pages import write_page
from benchmarks._script import parse
from benchmarks.speed.realistic import build_bank, build_task

PATHS = {"cached": None, "streaming": 0.0}  # path -> finetune.pixel_cache_gb


@dataclass
class Settings:
    sizes: list[int] = field(default_factory=lambda: [2000, 20000])  # images in each task measured
    batches: int = 300  # training batches read through the loader and the augmentation, per path and size
    fit_batches: int = 20  # training batches of the trial (then its validation and test)
    batch_size: int = 32
    arch: str = "mobilenetv3_small_050"  # the trial's model (random weights; 224 px)
    threads: int = 1  # torch threads of the main process (the loader's workers take the other cores)
    folder: str = "outputs/cache/bench/pixel-paths"
    docs: bool = True  # write docs/results/pixel-paths.md


def photo_tasks(folder: Path, sizes: list[int]) -> dict[int, Path]:
    """``folder/photos-<n>.csv`` (``path,label``) per size: the first n of ``max(sizes)`` photographs, made in
    one part per core (``part-<i>/``, seeded by ``i``; each part is made once)."""
    parts = max(1, min(os.cpu_count() or 1, 4))
    per_part = -(-max(sizes) // parts)
    with ProcessPoolExecutor(parts) as pool:
        roots = list(pool.map(build_task, [folder / f"part-{i}" for i in range(parts)], [per_part] * parts,
                              range(parts)))
    images = sorted((path for root in roots for path in root.glob("*/*.*")),
                    key=lambda path: (path.stem, path.parent.parent.name))  # interleave the parts
    tasks = {}
    for size in sizes:
        tasks[size] = folder / f"photos-{size}.csv"
        with tasks[size].open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            writer.writerows([path.relative_to(folder), path.parent.name] for path in images[:size])
    return tasks


class MemoryPeak:
    """Peaks sampled by a thread: this process's anonymous memory (``RssAnon`` of /proc/self/status, every
    0.1 s: a counter, cheap to read) and the memory its children, the loader's workers, hold of their own
    (unique set size: the pages no other process maps, which their exit would free; /proc/<pid>/smaps_rollup,
    every second: reading it walks the process's pages and slows it down)."""

    def __init__(self):
        self.anonymous, self.workers = 0, 0  # bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(0.1):
            status = Path("/proc/self/status").read_text().split("RssAnon:")[1].split()[0]
            self.anonymous = max(self.anonymous, int(status) * 1024)
            tick += 1
            if tick % 10 == 0:
                rollups = [_rollup(pid) for pid in _tree(os.getpid())[1:]]
                workers = sum(r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in rollups)
                self.workers = max(self.workers, workers)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the loader's worker processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(grandchild for child in children for grandchild in _tree(int(child)))]


def _rollup(pid: int) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup`` in bytes (empty if the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    except OSError:
        return {}
    return {name.rstrip(":"): int(kb) * 1024 for name, kb, *_ in (line.split() for line in lines)}


def read_rate(datamodule: TaskDataModule, batches: int) -> float:
    """Images/s of ``batches`` training batches through the loader and ``datamodule``'s augmentation (on the
    CPU), the first batch left out; epochs follow each other as in a fit."""
    loader = datamodule.train_dataloader()
    images, done, start = 0, 0, None
    while done < batches:
        for pixels, labels in loader:
            datamodule.augment(pixels)
            if start is None:
                start = time.perf_counter()
                continue
            images, done = images + len(labels), done + 1
            if done == batches:
                break
    return images / (time.perf_counter() - start)


def measure(path: str, task_csv: Path, folder: Path, settings: Settings) -> dict[str, float]:
    """One path on one task, in this process (a fresh one): see the module docstring."""
    torch.set_num_threads(settings.threads)
    entry = load_bank(BankSettings(dir=str(folder / "bank")), folder / "cache").entries[0]
    data_config = resolve_data_config(entry, create_model(entry))
    limit = PATHS[path]
    with MemoryPeak() as peak, tempfile.TemporaryDirectory(dir=folder) as cache:
        task = dataclasses.replace(load_task(TaskSettings(csv=str(task_csv)), folder / "cache"), cache_dir=Path(cache))
        datamodule = TaskDataModule(task, data_config, settings.batch_size, augment=AugmentSettings(),
                                    pixel_cache_gb=limit)
        start = time.perf_counter()
        for split in ("train", "val", "test"):
            datamodule.pixels(split)  # the cached path decodes its splits here
        decoded = time.perf_counter() - start
        rate = read_rate(datamodule, settings.batches)
        start = time.perf_counter()
        with quiet_libraries():
            fit_once(entry, task, Hparams(epochs=1, batch_size=settings.batch_size, warmup_epochs=0),
                     FinetuneSettings(limit_train_batches=settings.fit_batches, progress_bar=False,
                                      pixel_cache_gb=limit))
        fit = time.perf_counter() - start
        disk = cache_bytes(Path(cache) / "pixels")
    workers = resolve_num_workers("auto", streaming=limit == 0)
    return {"images": sum(len(split) for split in task.splits.values()), "train": len(task.splits["train"]),
            "decoded_s": decoded, "disk_gb": disk / 1e9, "rate": rate, "fit_s": fit, "workers": workers,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "anon_mb": peak.anonymous / 1e6,
            "workers_mb": peak.workers / 1e6, "load": os.getloadavg()[0]}


def in_fresh_process(path: str, task_csv: Path, folder: Path, settings: Settings) -> dict[str, float]:
    """:func:`measure` in a new interpreter, started as a user's run starts (its loader's workers forked or
    spawned as this platform does by default), so that its peak memory is its own."""
    args = json.dumps([path, str(task_csv), str(folder), dataclasses.asdict(settings)])
    done = subprocess.run([sys.executable, "-c", _CHILD, args], check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.splitlines()[-1])


_CHILD = "import sys; from benchmarks.speed.pixel_paths import child; child(sys.argv[1])"


def child(args: str) -> None:
    """:func:`measure` of the JSON ``[path, task_csv, folder, settings]``; its figures printed as JSON."""
    path, task_csv, folder, settings = json.loads(args)
    print(json.dumps(measure(path, Path(task_csv), Path(folder), Settings(**settings))))


def summary(figures: dict[tuple[int, str], dict[str, float]]) -> str:
    """The ratios the table's rows imply: streaming against cached throughput per size, and what grows from
    the smallest size to the largest."""
    sizes = sorted({size for size, _ in figures})
    lines = ["- streaming / cached, loader + augmentation: " + ", ".join(
        f"{figures[size, 'streaming']['rate'] / figures[size, 'cached']['rate']:.2f} at {size} images"
        for size in sizes)]
    small, large = sizes[0], sizes[-1]
    for path in PATHS:
        a, b = figures[small, path], figures[large, path]
        lines.append(f"- {path}, {small} → {large} images: main process anonymous memory "
                     f"{b['anon_mb'] - a['anon_mb']:+.0f} MB, workers {b['workers_mb'] - a['workers_mb']:+.0f} MB, "
                     f"main process peak RSS {b['rss_mb'] - a['rss_mb']:+.0f} MB, cache on disk "
                     f"{a['disk_gb']:.2f} → {b['disk_gb']:.2f} GB")
    return "\n".join(lines)


def main() -> None:
    settings = parse(Settings, __doc__)
    folder = Path(settings.folder).resolve()
    start = time.perf_counter()
    tasks = photo_tasks(folder, settings.sizes)
    build_bank(folder / "bank", [settings.arch])
    for task_csv in tasks.values():
        load_task(TaskSettings(csv=str(task_csv)), folder / "cache")  # scanned once, before any measurement
    print(f"{max(settings.sizes)} photographs ready in {time.perf_counter() - start:.0f} s", flush=True)
    figures = {}
    for size, task_csv in tasks.items():
        for path in PATHS:
            figures[size, path] = in_fresh_process(path, task_csv, folder, settings)
            print(f"{path}, {size} images: {figures[size, path]}", flush=True)
    rows = [f"| {path} | {f['images']:.0f} ({f['train']:.0f} train) | {f['workers']:.0f} | {f['decoded_s']:.0f} | "
            f"{f['disk_gb']:.2f} | {f['rate']:.0f} | {f['fit_s']:.0f} | {f['rss_mb']:.0f} | {f['anon_mb']:.0f} | "
            f"{f['workers_mb']:.0f} | {f['load']:.1f} |" for (_, path), f in figures.items()]
    table = "\n".join([
        "| path | images | loader workers | decoding into the cache (s) | cache on disk (GB) | "
        "loader + augmentation (images/s) | trial (s) | main process: peak RSS (MB) | of it anonymous (MB) | "
        "workers: peak USS (MB) | load average |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows])
    note = (f"{os.cpu_count()} cores, shared (the load average, over the minute before each row ended, says "
            f"how much); torch threads {settings.threads} in the main process; batch size {settings.batch_size}; "
            f"{settings.batches} training batches read per row; the trial is `fit_once` of {settings.arch} "
            f"(random weights, 224 px) for {settings.fit_batches} training batches, then its whole validation and "
            "test splits. Main process peak RSS: the kernel's high-water mark, which counts the pages of the "
            "memory-mapped cache it touched (file pages the kernel can drop and read again); anonymous: the "
            "memory the process owns (peak of samples 0.1 s apart). Workers: the memory the loader's worker "
            "processes hold of their own together (unique set size: pages no other process maps, so not those "
            "they share with the main process since they were forked; peak of samples a second apart).")
    body = f"{note}\n\n{table}\n\n{summary(figures)}"
    print(body)
    if settings.docs:
        print(write_page("pixel-paths", "The decoded-pixel cache against decoding on the fly", body))


if __name__ == "__main__":
    main()
