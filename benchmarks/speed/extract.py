"""Feature-extraction benchmark on the offline demo bank (built on first use).

1. Throughput, for 3 architectures: images/s of the full extraction path (``extract_features`` over N
   decoded probe images: checkpoint load, the model's own transform, batched forward, source probs)
   versus the raw ``forward_features`` + ``forward_head(pre_logits=True)`` of an already loaded model over
   pre-made tensors of the same batch size. Goal: pipeline >= 90% of raw. N = 500 (the probe budget)
   includes the fixed per-model cost (checkpoint load, first-run kernel setup: ~20 ms, large next to a
   tiny model's forward); a larger N (the probe images repeated) shows the per-image overhead.
   Ratios are medians of back-to-back pairs; throughputs medians of the runs. ``full_size`` adds a
   randomly initialised resnet18 at its own 224 px (a bank checkpoint of a common size, 1000-class head):
   there the fixed per-model cost is small next to the forward and the per-image resize is a PIL upscale.
2. Cache: ``extract_bank`` over the whole bank with an empty cache (cold) versus a re-run (warm).
   Goal: warm < 5% of cold.

    python -m benchmarks.speed.extract [bank_dir=DIR] [repeats=5] [batch_size=64] [sizes=[500,4000]] [full_size=false]
"""

from __future__ import annotations

import functools
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors.torch
import timm
import torch
import yaml
from rich.console import Console
from rich.table import Table

from automl.bank import create_model, load_bank, resolve_data_config
from automl.bank import weights as bank_weights
from automl.images.decode import load_image
from automl.images.tasks import load_task
from automl.rank.embeddings import extract_bank, extract_features
from automl.rank.probe import sample_probe
from automl.settings import BankSettings, ProbeSettings, TaskSettings
from benchmarks._script import parse

ARCHS = ("test_resnet", "test_efficientnet", "test_vit")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median of run-by-run ratios: robust to load from other processes that drifts between runs."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def raw_forward(model: torch.nn.Module, batches: list[torch.Tensor]) -> None:
    with torch.inference_mode():
        for x in batches:
            model.forward_head(model.forward_features(x), pre_logits=True)


def full_size_bank(folder: Path):
    """A one-model bank: resnet18 with random weights and a 1000-class head, as a safetensors checkpoint."""
    torch.manual_seed(0)
    safetensors.torch.save_file(timm.create_model("resnet18", num_classes=1000).state_dict(),
                                str(folder / "resnet18.safetensors"))
    manifest = {"name": "full_size", "models": [{"name": "resnet18_random", "arch": "resnet18",
                                                 "weights": "resnet18.safetensors", "num_classes": 1000}]}
    (folder / "bank.yaml").write_text(yaml.safe_dump(manifest))
    return load_bank(BankSettings(name="full_size", dir=str(folder)), folder)


def throughput(entries, images, labels, repeats: int, batch_size: int, table: Table) -> None:
    for entry in entries:
        model = create_model(entry).eval()
        config = resolve_data_config(entry, model)
        transform = timm.data.create_transform(**config, is_training=False)
        tensors = torch.stack([transform(image) for image in images])
        batches = list(tensors.split(batch_size))
        pipeline = functools.partial(extract_features, entry, images, labels, batch_size=batch_size)
        raw = functools.partial(raw_forward, model, batches)
        pipeline(), raw()  # warm-up (allocator, oneDNN kernels)
        times = {"pipeline": [], "raw": []}
        for _ in range(repeats):  # interleaved, so load changes hit both alike
            times["pipeline"].append(timed(pipeline))
            times["raw"].append(timed(raw))
        pipe_ips, raw_ips = (len(images) / statistics.median(times[k]) for k in ("pipeline", "raw"))
        table.add_row(f"{entry.name} ({entry.arch}), N={len(images)}", f"{pipe_ips:,.0f} img/s", f"{raw_ips:,.0f} img/s",
                      f"{100 * paired_ratio(times['raw'], times['pipeline']):.0f}%", ">= 90%")


def cache_speedup(bank, task, probe, repeats: int, batch_size: int, table: Table) -> None:
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(repeats):
            run = functools.partial(extract_bank, bank, task, probe, Path(scratch) / f"run{i}", batch_size=batch_size)
            for times in (cold, warm):
                bank_weights._file_sha256.cache_clear()  # hash the weight files again, as a fresh process would
                times.append(timed(run))
    table.add_row(f"whole bank ({len(bank)} models), warm re-run", f"{statistics.median(warm):.3f} s warm",
                  f"{statistics.median(cold):.2f} s cold", f"{100 * paired_ratio(warm, cold):.1f}%", "< 5%")


@dataclass
class Settings:
    bank_dir: str = str(Path(os.environ.get("AUTOML_CACHE_DIR", "outputs/cache")) / "banks" / "demo")
    repeats: int = 5
    batch_size: int = 64
    sizes: list[int] = field(default_factory=lambda: [500, 4000])  # images per throughput run
    full_size: bool = True  # also resnet18 at 224 px on the first size (~1 min)


def main() -> None:
    args = parse(Settings, __doc__)
    bank_dir = Path(args.bank_dir)
    bank = load_bank(BankSettings(name="demo", dir=str(bank_dir), build="demo"), bank_dir.parent.parent)
    with tempfile.TemporaryDirectory() as data_dir:
        task = load_task(TaskSettings(name="shapes", builtin="shapes"), data_dir)
        probe = sample_probe(task.splits["train"].labels, ProbeSettings(budget=500))
        images = [load_image(task.splits["train"].paths[i]) for i in probe]
        labels = np.asarray(task.splits["train"].labels)[probe]

        table = Table(title=f"benchmarks/speed/extract.py: probe of {len(probe)} images (shapes task), batch {args.batch_size}, "
                            f"median of {args.repeats}, torch threads {torch.get_num_threads()}")
        for column in ("what", "pipeline / warm", "raw / cold", "ratio", "goal"):
            table.add_column(column, justify="left" if column == "what" else "right")
        def run(entries, size: int) -> None:  # the probe images repeated up to `size`
            repeat = -(-size // len(images))
            throughput(entries, (images * repeat)[:size], np.tile(labels, repeat)[:size], args.repeats,
                       args.batch_size, table)

        tiny = [next(entry for entry in bank if entry.arch == arch) for arch in ARCHS]
        for size in args.sizes:
            run(tiny, size)
        if args.full_size:
            run(full_size_bank(Path(data_dir)), args.sizes[0])
        cache_speedup(bank, task, probe, args.repeats, args.batch_size, table)
    Console().print(table)


if __name__ == "__main__":
    main()
