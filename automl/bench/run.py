"""One benchmark run: data (bank x targets or the paper's files), methods, metrics, outputs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console

from automl.bench.bank import bank_data
from automl.bench.data import BenchData
from automl.bench.methods import PLASTICITY, derive_methods
from automl.bench.metrics import evaluate, summarize
from automl.bench.oracle import OracleStats
from automl.bench.paper import paper_data
from automl.bench.report import console_table, write_results_csv, write_scatter, write_table_md
from automl.bench.settings import BenchError, bench_settings, checked_names
from automl.config import select_device, to_container
from automl.rank import predictor_options, resolve_score_names


@dataclass
class BenchResult:
    rows: list[dict[str, Any]]  # one per method x target x seed (RESULT_COLUMNS)
    summary: list[dict[str, Any]]  # one per method, best Pearson first (see summarize)
    data: BenchData
    oracle: OracleStats | None  # None for the paper's data
    seconds: dict[str, float]  # phase -> wall time
    files: dict[str, Path]


def run_bench(cfg: DictConfig, run_dir: str | Path, console: Console | None = None) -> BenchResult:
    """Run the benchmark configured by ``cfg`` (``conf/bench.yaml``) and write its outputs to ``run_dir``."""
    console = console or Console()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    bench = bench_settings(cfg)
    score_names = resolve_score_names(to_container(cfg.rank.scores))
    primary = str(cfg.rank.primary)
    if primary not in score_names:
        raise BenchError(f"rank.primary={primary!r} is not among the computed scores {score_names}")
    plasticity = checked_names(bench["plasticity"], score_names, "bench.plasticity", score_names)
    paper = bench["paper"] or {}
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    oracle_stats = None
    if paper.get("oracle_csv") or paper.get("probes_dir"):
        data = paper_data(bench, score_names, to_container(cfg.rank.options) or {})
        source = f"paper data: {paper['oracle_csv']} x {paper['probes_dir']}"
    else:
        data, oracle_stats = bank_data(cfg, bench, score_names, select_device(str(cfg.device)))
        source = f"bank {cfg.bank.name} x targets {', '.join(data.targets)}"
    seconds["data"] = time.perf_counter() - start
    if oracle_stats is not None:  # split the bank's data phase into probe scores and oracle fits
        seconds = {"probe scores": seconds["data"] - oracle_stats.wall_seconds,
                   "oracle": oracle_stats.wall_seconds}

    start = time.perf_counter()
    methods = derive_methods(data, score_names, predictor_options(cfg.rank), plasticity)
    rows = evaluate(methods, data.oracle)
    summary = summarize(rows, data.targets)
    seconds["metrics"] = time.perf_counter() - start

    defaults = [primary, primary + PLASTICITY, f"prior({primary})", f"predictor({primary})"]
    scatter = checked_names(bench["scatter"], list(methods), "bench.scatter",
                             [m for m in defaults if m in methods])
    context = [source, f"probe seeds {data.seeds} ({to_container(cfg.probe).get('budget')} images per probe set)",
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
