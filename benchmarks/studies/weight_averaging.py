"""Weight averaging (EMA) against the plain recipe, paired in the very same fits.

    OMP_NUM_THREADS=1 python -m benchmarks.studies.weight_averaging 'banks=[fresh]' &
    OMP_NUM_THREADS=1 python -m benchmarks.studies.weight_averaging 'banks=[blind]'
    python -m benchmarks.studies.weight_averaging 'banks=[fresh,blind]' report_only=true

Issue 12's lever "EMA of the weights, when it helps on val": every model of ``banks`` is fine-tuned on
``targets`` with the meta-benchmark's fixed recipe (the oracle's), and while it trains an exponential moving
average of its weights (parameters and batch-norm statistics) is kept for each half-life of ``half_lives``
(a share of the run's optimizer steps: decay = 0.5 ** (1 / (half_life x steps)), so the average spans the
same part of any run's schedule). Each average is validated every epoch beside the raw weights, and the test
split measures, once each: the raw weights at their best validation epoch (what a trial keeps) and at the
last epoch (what a refit on train + val keeps), and each average at its best validation epoch and at the end.

Fixed before measuring: the half-life is chosen on one bank and reported on the other (leave one bank out);
the figure that decides is the held-out gain of the final model a refit would export (the average at the
end against the raw last weights), over brute force's best per (bank, target) and over all fits.

Rows (one per bank model x target) go to ``out/<bank>.csv`` as each fit ends: an interrupted run resumes.
The banks are those of ``python -m automl.bench bench.mode=build`` (built first where missing: about 17
minutes each here); each fit takes about 20 s, 144 fits about an hour with the two processes above.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from automl._fileio import read_csv_rows
from automl._progress import progress_bar
from automl.bank import create_model, load_bank
from automl.deploy.exported import EVAL_BATCH_SIZE
from automl.finetune.data import TaskDataModule
from automl.finetune.fit import fit_once, predict_split, quiet_libraries, torch_threads
from automl.finetune.module import cpu_state
from automl.images.tasks import load_task
from automl.settings import BankSettings, resolve
from benchmarks._script import parse
from benchmarks.metabench.build import built_bank_folder
from benchmarks.metabench.measure import target_settings
from benchmarks.metabench.metrics import cluster_bootstrap
from benchmarks.metabench.tables import wide, write_results_csv
from benchmarks.settings import compose_bench

E2E_TARGETS = ["characters", "fewshot", "fonts", "materials", "scenes", "terrain"]


@dataclass
class Settings:
    banks: list[str] = field(default_factory=lambda: ["fresh", "blind"])
    targets: list[str] = field(default_factory=lambda: list(E2E_TARGETS))
    half_lives: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1])  # shares of the run's steps
    out: str = "outputs/weight_averaging"
    threads: int = 1  # torch threads per process
    report_only: bool = False


class Averages(pl.Callback):
    """EMAs of the module's model, one per half-life; each validated every epoch, its best-validation and
    last states kept on the CPU (``best[h]``, ``best_val[h]``, ``last[h]``, ``last_val[h]``); the raw weights'
    last state in ``raw_last``."""

    def __init__(self, half_lives: Sequence[float]):
        self.half_lives = list(half_lives)

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        steps = max(1, int(trainer.estimated_stepping_batches))
        self.averages = {h: AveragedModel(module.model, use_buffers=True,
                                          multi_avg_fn=get_ema_multi_avg_fn(0.5 ** (1.0 / max(1.0, h * steps))))
                         for h in self.half_lives}
        self.best_val = {h: -math.inf for h in self.half_lives}
        self.best: dict[float, dict] = {}
        self.last_val: dict[float, float] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        for average in self.averages.values():
            average.update_parameters(module.model)

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for h, average in self.averages.items():
            accuracy = split_accuracy(average.module, trainer.datamodule, "val", str(module.device))
            self.last_val[h] = accuracy
            if accuracy > self.best_val[h]:
                self.best_val[h], self.best[h] = accuracy, cpu_state(average.module)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.last = {h: cpu_state(average.module) for h, average in self.averages.items()}
        self.raw_last = cpu_state(module.model)


def split_accuracy(model: torch.nn.Module, datamodule: TaskDataModule, split: str, device: str = "cpu") -> float:
    """Percent of ``split``'s images ``model`` classifies right, evaluated as a trial's test split is."""
    predicted = predict_split(model, datamodule, split, device)
    return 100.0 * float(np.mean(predicted == datamodule.task.splits[split].labels))


def _test_accuracy(model: torch.nn.Module, state: dict, datamodule: TaskDataModule) -> float:
    model.load_state_dict(state)
    return split_accuracy(model, datamodule, "test")


def measure(settings: Settings, bank_name: str, console: Console) -> None:
    bench = resolve(compose_bench([]))
    hparams, finetune = bench.bench.oracle.hparams, bench.finetune
    finetune = dataclasses.replace(finetune, augment=bench.bench.oracle.augment, progress_bar=False)
    tasks = [load_task(t, Path(bench.cache_dir)) for t in target_settings(bench.task, settings.targets)]
    bank = load_bank(BankSettings(name=bank_name, dir=str(built_bank_folder(bench, bank_name))), Path(bench.cache_dir))
    out = Path(settings.out) / f"{bank_name}.csv"
    rows = read_csv_rows(out) if out.is_file() else []
    done = {(row["model"], row["target"]) for row in rows}
    todo = [(entry, task) for task in tasks for entry in bank if (entry.name, task.name) not in done]
    with progress_bar() as progress, quiet_libraries(), torch_threads(settings.threads):
        bar = progress.add_task(f"weight averaging: {bank_name}", total=len(todo))
        for entry, task in todo:
            averages = Averages(settings.half_lives)
            result = fit_once(entry, task, hparams, finetune, seed=bench.seed, progress_bar=False, callbacks=[averages])
            model = create_model(entry, num_classes=task.num_classes)
            data = TaskDataModule(task, result.data_config, EVAL_BATCH_SIZE)
            row = {"bank": bank_name, "model": entry.name, "target": task.name, "raw_best_val": result.val_accuracy,
                   "raw_best_test": result.test_accuracy, "raw_last_val": result.val_curve[-1],
                   "raw_last_test": _test_accuracy(model, averages.raw_last, data)}
            for h in settings.half_lives:
                row |= {f"ema{h:g}_best_val": averages.best_val[h],
                        f"ema{h:g}_best_test": _test_accuracy(model, averages.best[h], data),
                        f"ema{h:g}_last_val": averages.last_val[h],
                        f"ema{h:g}_last_test": _test_accuracy(model, averages.last[h], data)}
            rows.append(row | {"seconds": round(result.seconds, 2)})
            write_results_csv(out, rows)
            progress.advance(bar)


def report(settings: Settings, console: Console) -> None:
    rows = [row for bank in settings.banks for row in read_csv_rows(Path(settings.out) / f"{bank}.csv")]
    value = lambda row, column: float(row[column])  # noqa: E731
    variants = [f"ema{h:g}" for h in settings.half_lives]

    def gains(bank_rows, variant, kind):
        """Per fit, and per (bank, target) for brute force's best: the average's test accuracy minus the raw
        weights' (``kind``: last = what a refit exports, best = the best validation epoch, what a trial keeps)."""
        per_fit = np.array([value(r, f"{variant}_{kind}_test") - value(r, f"raw_{kind}_test") for r in bank_rows])
        cells: dict[tuple[str, str], list] = {}
        for r in bank_rows:
            cells.setdefault((r["bank"], r["target"]), []).append(r)
        best = np.array([max(value(r, f"{variant}_{kind}_test") for r in c) - max(value(r, f"raw_{kind}_test") for r in c)
                         for c in cells.values()])
        return per_fit, best, [r["target"] for r in bank_rows], list(cells)

    table = Table(title="EMA minus raw weights, test accuracy (points): mean over fits | over brute force's best per cell",
                  caption="last: the weights at the end (a refit's); best: at the best validation epoch (a trial's)")
    for column in ("bank", "fits", *(f"{v} {k}" for v in variants for k in ("last", "best"))):
        table.add_column(column, justify="left" if column == "bank" else "right")
    for bank in settings.banks:
        bank_rows = [r for r in rows if r["bank"] == bank]
        cells = []
        for variant in variants:
            for kind in ("last", "best"):
                per_fit, best, _, _ = gains(bank_rows, variant, kind)
                cells.append(f"{per_fit.mean():+.2f} | {best.mean():+.2f}")
        table.add_row(bank, str(len(bank_rows)), *cells)
    wide(console).print(table)
    if len(settings.banks) < 2:
        return
    # Leave one bank out: the half-life with the best mean last-weights gain over all fits of the other banks.
    held_out_fit, held_out_best, cell_gain = [], [], {}
    for bank in settings.banks:
        tuning = [r for r in rows if r["bank"] != bank]
        chosen = max(variants, key=lambda v: gains(tuning, v, "last")[0].mean())
        per_fit, best, targets, _ = gains([r for r in rows if r["bank"] == bank], chosen, "last")
        console.print(f"held out {bank}: {chosen} (chosen on the others) gains {per_fit.mean():+.2f} points per fit "
                      f"({np.mean(per_fit > 0):.0%} of fits up, {np.mean(per_fit < 0):.0%} down), "
                      f"{best.mean():+.2f} on brute force's best")
        held_out_fit += list(per_fit)
        held_out_best += list(best)
        for target in sorted(set(targets)):
            cell_gain[bank, target] = per_fit[np.array(targets) == target].mean()
    banks, targets = sorted({b for b, _ in cell_gain}), sorted({t for _, t in cell_gain})
    matrix = np.array([[cell_gain.get((b, t), np.nan) for t in targets] for b in banks])
    _, low, high = cluster_bootstrap(matrix)
    console.print(f"held out, all banks: {np.mean(held_out_fit):+.2f} points per fit (90% interval {low:+.2f} to "
                  f"{high:+.2f}, banks and targets redrawn), {np.mean(held_out_best):+.2f} on brute force's best")


def main() -> None:
    settings = parse(Settings, __doc__)
    console = Console()
    if not settings.report_only:
        for bank in settings.banks:
            measure(settings, bank, console)
    report(settings, console)


if __name__ == "__main__":
    main()
