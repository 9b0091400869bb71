"""One benchmark run: data (bank x targets or the paper's files), methods, metrics, outputs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from automl._fileio import atomic_write_text
from automl.bank import own_folder_of
from automl.predictor.shipped import load_meta
from automl.run.report import markdown_table
from benchmarks._pages import write_page
from benchmarks.metabench.build import build_meta
from benchmarks.metabench.data import BenchData, BenchError, checked_names
from benchmarks.metabench.end_to_end import run_end_to_end
from benchmarks.metabench.measure import bank_data
from benchmarks.metabench.meta import certainty_cells, per_bank_cells, run_meta, table_cells
from benchmarks.metabench.methods import PREDICTOR, derive_methods
from benchmarks.metabench.metrics import evaluate, summarize
from benchmarks.metabench.oracle import OracleStats
from benchmarks.metabench.paper import paper_data
from benchmarks.metabench.tables import (
    console_table,
    numbers_table,
    wide,
    write_results_csv,
    write_scatter,
    write_table_md,
)
from benchmarks.settings import BenchRunSettings


@dataclass
class BenchResult:
    rows: list[dict[str, Any]]  # one per method x target x seed (RESULT_COLUMNS)
    summary: list[dict[str, Any]]  # one per method, best Pearson first (see summarize)
    data: BenchData | None  # None for the meta-benchmark (its data: automl.predictor.shipped.load_meta)
    oracle: OracleStats | None  # None for the paper's data
    seconds: dict[str, float]  # phase -> wall time
    files: dict[str, Path]


def _run_meta(settings: BenchRunSettings, run_dir: Path, console: Console, publish: bool) -> BenchResult:
    """Rank methods judged held-out on the meta-benchmark's data (:mod:`benchmarks.metabench.meta`)."""
    own = _own_data(settings)
    if own:  # the meta-benchmark reads neither: a user's bank or targets would be silently ignored
        raise BenchError(f"{own} is not read by bench.data=meta, which judges the shipped meta-benchmark; "
                         "add bench.data=bank to rank your own bank on your own targets")
    start = time.perf_counter()
    data = load_meta(settings.bench.meta_dir)
    rows, summaries = run_meta(data)
    header, cells = table_cells(summaries)
    context = [f"meta-benchmark: {len(data.banks)} banks ({', '.join(data.banks)}) x {len(data.targets)} targets "
               f"({', '.join(data.targets)}), {len(data.cells)} cells (bank x target x probe seed)",
               f"oracle recipe {data.recipe['id']}",
               f"evaluated in {time.perf_counter() - start:.0f} s; columns without a protocol: bank and target "
               "both held out"]
    # The default predictor against the strongest single score in hindsight (a stricter baseline than the
    # held-out "best score", which must pick its score on the training folds).
    predictor = f"model:{settings.rank.predictor.kind}"
    strongest = next(e["method"] for e in summaries["both"] if e["method"] in data.score_names)
    sure_header, sure_cells = certainty_cells(rows, predictor, strongest)
    sure_title = (f"How sure: {predictor}, means over held-out cells with 90% intervals (banks and targets redrawn "
                  f"by a two-way bootstrap; {strongest}: the strongest single score, bank and target held out)")
    bank_header, bank_cells = per_bank_cells(rows, predictor, strongest)
    bank_title = (f"Per bank: {predictor}, each bank held out in turn with its architectures (fitted on the other "
                  "banks' other architectures, all targets; 90% intervals with the targets redrawn)")
    text = "\n\n".join(["# Ranking methods on the meta-benchmark, held out", "\n".join(f"- {c}" for c in context),
                         markdown_table(header, cells, numbers_right=True), f"## {sure_title}",
                         markdown_table(sure_header, sure_cells, numbers_right=True), f"## {bank_title}",
                         markdown_table(bank_header, bank_cells, numbers_right=True)])
    files = {"csv": write_results_csv(run_dir / "bench_results.csv", rows),
             "table": atomic_write_text(run_dir / "bench_table.md", text + "\n")}
    if publish:
        files["page"] = write_page("ranking", "Ranking methods on the meta-benchmark, held out",
                                   text.split("\n", 1)[1])
    printer = wide(console, width=180)
    printer.print(numbers_table("Ranking methods on the meta-benchmark, held out", header, cells, "\n".join(context)))
    printer.print(numbers_table(sure_title, sure_header, sure_cells))
    printer.print(numbers_table(bank_title, bank_header, bank_cells))
    console.print(f"results: {run_dir}")
    return BenchResult(rows=rows, summary=summaries["both"], data=None, oracle=None,
                       seconds={"evaluation": time.perf_counter() - start}, files=files)


def _own_data(settings: BenchRunSettings) -> str:
    """The first setting that names a user's own bank or target (``""`` if none)."""
    if settings.bank.name != "demo":
        return f"bank.name={settings.bank.name}"
    if Path(settings.bank.dir).expanduser().resolve() != own_folder_of("demo", settings.cache_dir):
        return f"bank.dir={settings.bank.dir}"
    own_targets = [index for index, target in enumerate(settings.bench.targets) if not isinstance(target, str)]
    return f"bench.targets[{own_targets[0]}]" if own_targets else ""


def run_bench(settings: BenchRunSettings, run_dir: str | Path, console: Console | None = None, *,
              publish: bool = False) -> BenchResult | None:
    """Run the benchmark ``settings`` describe (``benchmarks/conf/bench.yaml``) and write its outputs to
    ``run_dir``; with ``publish`` also the page of ``docs/results/`` that holds its figures."""
    console = console or Console()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if settings.bench.mode == "build":
        console.print(f"meta-benchmark data: {build_meta(settings)}")
        return None
    if settings.bench.mode == "end_to_end":
        run_end_to_end(settings, run_dir, console, publish)
        return None
    if settings.bench.data == "meta":
        return _run_meta(settings, run_dir, console, publish)
    bench, rank = settings.bench, settings.rank
    score_names = rank.score_names
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
    methods = derive_methods(data, score_names, rank.predictor, plasticity)
    rows = evaluate(methods, data.oracle)
    summary = summarize(rows, data.targets)
    seconds["metrics"] = time.perf_counter() - start

    defaults = ["linear", "knn", "parc", PREDICTOR]
    scatter = checked_names(bench.scatter, list(methods), "bench.scatter",
                             [m for m in defaults if m in methods])
    context = [source, f"probe seeds {data.seeds} ({settings.probe.budget} images per probe set)"]
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
    wide(console).print(console_table(summary, data.targets, "\n".join(context)))
    console.print(f"results: {run_dir}")
    return BenchResult(rows=rows, summary=summary, data=data, oracle=oracle_stats, seconds=seconds, files=files)
