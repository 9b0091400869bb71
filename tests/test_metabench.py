"""The meta-benchmark's evaluation (``python -m automl.bench``): held-out folds that never leak, the
procedures that pick scores on the training folds, and the metrics of every kind of method."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from automl.bench.meta import (
    CEILING,
    best_subset,
    ceiling_method,
    evaluate,
    folds,
    model_method,
    static_method,
    summarize,
    table_cells,
)
from automl.predictor.features import Candidate
from automl.predictor.shipped import Cell


@pytest.mark.parametrize("protocol", ["bank", "target", "both"])
def test_every_cell_is_held_out_once_and_never_trained_on(meta, protocol):
    held_out = []
    for train, test in folds(meta.cells, protocol):
        assert train and test
        banks, targets = {c.bank for c in test}, {c.target for c in test}
        if protocol in ("bank", "both"):
            assert not banks & {c.bank for c in train}
        if protocol in ("target", "both"):
            assert not targets & {c.target for c in train}
        held_out += [c.name for c in test]
    assert sorted(held_out) == sorted(c.name for c in meta.cells)


def synthetic_cells(count: int = 6, models: int = 10, seed: int = 0) -> list[Cell]:
    """Cells whose oracle is the sum of scores ``a`` and ``b``; ``c`` is noise."""
    rng = np.random.default_rng(seed)
    cells = []
    for index in range(count):
        z = rng.normal(size=(models, 3))
        candidates = [Candidate(f"m{i}", {}, dict(zip("abc", row, strict=True))) for i, row in enumerate(z)]
        oracle = 50 + 10 * (z[:, 0] + z[:, 1])
        cells.append(Cell("bank", f"target{index}", 0, candidates, oracle, oracle + rng.normal(0, 1, models)))
    return cells


def test_the_z_mean_search_finds_the_scores_the_oracle_is_made_of():
    cells = synthetic_cells()
    assert best_subset(cells, ["a", "b", "c"], max_size=3) == ("a", "b")
    assert best_subset(cells, ["c", "b", "a"], max_size=1) in {("a",), ("b",)}


def test_the_ceiling_ranks_by_validation_and_its_mae_is_the_split_noise(meta):
    cells = [c for c in meta.cells if c.seed == 0][:6]
    rows = evaluate(dataclasses.replace(meta, cells=cells), [ceiling_method()], ["target"])
    assert {r["method"] for r in rows} == {CEILING} and len(rows) == len(cells)
    by_cell = {(r["bank"], r["target"], r["seed"]): r for r in rows}
    for cell in cells:
        row = by_cell[(cell.bank, cell.target, cell.seed)]
        assert row["mae"] == pytest.approx(np.mean(np.abs(cell.oracle_val - cell.oracle)))
        best_by_val = cell.oracle_val == cell.oracle_val.max()
        assert row["top1_regret"] == pytest.approx(cell.oracle.max() - cell.oracle[best_by_val].mean())
        assert "coverage" not in row  # an accuracy, but no interval


def test_a_fitted_model_is_judged_held_out_with_accuracies_and_intervals(meta):
    cells = [c for c in meta.cells if c.seed == 0 and c.target in meta.targets[:4]]
    rows = evaluate(dataclasses.replace(meta, cells=cells), [model_method("ridge"), static_method("params", "num_params")],
                    ["target"])
    summary = {entry["method"]: entry for entry in summarize(rows, "target")}
    model, params = summary["model:ridge"], summary["params"]
    assert 0 < model["mae"] < 30 and 0.3 < model["coverage"] <= 1 and 0 < model["width"] < 60
    assert model["pearson"] > params["pearson"] + 10  # a fitted model beats "pick the biggest"
    assert np.isnan(params["mae"])  # a static score is no accuracy
    header, table = table_cells({"both": summarize(rows, "target"), "target": summarize(rows, "target")})
    assert len(header) == len(table[0]) and [row[0] for row in table] == ["model:ridge", "params"]


def test_each_shipped_validation_curve_is_its_own_models_fit(meta):
    """The curves are read beside the accuracies: every one peaks at its fit's recorded validation accuracy."""
    for cell in meta.cells:
        assert len(cell.oracle_curves) == len(cell.candidates)
        peaks = np.array([max(curve) for curve in cell.oracle_curves])
        np.testing.assert_allclose(peaks, cell.oracle_val, atol=0.01)
