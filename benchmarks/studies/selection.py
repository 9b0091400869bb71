"""Replay the fine-tuning stage's warm start on the meta-benchmark's real validation curves: which model
it hands back, against brute force, for each pruning and top-k policy. Seconds, no training.

    python -m benchmarks.studies.selection
    python -m benchmarks.studies.selection 'top_k=[3]' 'first_rung=[5,10]'

Per cell (bank x target x probe seed): the predictor ranks the bank with the bank and the target held out
(as the end-to-end benchmark does), and its top-k models are "fine-tuned" with the default recipe, which
is the oracle recipe: their per-epoch validation accuracies are the oracle fits' (``oracle.csv``). The
trials are replayed in rank order through the pruner the pipeline builds (a real in-memory Optuna study),
and the completed trial with the best validation accuracy is the pick, as ``finetune.csv`` would have it.
Columns: the pick's oracle test accuracy minus the bank's best (brute force), the share of cells more than
2 points below it, and the epochs run (x MFLOPs, the pick's refit included) as a share of brute force's
whole fits (12 x the recipe's epochs). Not simulated: the search's sampled trials, and the refit's gain on
the larger training set. Rows are split into the targets the recipe was tuned on and the held-out ones
(README).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import optuna
from rich.console import Console
from rich.table import Table

from automl.finetune.study import make_pruner
from automl.predictor.shipped import Cell, load_meta
from automl.settings import FinetuneSettings, PredictorSettings
from benchmarks._script import parse
from benchmarks.metabench.meta import held_out_scores, model_method

TUNING_TARGETS = ("digits", "glyphs", "shapes")  # the end-to-end benchmark's tuning targets (README)


@dataclass
class Settings:
    top_k: list[int] = field(default_factory=lambda: [2, 3, 4, 12])  # each with the default pruner
    first_rung: list[int] = field(default_factory=lambda: [5, 10, 15, 31])  # each with top_k 3; 31 = never pruned


def replay(curves: list[list[float]], settings: FinetuneSettings) -> list[tuple[int, float | None]]:
    """(epochs run, best validation accuracy or None when pruned) per curve, in order, through one study
    with the pipeline's pruner."""
    study = optuna.create_study(direction="maximize", pruner=make_pruner(settings))
    trials = []
    for curve in curves:
        trial = study.ask()
        for epoch, accuracy in enumerate(curve):
            trial.report(accuracy, epoch)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                trials.append((epoch + 1, None))
                break
        else:
            study.tell(trial, max(curve))
            trials.append((len(curve), max(curve)))
    return trials


def outcome(cell: Cell, ranking: np.ndarray, mflops: np.ndarray, top_k: int, settings: FinetuneSettings
            ) -> tuple[float, float]:
    """(the pick's oracle accuracy minus the bank's best in points, compute as a share of brute force);
    ``ranking`` and ``mflops`` [N] per candidate of ``cell``."""
    top = np.argsort(-ranking, kind="stable")[:top_k]
    trials = replay([cell.oracle_curves[i] for i in top], settings)
    pick = top[max((accuracy, j) for j, (_, accuracy) in enumerate(trials) if accuracy is not None)[1]]
    full_fits = np.array([len(curve) for curve in cell.oracle_curves]) * mflops  # the oracle recipe's whole fits
    trial_cost = sum(ran * mflops[i] for (ran, _), i in zip(trials, top, strict=True))
    return cell.oracle[pick] - cell.oracle.max(), (trial_cost + full_fits[pick]) / full_fits.sum()


def main() -> None:
    settings = parse(Settings, __doc__)
    data = load_meta()
    rankings = {cell.name: scores for cell, scores, _ in held_out_scores(data.cells, model_method(PredictorSettings().kind), "both")}
    model_mflops = {name: float(row["mflops"]) for name, row in data.models.items()}
    mflops = {cell.name: np.array([model_mflops[c.model_name] for c in cell.candidates]) for cell in data.cells}
    default_rung = FinetuneSettings().first_rung
    policies = dict.fromkeys([(k, default_rung) for k in settings.top_k] + [(3, r) for r in settings.first_rung])
    table = Table(title="Warm start replayed on the oracle's validation curves",
                  caption="ranked with the bank and the target held out; compute: epochs x MFLOPs of the trials "
                          "and the refit, as a share of brute force's")
    for column in ("top-k", "first rung", "targets", "pick - brute force (pts)", "> 2 below", "compute (median)"):
        table.add_column(column, justify="right")
    for top_k, first_rung in policies:
        finetune = dataclasses.replace(FinetuneSettings(), first_rung=first_rung)
        for label, tuning in (("tuning", True), ("held out", False)):
            results = np.array([outcome(cell, rankings[cell.name], mflops[cell.name], top_k, finetune)
                                for cell in data.cells if (cell.target in TUNING_TARGETS) == tuning])
            table.add_row(str(top_k), str(finetune.first_rung), label, f"{results[:, 0].mean():+.2f}",
                          f"{100 * np.mean(results[:, 0] < -2):.0f}%", f"{100 * np.median(results[:, 1]):.0f}%")
    Console().print(table)


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    main()
