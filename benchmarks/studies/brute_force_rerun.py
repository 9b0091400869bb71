"""Brute force against itself: the oracle recipe rerun with another seed, set against the shipped brute force.

    OMP_NUM_THREADS=1 python -m automl.bench bench.mode=build seed=1 'bench.banks=[classic,modern]' \\
        'bench.targets=[characters,fewshot,fonts,materials,scenes,terrain]' 'bench.probe_seeds=[0]' &
    OMP_NUM_THREADS=1 python -m automl.bench bench.mode=build seed=1 'bench.banks=[budget,rough]' \\
        'bench.targets=[characters,fewshot,fonts,materials,scenes,terrain]' 'bench.probe_seeds=[0]'
    python -m benchmarks.studies.brute_force_rerun seed=1 'runs=[outputs/e2e]'

The end-to-end benchmark's goal "no target more than 2 points below brute force" compares one run of the
pipeline with the best of 12 single-seed fits, picked on the test split. This script shows how often
brute force itself misses that bar: the build above fine-tunes every model again with the oracle recipe
and ``seed`` (on this machine's rebuilt banks, the weights the end-to-end runs fine-tuned), and per
(bank, target) its best test accuracy, and the test accuracy of its pick on validation, are set against
the shipped brute force's best. With ``runs`` (folders of ``bench.mode=end_to_end`` runs, one subfolder per
run), each run's pipeline is also set against the rerun: brute force on the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from automl._fileio import atomic_copy, read_csv_rows
from automl.history import History
from automl.predictor.shipped import DATA_DIR
from automl.settings import resolve
from benchmarks._script import parse
from benchmarks.metabench.build import meta_root
from benchmarks.metabench.end_to_end import brute_force
from benchmarks.metabench.oracle import oracle_recipe, recipe_id
from benchmarks.metabench.tables import wide, write_results_csv
from benchmarks.settings import compose_bench


@dataclass
class Settings:
    seed: int = 1  # the seed the rerun was built with (python -m automl.bench bench.mode=build seed=...)
    runs: list[str] = field(default_factory=list)  # one folder per end-to-end benchmark (its end_to_end.csv files)
    out: str = "outputs/brute_force_rerun"  # the rerun as meta-benchmark files (oracle.csv and its context)


def rerun_oracle(settings: Settings) -> Path:
    """The rerun's oracle records (the build's history) as an ``oracle.csv`` beside the shipped models and
    targets in ``settings.out``; returns that folder."""
    bench = resolve(compose_bench([f"seed={settings.seed}"]))
    run_id = recipe_id(oracle_recipe(bench.bench.oracle, bench.finetune, bench.seed))
    bank_of = {row["model"]: row["bank"] for row in read_csv_rows(DATA_DIR / "models.csv")}
    with History(f"sqlite:///{meta_root(bench) / 'history.db'}") as history:
        records = [r for r in history.records(kind="oracle") if r.run_id == run_id and r.model_name in bank_of]
    if not records:
        raise SystemExit(f"no oracle fit of recipe {run_id} (seed={settings.seed}) in {meta_root(bench)}; "
                         "build it first (--help)")
    out = Path(settings.out)
    for name in ("models.csv", "targets.csv"):
        atomic_copy(DATA_DIR / name, out / name)
    write_results_csv(out / "oracle.csv", [
        {"bank": bank_of[r.model_name], "model": r.model_name, "target": r.task_name, "test_accuracy": r.test_accuracy,
         "val_accuracy": r.val_accuracy, "epochs": r.epochs, "seconds": r.seconds} for r in records])
    return out


def pipeline_accuracies(folders: list[str]) -> dict[str, dict[tuple[str, str], float]]:
    """Per folder: the pipeline's test accuracy per (bank, target) in every ``end_to_end.csv`` under it (one
    end-to-end benchmark may have run as several processes, one folder each)."""
    runs: dict[str, dict[tuple[str, str], float]] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("**/end_to_end.csv")):
            runs.setdefault(folder, {}).update(
                {(row["bank"], row["target"]): float(row["pipeline_test"]) for row in read_csv_rows(path)})
    return runs


def main() -> None:
    settings = parse(Settings, __doc__)
    shipped, rerun = brute_force(DATA_DIR), brute_force(rerun_oracle(settings))
    keys = sorted(key for key, cell in rerun.items() if cell["models"] == shipped[key]["models"])  # finished cells
    table = Table(title=f"Brute force rerun with seed={settings.seed} against the shipped brute force's best",
                  caption="accuracies in percent; below: the shipped best minus the rerun's, in points")
    for column in ("bank", "target", "shipped best", "rerun best", "below", "rerun picked on val", "below "):
        table.add_column(column, justify="left" if column in ("bank", "target") else "right")
    best = np.array([shipped[k]["best"] for k in keys])
    rerun_best = np.array([rerun[k]["best"] for k in keys])
    rerun_val = np.array([rerun[k]["picked_on_val"] for k in keys])
    for key, a, b, c in zip(keys, best, rerun_best, rerun_val, strict=True):
        table.add_row(*key, f"{a:.1f}", f"{b:.1f}", f"{a - b:+.1f}", f"{c:.1f}", f"{a - c:+.1f}")
    table.add_row("mean", f"{len(keys)} targets", "", "", f"{np.mean(best - rerun_best):+.2f}", "",
                  f"{np.mean(best - rerun_val):+.2f}")
    table.add_row("> 2 below", "", "", "", f"{np.sum(best - rerun_best > 2)}", "", f"{np.sum(best - rerun_val > 2)}")
    wide(Console()).print(table)
    for run, accuracies in pipeline_accuracies(settings.runs).items():
        pipeline = np.array([accuracies.get(key, np.nan) for key in keys])
        for label, baseline in (("shipped best", best), ("rerun best", rerun_best), ("rerun picked on val", rerun_val)):
            shortfall = baseline - pipeline
            print(f"{run}: the pipeline against the {label}: {np.nanmean(shortfall):+.2f} points on average "
                  f"(positive: below), {np.sum(shortfall > 2)} of {np.isfinite(shortfall).sum()} more than 2 below")


if __name__ == "__main__":
    main()
