"""``python -m automl.bench bench.mode=end_to_end``: the model the pipeline hands back against brute force.

For every bank of ``bench.banks`` and target of ``bench.targets``, ``python -m automl`` runs with its
defaults (plus ``bench.pipeline``, a list of overrides: the lever being tried) on a fresh history, as a
new user would; its exported model's test accuracy is set against the best test accuracy that the
meta-benchmark's fixed recipe reached over the whole bank — every model fine-tuned, the brute force a
user could do instead. Compute of both: seconds of fitting, and GFLOP (training images x forward FLOPs
x 3), the pipeline's including its probe features, every trial and the refit.

The pipeline's cold-start predictor learns from the meta-benchmark without the bank and the target it
is run on (a copy of the data with their rows left out, ``rank.predictor.data``): the ranking is as
held out as it would be for a user's own bank and data.

Writes ``end_to_end.csv`` (one row per bank x target) and ``end_to_end.md`` (the table and its means).
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console

from automl._fileio import atomic_copy, atomic_write_text, read_csv_rows
from automl.bank import read_bank
from automl.bank.meta import training_gflop
from automl.bank.weights import file_sha256
from automl.predictor.shipped import DATA_DIR
from automl.run.folder import read_record
from automl.run.report import markdown_table
from automl.run.stages import run as run_pipeline
from automl.settings import compose, resolve
from benchmarks._pages import write_page
from benchmarks.metabench.banks import BANKS
from benchmarks.metabench.build import built_bank_folder
from benchmarks.metabench.data import BenchError, checked_names
from benchmarks.metabench.metrics import by_bank_and_target, cluster_bootstrap
from benchmarks.metabench.tables import write_results_csv
from benchmarks.settings import BenchRunSettings

log = logging.getLogger(__name__)


def brute_force(meta_dir: Path) -> dict[tuple[str, str], dict]:
    """Per (bank, target): the fixed recipe's best test accuracy over the bank (``best``, picked on the test
    split: optimistic), the test accuracy of the model a user would pick, the best on validation
    (``picked_on_val``, the mean over tied models; NaN where the oracle has no validation accuracy), the
    number of models fitted (``models``) and the compute of fitting them (seconds measured at build time;
    GFLOP from each fit's images and its model's FLOPs)."""
    models = {row["model"]: row for row in read_csv_rows(meta_dir / "models.csv")}
    targets = {row["target"]: row for row in read_csv_rows(meta_dir / "targets.csv")}
    out: dict[tuple[str, str], dict] = {}
    accuracies: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in read_csv_rows(meta_dir / "oracle.csv"):
        key = (row["bank"], row["target"])
        cell = out.setdefault(key, {"best": -math.inf, "best_model": "", "seconds": 0.0, "gflop": 0.0})
        accuracy = float(row["test_accuracy"])
        if accuracy > cell["best"]:
            cell["best"], cell["best_model"] = accuracy, row["model"]
        accuracies.setdefault(key, []).append((float(row.get("val_accuracy") or math.nan), accuracy))
        cell["seconds"] += float(row["seconds"])
        images = int(row["epochs"]) * int(targets[row["target"]]["num_train"])
        cell["gflop"] += training_gflop(images, float(models[row["model"]]["mflops"]))
    for key, pairs in accuracies.items():
        val, test = np.array(pairs).T
        out[key]["picked_on_val"] = float(test[val == val.max()].mean()) if np.isfinite(val).all() else math.nan
        out[key]["models"] = len(pairs)
    return out


def run_end_to_end(settings: BenchRunSettings, run_dir: Path, console: Console, publish: bool = False) -> list[dict]:
    meta_dir = Path(settings.bench.meta_dir) if settings.bench.meta_dir else DATA_DIR
    baseline = brute_force(meta_dir)
    banks = checked_names(settings.bench.banks, list(BANKS), "bench.banks", list(BANKS))
    targets = [t for t in settings.bench.targets if isinstance(t, str)]
    if len(targets) != len(settings.bench.targets):
        raise BenchError("bench.targets: the end-to-end mode takes the meta-benchmark's target names")
    rows = []
    for bank in banks:
        folder = built_bank_folder(settings, bank)
        changed = changed_checkpoints(folder, meta_dir, bank)
        if changed:  # pretraining is bit-exact only on the same torch build and thread count
            log.warning("bank %s: %d checkpoint(s) differ from those the oracle measured (sha256 of %s): "
                        "brute force is then the oracle of slightly different weights", bank, len(changed),
                        ", ".join(changed))
        for target in targets:
            if (bank, target) not in baseline:
                raise BenchError(f"the meta-benchmark has no oracle for bank {bank} on {target}")
            rows.append(pipeline_vs_brute_force(settings, bank, folder, target, run_dir / bank / target, baseline[(bank, target)]))
            rows[-1]["checkpoints_as_measured"] = len(BANKS[bank]) - len(changed)
            console.print(f"end to end: {bank} x {target}: pipeline {rows[-1]['pipeline_test']:.1f}% vs brute force "
                          f"{rows[-1]['brute_force_best']:.1f}% at {rows[-1]['gflop_ratio']:.0%} of its compute")
            write_results_csv(run_dir / "end_to_end.csv", rows)  # after every run: a long benchmark keeps its rows
    text = end_to_end_table(rows, settings.bench.pipeline)
    atomic_write_text(run_dir / "end_to_end.md", text + "\n")
    if publish:
        write_page("end-to-end", "The pipeline's model against brute force", text)
    console.print(text)
    return rows


def pipeline_vs_brute_force(settings: BenchRunSettings, bank: str, folder: Path, target: str, run_dir: Path,
                            baseline: Mapping[str, float]) -> dict:
    """``python -m automl`` on ``target`` with the bank in ``folder``, in ``run_dir`` on a fresh history,
    set against ``baseline`` (one value of :func:`brute_force`): one row of the table."""
    meta = held_out_meta(settings.bench.meta_dir or DATA_DIR, bank, target, run_dir / "metabench")
    overrides = [f"task={target}", f"bank.dir={folder}", f"bank.name={bank}", "bank.build=null",
                 f"rank.predictor.data={meta}",
                 f"cache_dir={settings.cache_dir}", f"storage=sqlite:///{run_dir / 'history.db'}",
                 f"finetune.artifacts_dir={run_dir / 'artifacts'}", f"device={settings.device}",
                 f"seed={settings.seed}", "finetune.progress_bar=false", *settings.bench.pipeline]
    pipeline = resolve(compose(overrides))
    start = time.perf_counter()
    output = io.StringIO()
    run_pipeline(pipeline, run_dir, Console(file=output, width=160))
    wall = time.perf_counter() - start
    atomic_write_text(run_dir / "console.txt", output.getvalue())
    record = read_record(run_dir)
    trials = read_csv_rows(run_dir / "finetune.csv")
    config = _best_config(run_dir)
    refit = config.get("refit") or {}
    fit_seconds = sum(float(t["seconds"]) for t in trials) + refit.get("seconds", 0.0)
    fit_gflop = sum(float(t["train_gflop"] or 0) for t in trials) + refit.get("train_gflop", 0.0)
    probe_gflop = sum(m.model_meta.get("mflops", 0.0) for m in record.ranking) * pipeline.probe.budget / 1e3
    gflop = fit_gflop + probe_gflop
    return {"bank": bank, "target": target, "pipeline_model": config["source"]["model"],
            "pipeline_test": config["test_accuracy"],
            "trial_test": refit.get("trial_test_accuracy", config["test_accuracy"]),
            "brute_force_best": baseline["best"], "brute_force_model": baseline["best_model"],
            "shortfall": baseline["best"] - config["test_accuracy"],
            "brute_force_picked_on_val": baseline["picked_on_val"], "trials": len(trials),
            "pipeline_seconds": round(wall, 1), "fit_seconds": round(fit_seconds, 1),
            "brute_force_seconds": round(baseline["seconds"], 1), "pipeline_gflop": round(gflop, 1),
            "brute_force_gflop": round(baseline["gflop"], 1), "gflop_ratio": gflop / baseline["gflop"]}


def changed_checkpoints(folder: Path, meta_dir: Path, bank: str) -> list[str]:
    """Names of the checkpoints of the bank in ``folder`` whose files' sha256 differs from the meta-benchmark's
    record of that bank."""
    measured = {row["model"]: row["sha256"] for row in read_csv_rows(meta_dir / "models.csv") if row["bank"] == bank}
    return [entry.name for entry in read_bank(None, None, folder) if measured.get(entry.name) != file_sha256(entry.weights)]


def held_out_meta(meta_dir: str | Path, bank: str, target: str, out: Path) -> Path:
    """A copy of the meta-benchmark data in ``meta_dir`` without any record of ``bank`` or of ``target``."""
    meta_dir = Path(meta_dir)
    for name in ("models.csv", "targets.csv", "recipe.json"):
        atomic_copy(meta_dir / name, out / name)
    for name in ("oracle.csv", "scores.csv"):
        rows = [row for row in read_csv_rows(meta_dir / name) if row["bank"] != bank and row["target"] != target]
        write_results_csv(out / name, rows)
    return out


def end_to_end_table(rows: Sequence[Mapping], pipeline: Sequence[str]) -> str:
    header = ["bank", "target", "pipeline test %", "model", "brute force best %", "shortfall (pts)",
              "brute force picked on val %", "compute (% of brute force)", "seconds (pipeline / brute force)"]
    cells = [[r["bank"], r["target"], f"{r['pipeline_test']:.1f}", r["pipeline_model"], f"{r['brute_force_best']:.1f}",
              f"{r['shortfall']:+.1f}", f"{r['brute_force_picked_on_val']:.1f}", f"{100 * r['gflop_ratio']:.0f}",
              f"{r['pipeline_seconds']:.0f} / {r['brute_force_seconds']:.0f}"] for r in rows]
    shortfall = np.array([r["shortfall"] for r in rows])
    against_val = np.array([r["brute_force_picked_on_val"] - r["pipeline_test"] for r in rows])
    ratio = np.array([r["gflop_ratio"] for r in rows])
    _, low, high = cluster_bootstrap(by_bank_and_target(rows, "shortfall"))
    summary = (f"Mean shortfall {shortfall.mean():+.2f} points (negative: the pipeline beats brute force; 90% "
               f"interval {low:+.2f} to {high:+.2f}, banks and targets redrawn), worst "
               f"{shortfall.max():+.2f}, {np.sum(shortfall > 2)} of {len(rows)} runs more than 2 points below; "
               f"against brute force picked on validation (as a user would pick) {np.nanmean(against_val):+.2f}, "
               f"{np.sum(against_val > 2)} more than 2 points below; compute {100 * ratio.mean():.0f}% of brute force "
               f"on average (max {100 * ratio.max():.0f}%). Pipeline overrides: {list(pipeline) or 'none'}.")
    return "\n\n".join(["# The pipeline's model against brute force", summary,
                        markdown_table(header, cells, numbers_right=True)])


def _best_config(run_dir: Path) -> dict:
    return json.loads((run_dir / "best" / "config.json").read_text())

