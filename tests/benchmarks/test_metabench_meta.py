"""The meta-benchmark's evaluation (``python -m automl.bench``): held-out folds that never leak, the
procedures that pick scores on the training folds, and the metrics of every kind of method."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from automl.predictor.inputs import Candidate
from automl.predictor.shipped import Cell
from benchmarks.metabench.meta import (
    CEILING,
    best_subset,
    bootstrap_interval,
    ceiling_method,
    certainty_cells,
    evaluate,
    folds,
    model_method,
    per_bank_cells,
    static_method,
    summarize,
    table_cells,
)
from benchmarks.metabench.metrics import cluster_bootstrap


@pytest.mark.parametrize("protocol", ["bank", "arch", "target", "both"])
def test_every_cell_is_held_out_once_and_never_trained_on(meta, protocol):
    held_out = []
    for train, test in folds(meta.cells, protocol):
        assert train and test
        banks, targets = {c.bank for c in test}, {c.target for c in test}
        if protocol in ("bank", "arch", "both"):
            assert not banks & {c.bank for c in train}
        if protocol == "arch":  # no model of a held-out architecture is trained on; the others all are
            archs = {arch for c in test for arch in c.archs}
            assert not archs & {arch for c in train for arch in c.archs}
            assert sum(len(c.candidates) for c in train) == sum(
                arch not in archs for c in meta.cells if c.bank not in banks for arch in c.archs)
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


def held_out_rows(method: str, value, banks=("b0", "b1"), targets=("t0", "t1", "t2"), seeds=(0, 1),
                  protocol: str = "bank") -> list[dict]:
    """Rows as :func:`evaluate` writes them, every metric ``value(bank, target, seed)``."""
    metrics = ("pearson", "weighted_tau", "top1_regret", "mae")
    return [{"method": method, "protocol": protocol, "bank": b, "target": t, "seed": s,
             **{m: value(b, t, s) for m in metrics}} for b in banks for t in targets for s in seeds]


def test_the_bootstrap_redraws_whole_banks_not_single_cells():
    """Two banks, one at 10 and one at 0 on every target: a bank is the unit, so a quarter of the draws hold
    only the bad bank and a quarter only the good one, and the 90% interval spans both (a bootstrap of the 12
    cells would put it near 5)."""
    rows = held_out_rows("m", lambda b, t, s: 10.0 if b == "b0" else 0.0)
    assert bootstrap_interval(rows, "m", "bank", "mae") == (5.0, 0.0, 10.0)
    targets_only = held_out_rows("m", lambda b, t, s: {"t0": 0.0, "t1": 3.0, "t2": 6.0}[t])
    mean, low, high = bootstrap_interval(targets_only, "m", "bank", "mae")
    assert mean == 3.0 and low < 2.0 and high > 4.0  # the targets are redrawn too


def test_a_paired_difference_removes_what_both_methods_share():
    """A method 2 points above its baseline in every cell is surely ahead, however much the cells vary."""
    def base(b, t, s):
        return 10.0 * int(b[1]) + 7.0 * int(t[1]) + s

    rows = held_out_rows("base", base) + held_out_rows("better", lambda b, t, s: base(b, t, s) + 2.0)
    _, low, high = bootstrap_interval(rows, "better", "bank", "pearson")
    assert high - low > 10  # alone, the method is uncertain
    assert bootstrap_interval(rows, "better", "bank", "pearson", baseline="base") == pytest.approx((2.0, 2.0, 2.0))
    partial = held_out_rows("base", base, banks=("b1",)) + held_out_rows("better", lambda b, t, s: base(b, t, s) + 3.0 * int(b[1]))
    assert bootstrap_interval(partial, "better", "bank", "pearson", baseline="base") == pytest.approx((3.0, 3.0, 3.0))


def test_the_bootstrap_averages_probe_seeds_and_leaves_out_nan():
    rows = held_out_rows("m", lambda b, t, s: float(s))  # seeds 0 and 1: every (bank, target) averages 0.5
    rows[0]["mae"] = float("nan")  # b0/t0 keeps its seed 1 only
    mean, low, high = bootstrap_interval(rows, "m", "bank", "mae")
    assert mean == pytest.approx((1.0 + 5 * 0.5) / 6) and low <= mean <= high
    with pytest.raises(ValueError, match="no rows of method 'other' under protocol 'bank'"):
        bootstrap_interval(rows, "other", "bank", "mae")
    with pytest.raises(ValueError, match=r"level=1\.5"):
        bootstrap_interval(rows, "m", "bank", "mae", level=1.5)


def test_with_one_bank_only_the_targets_are_redrawn():
    values = np.array([[0.0, 10.0]])  # one bank, two targets: a quarter of the draws hold each target twice
    assert cluster_bootstrap(values) == (5.0, 0.0, 10.0)
    assert cluster_bootstrap(np.array([[4.0, np.nan]])) == (4.0, 4.0, 4.0)
    assert np.isnan(cluster_bootstrap(np.full((2, 3), np.nan))).all()  # no value, no interval
    with pytest.raises(ValueError, match=r"\[banks, targets\] array, got shape \(6,\)"):
        cluster_bootstrap(np.zeros(6))


def test_the_certainty_table_sets_the_predictor_against_a_baseline_score():
    rows = [row for protocol in ("bank", "both") for row in
            held_out_rows("model:boosting", lambda b, t, s: 3.0 + int(b[1]), protocol=protocol)
            + held_out_rows("linear", lambda b, t, s: 1.0 + int(b[1]), protocol=protocol)]
    header, table = certainty_cells(rows, "model:boosting", "linear", ["bank", "both"])
    assert header[:3] == ["protocol", "Pearson", "Pearson − linear"] and [line[0] for line in table] == ["bank", "both"]
    assert all(len(line) == len(header) for line in table)
    pearson, lead, tau_lead = table[0][1:4]
    assert pearson == "3.5 [3.0, 4.0]" and lead == "2.0 [2.0, 2.0]" and tau_lead == "2.00 [2.00, 2.00]"


def test_the_per_bank_table_reads_each_held_out_bank_on_its_own():
    """Bank b1 is where the predictor trails the baseline: a mean over banks would hide it, its own row
    shows it, with an interval from its targets alone (b0 constant across targets: a zero-width one)."""
    rows = (held_out_rows("model:boosting", lambda b, t, s: 5.0 if b == "b0" else {"t0": 1.0, "t1": 2.0, "t2": 3.0}[t])
            + held_out_rows("linear", lambda b, t, s: 4.0))
    for row in rows:
        row["coverage"] = 0.5 if row["bank"] == "b0" else 1.0
    header, table = per_bank_cells(rows, "model:boosting", "linear", protocol="bank")
    assert per_bank_cells(rows, "model:boosting", "linear", protocol="arch")[1] == []  # no bank judged under it
    assert header[:3] == ["held-out bank", "Pearson", "Pearson − linear"] and [line[0] for line in table] == ["b0", "b1"]
    assert table[0][1:3] == ["5.0 [5.0, 5.0]", "1.0 [1.0, 1.0]"] and table[0][-1] == "50"
    mean, low, high = table[1][2].replace("[", "").replace(",", "").replace("]", "").split()
    assert float(mean) == -2.0 and float(low) < -2.0 < float(high) and table[1][-1] == "100"
