"""The benchmark's outputs: ``bench_results.csv``, ``bench_table.md``, ``scatter.png`` and the table
printed at the end."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from automl._fileio import atomic_path, atomic_write_text
from automl.run.report import markdown_table
from benchmarks.metabench.data import BenchData, Key, MethodScores
from benchmarks.metabench.metrics import pearson_x100


def _fmt(value: float, digits: int = 1, std: float | None = None) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and math.isfinite(std) else "")


def table_cells(summary: Sequence[Mapping[str, Any]], targets: Sequence[str], spread: bool = True
                ) -> tuple[list[str], list[list[str]]]:
    """The benchmark table (header, rows) shared by the markdown file and the console; ``spread=False``
    leaves the std over seeds out of every column but the headline Pearson (a narrow console)."""
    def cell(entry: Mapping[str, Any], metric: str, digits: int) -> str:
        return _fmt(entry[metric], digits, entry[f"{metric}_std"] if spread else None)

    header = ["method", *targets, "Pearson mean ± std", "Kendall τ", "weighted τ", "regret (pts)", "top-3 %",
              "ms/model"]
    rows = [[e["method"], *(_fmt(e[f"pearson_{t}"]) for t in targets), _fmt(e["pearson"], 1, e["pearson_std"]),
             cell(e, "kendall_tau", 2), cell(e, "weighted_tau", 2), cell(e, "top1_regret", 2),
             _fmt(100 * e["top3_hit"], 0), _fmt(e["ms_per_model"], 2)] for e in summary]
    return header, rows


def write_results_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """One row per result; the columns are the rows' keys, in first-seen order (floats to 6 decimals)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else
                                 "" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def oracle_cells(data: BenchData) -> tuple[list[str], list[list[str]]]:
    """Per target: bank size and the spread of oracle accuracies (what a ranking can gain)."""
    header = ["target", "models", "best (oracle %)", "mean %", "worst %"]
    rows = []
    for target in data.targets:
        acc = data.oracle[target]
        best = max(acc, key=acc.get)
        rows.append([target, str(len(acc)), f"{best} ({acc[best]:.1f})", f"{np.mean(list(acc.values())):.1f}",
                     f"{min(acc.values()):.1f}"])
    return header, rows


def write_table_md(path: Path, summary, data: BenchData, context: Sequence[str]) -> Path:
    text = "\n\n".join([
        "# Transferability benchmark (PARC protocol)",
        "\n".join(f"- {line}" for line in context),
        markdown_table(*table_cells(summary, data.targets), numbers_right=True),
        "Per target: Pearson r x100 between score and oracle accuracy across the bank (mean over probe seeds). "
        "Pearson mean ± std: averaged over targets (± std over seeds); Kendall τ, weighted τ, regret and top-3 "
        "likewise. Regret: top-1 regret, the oracle accuracy lost by taking the top-scored model (points). "
        "Top-3: how often an oracle-best model is among the 3 best-scored. ms/model: median time to compute "
        "the score from the probe features.",
        "## Oracle",
        markdown_table(*oracle_cells(data), numbers_right=True),
    ])
    atomic_write_text(path, text + "\n")
    return path


def write_scatter(path: Path, methods: Mapping[str, Mapping[Key, MethodScores]], data: BenchData,
                  names: Sequence[str]) -> Path:
    """Score (z-scored across the bank, first probe seed) vs oracle accuracy, one panel per target."""
    from matplotlib.figure import Figure

    columns = min(3, len(data.targets))
    rows = math.ceil(len(data.targets) / columns)
    figure = Figure(figsize=(4.6 * columns, 3.8 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    seed = data.seeds[0]
    for ax, target in zip(axes, data.targets, strict=False):
        for name, marker in zip(names, "os^Dvx<>", strict=False):
            ms = methods[name][(target, seed)]
            models = [m for m in data.oracle[target] if math.isfinite(ms.scores.get(m, math.nan))]
            s = np.array([ms.scores[m] for m in models])
            o = np.array([data.oracle[target][m] for m in models])
            z = (s - s.mean()) / s.std() if len(s) > 1 and s.std() > 0 else np.zeros_like(s)
            ax.scatter(z, o, marker=marker, alpha=0.75, label=f"{name} (r={_fmt(pearson_x100(s, o), 0)})")
        ax.set_title(target)
        ax.set_xlabel("score, z across the bank")
        ax.set_ylabel("oracle test accuracy (%)")
        ax.legend(fontsize="x-small")
    for ax in axes[len(data.targets):]:
        ax.set_visible(False)
    figure.suptitle(f"score vs fine-tuned accuracy (probe seed {seed})")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120)
    return path


def wide(console: Console, width: int = 160) -> Console:
    """``console`` itself on a terminal; on a log file, a console on the same file that does not wrap a
    table at rich's default 80 columns."""
    return console if console.is_terminal else Console(file=console.file, width=width)


def console_table(summary, targets: Sequence[str], caption: str) -> Table:
    header, rows = table_cells(summary, targets, spread=False)
    return numbers_table("Transferability benchmark (PARC protocol): score vs fine-tuned accuracy", header, rows,
                         caption)


def numbers_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], caption: str | None = None
                  ) -> Table:
    """A rich table of a label column (left-aligned) and columns of numbers (right-aligned)."""
    table = Table(title=title, caption=caption)
    for index, column in enumerate(header):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table
