"""The meta-benchmark's shipped records (``automl/predictor/metabench``, measured by the repository's
``python -m automl.bench bench.mode=build``): 7 banks x 9 targets x 5 probe seeds of transferability
scores next to the fine-tuned (oracle) accuracy, read as *cells* — one bank on one target with one probe
set. They train the cold-start accuracy model and are what ``python -m automl.bench`` judges rankings on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automl._fileio import read_csv_rows
from automl.errors import AutomlError
from automl.predictor.inputs import Candidate, bank_candidates, bank_features

DATA_DIR = Path(__file__).resolve().parent / "metabench"
FILES = ("models.csv", "targets.csv", "oracle.csv", "scores.csv", "recipe.json")
MODEL_META = ("num_params", "depth", "mflops", "source_num_images", "source_num_classes", "num_classes",
              "source_accuracy")


@dataclass
class Cell:
    """One bank on one target with one probe set: its models, their scores and oracle accuracies."""

    bank: str
    target: str
    seed: int
    candidates: list[Candidate]
    oracle: np.ndarray  # [N] test accuracy (percent) of the fixed recipe
    oracle_val: np.ndarray  # [N] the same fits' validation accuracy (percent), NaN where not recorded
    oracle_curves: list[list[float]] = field(default_factory=list)  # [N] their validation accuracy per epoch
    features: np.ndarray = field(default_factory=lambda: np.empty(0))  # [N, F] accuracy-model features
    archs: list[str] = field(default_factory=list)  # [N] each model's timm architecture ("" unknown)

    @property
    def chance(self) -> np.ndarray:
        return np.array([c.chance for c in self.candidates])

    def without_archs(self, archs: set[str]) -> Cell | None:
        """This cell without the models of ``archs`` (features kept as the whole bank gave them: they are
        probe-time information); None when fewer than two models remain."""
        keep = [arch not in archs for arch in self.archs] if self.archs else [True] * len(self.candidates)
        if sum(keep) < 2:
            return None
        index = np.flatnonzero(keep)
        return Cell(self.bank, self.target, self.seed, [self.candidates[i] for i in index], self.oracle[index],
                    self.oracle_val[index], [self.oracle_curves[i] for i in index] if self.oracle_curves else [],
                    self.features[index] if len(self.features) else self.features,
                    [self.archs[i] for i in index] if self.archs else [])

    @property
    def name(self) -> str:
        """``bank/target/seed``: the cell's identity, as the accuracy model's ``cells`` argument takes it."""
        return f"{self.bank}/{self.target}/{self.seed}"


@dataclass
class MetaData:
    cells: list[Cell]
    score_names: list[str]
    banks: list[str]
    targets: list[str]
    models: dict[str, dict]  # model -> models.csv row
    recipe: dict


def load_meta(folder: str | Path | None = None) -> MetaData:
    """The meta-benchmark's data files in ``folder`` (default: the shipped copy) as cells."""
    folder = Path(folder) if folder is not None else DATA_DIR
    try:
        models = {row["model"]: row for row in read_csv_rows(folder / "models.csv")}
        targets = {row["target"]: row for row in read_csv_rows(folder / "targets.csv")}
        oracle_rows = read_csv_rows(folder / "oracle.csv")
        oracle = {(row["model"], row["target"]): float(row["test_accuracy"]) for row in oracle_rows}
        oracle_val = {(row["model"], row["target"]): _number(row.get("val_accuracy")) for row in oracle_rows}
        curves = {(row["model"], row["target"]): json.loads(row.get("val_curve") or "[]") for row in oracle_rows}
        score_rows = read_csv_rows(folder / "scores.csv")
        recipe = json.loads((folder / "recipe.json").read_text())
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise AutomlError(f"{folder}: not meta-benchmark data ({type(exc).__name__}: {exc}); build it with "
                          "python -m automl.bench bench.mode=build") from exc
    score_names = sorted(c for c in score_rows[0] if c not in ("bank", "model", "target", "seed")
                         and not c.startswith("ms_"))
    grouped: dict[tuple[str, str, int], dict[str, dict[str, float]]] = {}
    for row in score_rows:
        key = (row["bank"], row["target"], int(row["seed"]))
        grouped.setdefault(key, {})[row["model"]] = {n: _number(row[n]) for n in score_names}
    cells = []
    for (bank, target, seed), scores in grouped.items():
        meta = {m: {k: _number(models[m][k]) for k in MODEL_META} for m in scores}
        task = {k: _number(targets[target][k]) for k in ("num_classes", "num_train", "image_side")}
        candidates = bank_candidates(scores, meta, task)
        cell = Cell(bank, target, seed, candidates, np.array([oracle[(m, target)] for m in scores]),
                    np.array([oracle_val[(m, target)] for m in scores]), [curves[(m, target)] for m in scores],
                    archs=[models[m].get("arch", "") for m in scores])
        cell.features = bank_features(candidates, score_names)
        cells.append(cell)
    return MetaData(cells, score_names, sorted({c.bank for c in cells}), sorted({c.target for c in cells}), models,
                    recipe)


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
