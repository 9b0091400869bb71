"""The benchmark (benchmarks.metabench): metrics against hand-computed values, the oracle's cache and resume on a
tiny bank x 2 tiny targets (real fits, nothing mocked), and the paper's file formats incl. the pickle refusal."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image_folder, write_random_bank

from automl._fileio import read_csv_rows
from automl.history import History
from automl.settings import FinetuneSettings, Hparams, SettingsError, compose, resolve
from automl.transferability import score
from benchmarks import metabench as bench
from benchmarks.metabench.run import _own_data
from benchmarks.settings import OracleSettings, compose_bench

pytestmark = [pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning"),  # Lightning's
              pytest.mark.filterwarnings("ignore::scipy.stats.NearConstantInputWarning")]  # tiny oracles tie

REPO = Path(__file__).resolve().parents[2]
ARCHS = {"resnet_a": ("test_resnet", {}), "effnet_a": ("test_efficientnet", {}), "convnext_a": ("test_convnext", {})}


# -------------------------------------------------------------------------------------------- metrics
def test_correlations_match_hand_computed_values():
    # x = [1, 2, 3], y = [1, 2, 4]: cov = 3, |dx| = sqrt(2), |dy| = sqrt(42)/3, r = 9 / sqrt(84)
    assert bench.pearson_x100([1, 2, 3], [1, 2, 4]) == pytest.approx(100 * 9 / math.sqrt(84))
    # one discordant pair of 6: tau = (5 - 1) / 6
    assert bench.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # weights 1/(rank+1): pairs (0,1) +1 x 3/2, (0,2) +1 x 4/3, (1,2) -1 x 5/6 -> 2 / (11/3), either ranking
    assert bench.weighted_tau([3, 2, 1], [3, 1, 2]) == pytest.approx(6 / 11)
    assert bench.weighted_tau([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # a non-finite score leaves its model out; a constant side leaves the correlation undefined
    assert bench.pearson_x100([1, np.nan, 2, 3], [1, 50, 2, 4]) == pytest.approx(100 * 9 / math.sqrt(84))
    assert math.isnan(bench.pearson_x100([1, 1, 1], [1, 2, 3]))
    assert math.isnan(bench.kendall_tau([1], [2]))
    with pytest.raises(ValueError, match="one length"):
        bench.pearson_x100([1, 2], [1, 2, 3])


def test_regret_and_top_k_match_hand_computed_values():
    oracle = [80.0, 90.0, 85.0, 70.0, 60.0]
    assert bench.top1_regret([0.3, 0.1, 0.2, 0.0, -1], oracle) == pytest.approx(10.0)  # picks 80 of best 90
    assert bench.top1_regret([0.1, 0.3, 0.2, 0.0, -1], oracle) == 0.0
    assert bench.top1_regret([1, 1, 0, 0, 0], oracle) == pytest.approx(90 - (80 + 90) / 2)  # tie: mean
    inf_never_wins = [np.nan, 0.0, np.inf, 1.0, np.nan]
    assert bench.top1_regret(inf_never_wins, oracle) == pytest.approx(90 - 70)
    assert math.isnan(bench.top1_regret([np.nan] * 5, oracle))
    assert bench.top_k_hit([5, 1, 4, 3, 2], oracle, k=3) == 0.0  # best (index 1) is ranked 5th
    assert bench.top_k_hit([5, 3, 4, 1, 2], oracle, k=3) == 1.0  # ranked 3rd
    assert bench.top_k_hit([5, 1, 4, 1, 1], oracle, k=3) == 1.0  # ties keep bank order: index 1 is 3rd
    assert bench.top_k_regret([5, 1, 4, 3, 2], oracle, k=3) == pytest.approx(90 - 85)  # keeps 80, 85, 70
    assert bench.top_k_regret([5, 3, 4, 1, 2], oracle, k=3) == 0.0
    assert bench.top_k_regret([5, 1, 4, 3, 2], oracle, k=1) == pytest.approx(10.0)
    assert math.isnan(bench.top_k_regret([np.nan] * 5, oracle))
    assert bench.top_k_hit([5, 1, 4, 1, 1], oracle, k=2) == 0.0
    assert bench.top_k_hit([5, np.nan, 4, 3, 2], oracle, k=4) == 0.0  # NaN ranks last


def test_plasticity_pools_every_target_and_seed():
    values = {("a", 0): {"m1": 1.0, "m2": 3.0}, ("b", 0): {"m1": 5.0, "m2": 7.0}}
    out = bench.plasticity_scores(values, {"m1": 50, "m2": 100})
    std = math.sqrt((9 + 1 + 1 + 9) / 3)  # pooled over both targets, ddof 1; mean 4
    assert out[("a", 0)]["m1"] == pytest.approx(-3 / std + 1.0)
    assert out[("b", 0)]["m2"] == pytest.approx(3 / std + 2.0)
    assert math.isnan(bench.plasticity_scores({("a", 0): {"m1": np.nan, "m2": 1.0}}, {"m1": 1, "m2": 1})[("a", 0)]["m1"])


def test_summary_averages_targets_per_seed_then_seeds():
    rows = [{"method": "x", "target": t, "seed": s, "pearson": p, "kendall_tau": 0.0, "weighted_tau": 0.0,
             "top1_regret": 1.0, "top3_hit": h, "ms_per_model": 2.0}
            for t, s, p, h in [("a", 0, 10.0, 1.0), ("b", 0, 30.0, 0.0), ("a", 1, 50.0, 1.0), ("b", 1, 70.0, 1.0)]]
    (entry,) = bench.summarize(rows, ["a", "b"])
    assert entry["pearson_a"] == 30.0 and entry["pearson_b"] == 50.0
    assert entry["pearson"] == 40.0 and entry["pearson_std"] == 20.0  # seed means 20 and 60, ddof 0
    assert entry["top3_hit"] == 0.75 and entry["ms_per_model"] == 2.0


def test_recipe_id_changes_with_the_recipe_only():
    oracle = OracleSettings(hparams=Hparams(lr=1e-3, batch_size=8, epochs=2))
    base = bench.recipe_id(bench.oracle_recipe(oracle, FinetuneSettings(), 0))
    assert base == bench.recipe_id(bench.oracle_recipe(oracle, FinetuneSettings(top_k=5, n_trials=50), 0))
    assert base != bench.recipe_id(bench.oracle_recipe(OracleSettings(hparams=Hparams(lr=2e-3, batch_size=8, epochs=2)),
                                                       FinetuneSettings(), 0))
    assert base != bench.recipe_id(bench.oracle_recipe(oracle, FinetuneSettings(limit_train_batches=2), 0))
    assert base != bench.recipe_id(bench.oracle_recipe(oracle, FinetuneSettings(), 1))
    with pytest.raises(SettingsError, match=r"bench\.oracle\.hparams\.lr=-1"):
        resolve(compose_bench(["bench.oracle.hparams.lr=-1"]))


# ------------------------------------------------------------------------------------- bank x targets
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """3 random-init timm models (4-class heads, 32 px) and 2 three-class image folders."""
    root = write_random_bank(tmp_path_factory.mktemp("bench"), ARCHS, num_classes=4, num_images=100)
    for index, target in enumerate(("t1", "t2")):  # same layout, other pixels: two tasks
        write_image_folder(root / target, {c: 14 for c in ("a", "b", "c")}, start_seed=1000 * index)
    return {"root": root}


def tiny_cfg(tiny: dict[str, Path], work: Path, targets: list[str]):
    cfg = compose_bench([
        f"cache_dir={work}/cache", f"storage=sqlite:///{work}/history.db", f"bank.dir={tiny['root']}",
        "bank.name=tiny", "bank.build=null", "device=cpu", "probe.budget=12", "bench.probe_seeds=[0,1]",
        "bench.data=bank", "bench.oracle.hparams.epochs=1", "bench.oracle.hparams.batch_size=16",
        "bench.oracle.hparams.warmup_epochs=0", "finetune.limit_train_batches=1", "finetune.num_workers=0",
        "finetune.torch_threads=1",
    ])
    cfg.bench.targets = [{"root": str(tiny["root"] / t)} for t in targets]
    return resolve(cfg)


@pytest.mark.slow
def test_oracle_is_cached_and_resumes(tiny, tmp_path):
    first = bench.run_bench(tiny_cfg(tiny, tmp_path, ["t1"]), tmp_path / "run1")
    assert (first.oracle.trained, first.oracle.cached, first.oracle.failed) == (3, 0, {})

    # a second target: only its 3 transfers are trained, t1's come from the history
    second = bench.run_bench(tiny_cfg(tiny, tmp_path, ["t1", "t2"]), tmp_path / "run2")
    assert (second.oracle.trained, second.oracle.cached) == (3, 3)
    assert second.data.oracle["t1"] == first.data.oracle["t1"]
    with History(f"sqlite:///{tmp_path}/history.db") as history:
        records = history.records(kind="oracle")
    assert len(records) == 6 and {r.run_id for r in records} == {second.oracle.run_id}
    assert all(0 <= r.test_accuracy <= 100 and "linear" in r.scores and r.hparams["epochs"] == 1 for r in records)

    # a rerun trains nothing: same records (ids, times), same oracle, same results
    third = bench.run_bench(tiny_cfg(tiny, tmp_path, ["t1", "t2"]), tmp_path / "run3")
    assert (third.oracle.trained, third.oracle.cached) == (0, 6)
    with History(f"sqlite:///{tmp_path}/history.db") as history:
        again = history.records(kind="oracle")
    assert [(r.id, r.created_at) for r in again] == [(r.id, r.created_at) for r in records]
    assert third.data.oracle == second.data.oracle

    methods = {row["method"] for row in third.rows}
    assert {"parc", "parc+plasticity", "predictor", "linear"} <= methods
    assert len(third.rows) == len(methods) * 2 * 2  # methods x targets x seeds
    assert all(row["n_models"] == 3 for row in third.rows)
    assert third.files["csv"].read_text().splitlines()[0] == ",".join(bench.RESULT_COLUMNS)
    table = third.files["table"].read_text()
    assert "| parc+plasticity |" in table and "0 trained now" in table
    assert third.files["scatter"].stat().st_size > 0


# ---------------------------------------------------------------------------------------- paper data
class Payload:
    """Unpickling this creates ``marker``: proof that a pickle ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


PAPER_ARCHS = ("resnet18", "resnet50")
PAPER_SOURCES = ("imagenet", "oxford_pets")
PAPER_TARGETS = ("cifar10", "stanford_dogs")


def write_paper_files(root: Path, payload: object = None) -> tuple[Path, Path]:
    """A PARC-style oracle CSV and probe pickles (2 runs) for 2 archs x 2 sources x 2 targets."""
    rng = np.random.default_rng(0)
    lines = ["Architecture,Source Dataset,Target Dataset,Oracle"]
    probes = root / "probes" / "fixed_budget_500"
    probes.mkdir(parents=True)
    for target in PAPER_TARGETS:
        for i, (arch, source) in enumerate((a, s) for a in PAPER_ARCHS for s in PAPER_SOURCES):
            lines.append(f"{arch},{source},{target},{60 + 7 * i + rng.random():.4f}")
            for run in (0, 1):
                y = np.repeat(np.arange(3), 10)
                # the class signal grows with i, like the oracle: a working score correlates positively
                features = rng.normal(size=(30, 8)).astype(np.float32) + i * np.eye(3, 8)[y]
                probs = rng.dirichlet(np.ones(5), size=30).astype(np.float32)
                data = {"features": features, "probs": probs, "y": y, "source_dataset": source,
                        "target_dataset": target, "architecture": arch}
                if payload is not None:
                    data["extra"] = payload
                with (probes / f"{arch}_{source}_{target}_{run}.pkl").open("wb") as handle:
                    pickle.dump(data, handle)
    lines.append("resnet18,simclr_imagenet,cifar10,-1")  # not measured by the paper: skipped
    oracle_csv = root / "oracle.csv"
    oracle_csv.write_text("\n".join(lines) + "\n")
    return oracle_csv, probes


def paper_cfg(oracle_csv: Path, probes: Path, *extra: str):
    return resolve(compose_bench(["bench.data=paper", f"bench.paper.oracle_csv={oracle_csv}", f"bench.paper.probes_dir={probes}",
                            "bench.probe_seeds=[0,1]", *extra]))


def test_paper_oracle_csv_and_probe_pickles(tmp_path):
    oracle_csv, probes = write_paper_files(tmp_path)
    result = bench.run_bench(paper_cfg(oracle_csv, probes, "bench.trust_pickle=true"), tmp_path / "run")
    assert result.oracle is None and result.data.targets == list(PAPER_TARGETS)
    assert set(result.data.oracle["cifar10"]) == {f"{a}/{s}" for a in PAPER_ARCHS for s in PAPER_SOURCES}
    assert result.data.model_meta["resnet50/imagenet"]["depth"] == 50  # the paper's layer count

    with (probes / "resnet50_oxford_pets_cifar10_1.pkl").open("rb") as handle:
        probe = pickle.load(handle)
    assert result.data.scores[("cifar10", 1)]["resnet50/oxford_pets"]["parc"] == pytest.approx(
        score("parc", probe["features"], probe["y"], n_dims=32))
    rows = {(r["method"], r["target"], r["seed"]): r for r in result.rows}
    assert rows[("linear", "cifar10", 0)]["pearson"] > 50  # the planted signal is found
    assert {"parc+plasticity", "predictor"} <= {r["method"] for r in result.rows}

    # an .npz twin (same stem and keys) is read without pickle and wins over the .pkl
    np.savez(probes / "resnet50_oxford_pets_cifar10_1.npz", features=probe["features"] + 1, probs=probe["probs"],
             y=probe["y"])
    features = bench.load_probe(bench.probe_file(probes, "resnet50", "oxford_pets", "cifar10", 1))
    np.testing.assert_allclose(features.features, probe["features"] + 1)


@pytest.mark.slow
def test_pickles_are_refused_without_trust_pickle(tmp_path):
    marker = tmp_path / "payload_ran"
    oracle_csv, probes = write_paper_files(tmp_path, payload=Payload(marker))
    with pytest.raises(bench.PickleRefusedError, match=r"trust_pickle=true.*\.npz"):
        bench.run_bench(paper_cfg(oracle_csv, probes), tmp_path / "run")
    assert not marker.exists()

    # the same from the command line: a clear message and exit status 2, still nothing unpickled
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "automl.bench", "bench.data=paper", f"bench.paper.oracle_csv={oracle_csv}",
                           f"bench.paper.probes_dir={probes}", "bench.probe_seeds=[0,1]",
                           f"hydra.run.dir={tmp_path}/cli"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "bench.trust_pickle=true" in done.stderr, done.stderr[-2000:]
    assert not marker.exists()

    # the payload is live: trusting the file runs it (which is why the default refuses)
    bench.load_probe(probes / "resnet18_imagenet_cifar10_0.pkl", trust_pickle=True)
    assert marker.exists()


def test_bad_oracle_csv_is_named(tmp_path):
    path = tmp_path / "oracle.csv"
    path.write_text("Architecture,Source Dataset,Oracle\nresnet50,imagenet,90\n")
    with pytest.raises(bench.BenchError, match=r"line 1: missing column\(s\) \['Target Dataset'\]"):
        bench.read_oracle_csv(path)
    path.write_text("Architecture,Source Dataset,Target Dataset,Oracle\nresnet50,imagenet,cifar10,high\n")
    with pytest.raises(bench.BenchError, match="line 2: Oracle='high' is not a number"):
        bench.read_oracle_csv(path)
    with pytest.raises(bench.BenchError, match="y must be \\[N\\] integer class labels"):
        bench.probe_features({"features": np.zeros((4, 2)), "y": np.zeros((4, 3))}, "probe.pkl")


def test_the_meta_benchmark_refuses_a_bank_or_targets_it_would_ignore(tmp_path):
    for override, named in ((f"bank.dir={tmp_path}/mine", "bank.dir="),
                            (f"bench.targets=[digits,{{root: {tmp_path}}}]", r"bench.targets\[1\]")):
        settings = resolve(compose_bench([override]))
        with pytest.raises(bench.BenchError, match=rf"{named}.*not read by bench.data=meta.*bench.data=bank"):
            bench.run_bench(settings, tmp_path / "run")
    for overrides in ([], [f"cache_dir={tmp_path}/cache"], ["bench.targets=[fonts]"]):  # the benchmark's own data
        assert _own_data(resolve(compose_bench(overrides))) == ""


@pytest.mark.slow
def test_the_meta_benchmark_judges_methods_held_out_and_says_how_sure_it_is(tmp_path):
    """``python -m automl.bench`` on a slice of the shipped data (3 banks x 4 targets, one probe seed): the
    table of every method, then the default predictor's means with bootstrap intervals against the
    strongest single score."""
    from automl._fileio import atomic_copy
    from automl.predictor.shipped import DATA_DIR, load_meta
    from benchmarks.metabench.meta import folds
    from benchmarks.metabench.tables import write_results_csv

    banks, targets = {"budget", "classic", "rough"}, {"digits", "glyphs", "scenes", "fonts"}
    for name in ("models.csv", "targets.csv", "recipe.json"):
        atomic_copy(DATA_DIR / name, tmp_path / name)
    for name in ("oracle.csv", "scores.csv"):  # oracle.csv has no probe seed
        write_results_csv(tmp_path / name, [r for r in read_csv_rows(DATA_DIR / name) if r["bank"] in banks
                                             and r["target"] in targets and r.get("seed", "0") == "0"])
    settings = resolve(compose_bench([f"bench.meta_dir={tmp_path}", f"cache_dir={tmp_path}/cache"]))
    result = bench.run_bench(settings, tmp_path / "run")
    text = result.files["table"].read_text()
    predictor = f"model:{settings.rank.predictor.kind}"
    assert f"| {predictor} |" in text and "| fine-tuned val (ceiling) |" in text
    sure, per_bank = text.split(f"## How sure: {predictor}")[1].split(f"## Per bank: {predictor}")
    sure = sure.splitlines()
    data = load_meta(tmp_path)
    scores = data.score_names
    strongest = next(e["method"] for e in result.summary if e["method"] in scores)
    assert f"{strongest}: the strongest single score" in sure[0]
    assert f"| protocol | Pearson | Pearson − {strongest} |" in text
    lines = [line for line in sure if line.startswith(("| bank ", "| arch ", "| target ", "| both "))]
    assert len(lines) == 4
    bank_lines = [line for line in per_bank.splitlines() if line.startswith(tuple(f"| {b} " for b in banks))]
    # only banks that leave training data once their architectures are out are judged under arch (classic:
    # budget and rough keep their models of other architectures; budget has all eight, nothing is left)
    judged = sorted({cell.bank for _, test in folds(data.cells, "arch") for cell in test})
    assert judged and sorted(line.split("|")[1].strip() for line in bank_lines) == judged
    for line in lines + [line.rsplit("|", 2)[0] for line in bank_lines]:  # "mean [low, high]", low <= mean <= high
        for cell in line.strip("|").split("|")[1:]:
            mean, low, high = (float(x) for x in cell.replace("[", " ").replace("]", " ").replace(",", " ").split())
            assert low <= mean <= high


def test_a_bank_built_alone_replaces_only_its_own_rows(tmp_path):
    """``bench.mode=build 'bench.banks=[...]'`` merges the banks it measured into the data already there; the
    data's targets and recipe must be the ones it measured with."""
    from automl._fileio import atomic_copy
    from automl.predictor.shipped import DATA_DIR
    from benchmarks.metabench.banks import BANKS
    from benchmarks.metabench.build import CSV_FILES, merge_banks

    for name in (*CSV_FILES, "recipe.json"):
        atomic_copy(DATA_DIR / name, tmp_path / name)
    recipe, targets = json.loads((tmp_path / "recipe.json").read_text()), read_csv_rows(tmp_path / "targets.csv")
    stored = {name: read_csv_rows(tmp_path / name) for name in CSV_FILES}
    measured = {"targets.csv": targets, "models.csv": [{"bank": "budget", "model": "new_model"}],
                "oracle.csv": [{"bank": "budget", "model": "new_model", "target": "digits"}],
                "scores.csv": [{"bank": "budget", "model": "new_model", "target": "digits", "seed": 0}]}
    merged = merge_banks(tmp_path, measured, ["budget"], recipe)
    for name in ("models.csv", "oracle.csv", "scores.csv"):
        assert [r for r in merged[name] if r["bank"] == "budget"] == measured[name]
        assert [r for r in merged[name] if r["bank"] != "budget"] == [r for r in stored[name] if r["bank"] != "budget"]
        banks = list(dict.fromkeys(r["bank"] for r in merged[name]))
        assert banks == [b for b in BANKS if b in banks]  # the banks keep their order
    changed = [dict(targets[1], fingerprint="0" * 16) if i == 1 else t for i, t in enumerate(targets)]
    with pytest.raises(bench.BenchError, match=rf"targets.csv: target\(s\) \['{targets[1]['target']}'\] differ"):
        merge_banks(tmp_path, {**measured, "targets.csv": changed}, ["budget"], recipe)
    with pytest.raises(bench.BenchError, match=r"recipe.json: the data was measured with another oracle recipe"):
        merge_banks(tmp_path, measured, ["budget"], {**recipe, "epochs": 1})


def test_unknown_target_config_is_named():
    settings = resolve(compose_bench(["bench.targets=[digits,nope]"]))
    with pytest.raises(bench.BenchError, match=r"bench\.targets\[1\]: no task config .*nope\.yaml"):
        bench.target_settings(settings.task, settings.bench.targets)


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_end_to_end_sets_the_pipelines_model_against_brute_force(tiny, tmp_path):
    """One bank x target of the end-to-end mode on a tiny bank: the pipeline runs as a user runs it and its
    exported model is compared with the best of every model fine-tuned with the fixed recipe."""
    from automl.bank import read_bank
    from automl.bank.weights import file_sha256
    from automl.predictor.shipped import DATA_DIR
    from benchmarks.metabench.end_to_end import (
        brute_force,
        changed_checkpoints,
        end_to_end_table,
        pipeline_vs_brute_force,
    )

    meta = tmp_path / "meta"
    meta.mkdir()
    names = list(ARCHS)
    measured = {entry.name: file_sha256(entry.weights) for entry in read_bank(None, None, tiny["root"])}
    measured[names[1]] = "0" * 64  # as if the oracle had measured other bytes
    (meta / "models.csv").write_text("bank,model,mflops,sha256\n" + "".join(f"tiny,{n},2.0,{measured[n]}\n" for n in names))
    assert changed_checkpoints(tiny["root"], meta, "tiny") == [names[1]]
    (meta / "targets.csv").write_text("target,num_train\nt1,29\n")
    validation = [70, 50, 70]  # a user picking on validation gets names[0] or names[2]: 50% expected
    (meta / "oracle.csv").write_text("bank,model,target,test_accuracy,val_accuracy,epochs,seconds\n" + "".join(
        f"tiny,{n},t1,{40 + 10 * i},{validation[i]},2,1.5\n" for i, n in enumerate(names)))
    baseline = brute_force(meta)[("tiny", "t1")]
    assert baseline["best"] == 60.0 and baseline["best_model"] == names[2] and baseline["seconds"] == 4.5
    assert baseline["picked_on_val"] == 50.0 and baseline["models"] == 3
    assert baseline["gflop"] == pytest.approx(3 * 3 * 2 * 29 * 2.0 / 1e3)

    settings = resolve(compose_bench([f"cache_dir={tmp_path}/cache", "device=cpu",
                                "bench.pipeline=['finetune.top_k=2','finetune.n_trials=2','finetune.max_epochs=2',"
                                "'finetune.default_hparams.epochs=2','finetune.first_rung=2',"
                                "'finetune.limit_train_batches=1','finetune.default_hparams.batch_size=16',"
                                "'probe.budget=12']"]))
    settings = dataclasses.replace(settings, bench=dataclasses.replace(settings.bench, pipeline=[
        *settings.bench.pipeline, f"task.root={tiny['root'] / 't1'}"]))
    row = pipeline_vs_brute_force(settings, "tiny", tiny["root"], "digits", tmp_path / "run", baseline)
    config = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert row["pipeline_test"] == config["test_accuracy"] and row["pipeline_model"] in names
    assert row["shortfall"] == pytest.approx(60.0 - config["test_accuracy"])
    assert row["trials"] == 2 and config["refit"]["on"] == "train+val"  # the default refit ran
    targets = {r["target"] for r in read_csv_rows(tmp_path / "run" / "metabench" / "scores.csv")}  # learnt without digits
    assert targets and "digits" not in targets
    shipped = DATA_DIR / "targets.csv"  # the held-out copy keeps its bytes (CRLF)
    assert (tmp_path / "run" / "metabench" / "targets.csv").read_bytes() == shipped.read_bytes()
    assert row["pipeline_gflop"] > 0 and row["gflop_ratio"] == pytest.approx(  # pipeline_gflop: rounded to 0.1
        row["pipeline_gflop"] / baseline["gflop"], abs=0.05 / baseline["gflop"])
    table = end_to_end_table([row], settings.bench.pipeline)
    assert "Mean shortfall" in table and "| tiny | digits |" in table
    assert f"90% interval {row['shortfall']:+.2f} to {row['shortfall']:+.2f}" in table  # one cell: no spread
    assert row["brute_force_picked_on_val"] == 50.0 and "picked on validation" in table


def test_compose_inside_a_running_hydra_app_leaves_it_intact():
    """The end-to-end mode composes pipeline configs from inside ``python -m automl.bench``'s Hydra app."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from benchmarks.settings import BENCH_CONF_DIR

    with initialize_config_dir(config_dir=str(BENCH_CONF_DIR), version_base="1.3"):
        outer = GlobalHydra.instance().hydra
        assert compose(["task=glyphs"]).task.builtin == "glyphs"
        assert GlobalHydra.instance().hydra is outer and hydra_compose(config_name="bench").bench.mode == "ranking"
