"""Does a history make the next ranking better? Issue 14's own scenario, on the end-to-end benchmark's runs.

    python -m automl.bench bench.mode=end_to_end hydra.run.dir=outputs/e2e
    python -m benchmarks.studies.feedback 'runs=[outputs/e2e]'

Each run of ``bench.mode=end_to_end`` ranked one bank on one target on a fresh history (the cold start,
learnt from the meta-benchmark without that bank and target) and then fine-tuned its top models. Per bank,
this script pools the histories of its runs into one, as a user who ran the pipeline once on each target
would have it, and ranks every target again (``stage=rank``) with that history. Both rankings are set
against the oracle's accuracies (the fixed recipe's test accuracy of every model): MAE of the predicted
accuracy, share inside the 80% interval, top-1 regret, Pearson x100; and whether the refined predictor
replaced the cold start (it does only where leaving each of the history's tasks out says it predicts
better).
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from automl._fileio import read_csv_rows
from automl.history import History
from automl.predictor.shipped import DATA_DIR
from automl.run.stages import run as run_pipeline
from automl.settings import compose, resolve
from benchmarks._script import parse
from benchmarks.metabench.build import bank_folder
from benchmarks.metabench.metrics import pearson_x100, top1_regret
from benchmarks.metabench.tables import wide
from benchmarks.settings import compose_bench

METRICS = ("MAE (pts)", "80% cover %", "regret (pts)", "Pearson")


@dataclass
class Settings:
    runs: list[str] = field(default_factory=list)  # folders of bench.mode=end_to_end runs (their hydra.run.dir)
    meta_dir: str = str(DATA_DIR)  # the meta-benchmark data whose oracle.csv the runs were set against
    out: str = "outputs/feedback"  # pooled histories and the new rankings


def ranking_metrics(ranking_csv: Path, oracle: dict[str, float]) -> np.ndarray:
    """[4] the METRICS of a ``ranking.csv`` against ``oracle`` (model -> test accuracy, percent)."""
    rows = read_csv_rows(ranking_csv)
    predicted, low, high = (np.array([float(r[c]) for r in rows])
                            for c in ("predicted_accuracy", "predicted_low", "predicted_high"))
    measured = np.array([oracle[r["model"]] for r in rows])
    return np.array([np.mean(np.abs(predicted - measured)), 100 * np.mean((low <= measured) & (measured <= high)),
                     top1_regret(predicted, measured), pearson_x100(predicted, measured)])


def main() -> None:
    settings = parse(Settings, __doc__)
    if not settings.runs:
        raise SystemExit("runs=[...] names no end-to-end run folder; --help says how to make one")
    oracle: dict[tuple[str, str], dict[str, float]] = {}
    for row in read_csv_rows(Path(settings.meta_dir) / "oracle.csv"):
        oracle.setdefault((row["bank"], row["target"]), {})[row["model"]] = float(row["test_accuracy"])
    runs_by_bank: dict[str, list[Path]] = {}
    for folder in settings.runs:
        for run in sorted(Path(folder).glob("*/*/run.json")):
            runs_by_bank.setdefault(run.parent.parent.name, []).append(run.parent)
    if not runs_by_bank:
        raise SystemExit(f"no end-to-end runs (<bank>/<target>/run.json) under {settings.runs}")
    bench = resolve(compose_bench([]))  # the end-to-end mode built the banks where it says
    out = Path(settings.out)
    table = Table(title="Ranking again with a history of one run per target, against the cold start",
                  caption="cold -> with the bank's pooled history; the oracle's accuracies as the truth")
    for column in ("bank", "target", "refined model used", *METRICS):
        table.add_column(column, justify="left" if column in ("bank", "target") else "right")
    cold, refined, adopted = [], [], []
    for bank, runs in runs_by_bank.items():
        pooled = out / bank / "history.db"
        pooled.unlink(missing_ok=True)
        with History(f"sqlite:///{pooled}") as history:
            for run in runs:
                with History(f"sqlite:///{run / 'history.db'}") as own:
                    history.add_all(own.records())
        for run in runs:
            target, rank_dir = run.name, out / bank / run.name
            shutil.rmtree(rank_dir, ignore_errors=True)  # a rank stage rerun in its folder would reuse its ranking
            overrides = [f"task={target}", f"bank.dir={bank_folder(bench, bank)}", f"bank.name={bank}",
                         "bank.build=null", f"rank.predictor.data={run / 'metabench'}", f"storage=sqlite:///{pooled}",
                         "stage=rank"]
            run_pipeline(resolve(compose(overrides)), rank_dir, Console(file=io.StringIO()))
            cold.append(ranking_metrics(run / "ranking.csv", oracle[(bank, target)]))
            refined.append(ranking_metrics(rank_dir / "ranking.csv", oracle[(bank, target)]))
            adopted.append(json.loads((rank_dir / "run.json").read_text())["predictor"] != "meta-benchmark")
            table.add_row(bank, target, "yes" if adopted[-1] else "no",
                          *(f"{a:.1f} -> {b:.1f}" for a, b in zip(cold[-1], refined[-1], strict=True)))
    cold_mean, refined_mean = np.mean(cold, axis=0), np.mean(refined, axis=0)
    table.add_row("mean", f"{len(cold)} targets", f"{sum(adopted)} of {len(adopted)}",
                  *(f"{a:.2f} -> {b:.2f}" for a, b in zip(cold_mean, refined_mean, strict=True)))
    wide(Console()).print(table)


if __name__ == "__main__":
    main()
