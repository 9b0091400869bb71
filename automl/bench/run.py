"""One benchmark run: data (bank x targets or the paper's files), methods, metrics, outputs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from automl.bench.build import build_meta
from automl.bench.data import BenchData, checked_names
from automl.bench.measure import bank_data
from automl.bench.methods import PLASTICITY, derive_methods
from automl.bench.metrics import evaluate, summarize
from automl.bench.oracle import OracleStats
from automl.bench.paper import paper_data
from automl.bench.tables import console_table, write_results_csv, write_scatter, write_table_md
from automl.predictor import predictor_options
from automl.settings import BenchRunSettings


@dataclass
class BenchResult:
    rows: list[dict[str, Any]]  # one per method x target x seed (RESULT_COLUMNS)
    summary: list[dict[str, Any]]  # one per method, best Pearson first (see summarize)
    data: BenchData
    oracle: OracleStats | None  # None for the paper's data
    seconds: dict[str, float]  # phase -> wall time
    files: dict[str, Path]


def run_bench(settings: BenchRunSettings, run_dir: str | Path, console: Console | None = None
              ) -> BenchResult | None:
    """Run the benchmark ``settings`` describe (``conf/bench.yaml``) and write its outputs to ``run_dir``."""
    console = console or Console()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if settings.bench.mode == "build":
        console.print(f"meta-benchmark data: {build_meta(settings)}")
        return None
    bench, rank = settings.bench, settings.rank
    score_names, primary = rank.score_names, rank.primary
    plasticity = checked_names(bench.plasticity, score_names, "bench.plasticity", score_names)
    paper = bench.paper
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    oracle_stats = None
    if bench.data == "paper":
        data = paper_data(bench, score_names, rank.options)
        source = f"paper data: {paper.oracle_csv} x {paper.probes_dir}"
    else:
        data, oracle_stats = bank_data(settings)
        source = f"bank {settings.bank.name} x targets {', '.join(data.targets)}"
    seconds["data"] = time.perf_counter() - start
    if oracle_stats is not None:  # split the bank's data phase into probe scores and oracle fits
        seconds = {"probe scores": seconds["data"] - oracle_stats.wall_seconds,
                   "oracle": oracle_stats.wall_seconds}

    start = time.perf_counter()
    methods = derive_methods(data, score_names, predictor_options(rank), plasticity)
    rows = evaluate(methods, data.oracle)
    summary = summarize(rows, data.targets)
    seconds["metrics"] = time.perf_counter() - start

    defaults = [primary, primary + PLASTICITY, f"prior({primary})", f"predictor({primary})"]
    scatter = checked_names(bench.scatter, list(methods), "bench.scatter",
                             [m for m in defaults if m in methods])
    context = [source, f"probe seeds {data.seeds} ({settings.probe.budget} images per probe set)",
               f"primary score {primary}"]
    if oracle_stats is not None:
        context.append(f"oracle recipe {oracle_stats.run_id}: {json.dumps(oracle_stats.recipe, sort_keys=True)}")
        context.append(f"oracle fits: {oracle_stats.trained} trained now ({oracle_stats.fit_seconds:.0f} s), "
                       f"{oracle_stats.cached} from the history, {len(oracle_stats.failed)} failed")
    context.append("wall time: " + ", ".join(f"{name} {secs:.0f} s" for name, secs in seconds.items()))
    files = {
        "csv": write_results_csv(run_dir / "bench_results.csv", rows),
        "table": write_table_md(run_dir / "bench_table.md", summary, data, context),
        "scatter": write_scatter(run_dir / "scatter.png", methods, data, scatter),
    }
    wide = console if console.is_terminal else Console(file=console.file, width=160)  # a log file: no 80-column wrap
    wide.print(console_table(summary, data.targets, "\n".join(context)))
    console.print(f"results: {run_dir}")
    return BenchResult(rows=rows, summary=summary, data=data, oracle=oracle_stats, seconds=seconds, files=files)
