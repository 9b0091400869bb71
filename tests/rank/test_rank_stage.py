"""The rank stage as a user runs it: a complete ranking of the bank, features cached between runs, clear
errors, and bank entries that cannot be loaded skipped, named in the summary and the report."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from conftest import automl_command, quick_overrides, run_pipeline, write_random_bank

from automl._fileio import read_csv_rows
from automl.bank import BankError
from automl.settings import SettingsError
from automl.transferability import available

pytestmark = [pytest.mark.slow,  # every test here builds a bank and runs the rank stage, some as a command
              pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning"),  # Lightning's
              pytest.mark.filterwarnings("ignore::UserWarning")]


def test_rank_stage_writes_a_complete_ranking_and_reuses_cached_features(small_demo_bank, tmp_path, capsys):
    overrides = quick_overrides(small_demo_bank, tmp_path, "task=shapes", "stage=rank")
    run_pipeline(overrides, tmp_path / "run1")
    rows = read_csv_rows(tmp_path / "run1" / "ranking.csv")
    header = list(rows[0])
    assert header == ["rank", "model", "arch", "source", *available(), "predicted_accuracy", "predicted_low",
                      "predicted_high"]
    assert len(rows) == 4 and [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    predicted = [float(r["predicted_accuracy"]) for r in rows]
    assert predicted == sorted(predicted, reverse=True)
    for row in rows:
        assert 0 <= float(row["predicted_low"]) <= float(row["predicted_accuracy"]) <= float(row["predicted_high"]) <= 100
        assert row["source"] in ("textures", "photos") and all(row[name] != "" for name in ("parc", "logme", "linear"))
    assert "Ranking on shapes" in capsys.readouterr().out

    features = sorted((tmp_path / "cache" / "features").glob("*.npz"))
    mtimes = [path.stat().st_mtime_ns for path in features]
    run_pipeline(overrides, tmp_path / "run2")
    assert sorted((tmp_path / "cache" / "features").glob("*.npz")) == features  # no new extraction
    assert [path.stat().st_mtime_ns for path in features] == mtimes
    assert read_csv_rows(tmp_path / "run2" / "ranking.csv") == rows


def test_rank_stage_bad_input_is_a_clear_error(small_demo_bank, tmp_path):
    base = quick_overrides(small_demo_bank, tmp_path)
    with pytest.raises(SettingsError, match=r"rank.scores/rank.options: unknown score\(s\) \['bogus'\]"):
        run_pipeline([*base, "stage=rank", "rank.scores=[parc,linear,bogus]"], tmp_path / "run")
    with pytest.raises(ValueError, match="26 classes but a probe budget of 40 allows at most 20"):
        run_pipeline([*base, "task=glyphs", "stage=rank", "probe.budget=40", "probe.subsample_classes=false"],
            tmp_path / "run")

    broken = write_random_bank(tmp_path / "broken", {"a": ("test_resnet", {}), "b": ("test_efficientnet", {})}, 3)
    for weights in broken.glob("*.safetensors"):  # truncated downloads
        weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BankError, match=r"no model of bank 'broken' could be loaded:\n  a: .*\n  b: "):
        run_pipeline([*base, f"bank.dir={broken}", "bank.name=broken", "stage=rank"], tmp_path / "run")


# ------------------------------------------------------------------------------- skipped bank entries
def test_a_checkpoint_that_no_longer_matches_its_sha256_is_skipped_even_with_cached_features(tmp_path):
    bank = write_random_bank(tmp_path / "bank", {"a": ("test_resnet", {}), "b": ("test_efficientnet", {}),
                                                 "c": ("test_convnext", {})}, num_classes=4)
    manifest = yaml.safe_load((bank / "bank.yaml").read_text())
    for entry in manifest["models"]:
        entry["sha256"] = hashlib.sha256((bank / entry["weights"]).read_bytes()).hexdigest()
    (bank / "bank.yaml").write_text(yaml.safe_dump(manifest))
    args = quick_overrides(bank, tmp_path, "task=shapes", "stage=rank")
    run_pipeline(args, tmp_path / "first")  # every feature cached
    manifest["models"][1]["sha256"] = "0" * 64  # the pin no longer matches the file
    (bank / "bank.yaml").write_text(yaml.safe_dump(manifest))
    result = automl_command(*args, f"hydra.run.dir={tmp_path / 'second'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranked = [line.split(",")[1] for line in (tmp_path / "second" / "ranking.csv").read_text().splitlines()[1:]]
    assert sorted(ranked) == ["a", "c"]
    assert "skipped b: " in result.stdout and "sha256 mismatch" in result.stdout
    with pytest.raises(ValueError, match=r"1 model\(s\) of bank 'bank' could not be loaded.*\n  b: .*sha256 mismatch"):
        run_pipeline([*args, "bank.on_error=error"], tmp_path / "third")


def test_skipped_bank_entries_are_listed_in_the_summary_and_the_report(tmp_path):
    bank = write_random_bank(tmp_path / "bank", {"a": ("test_resnet", {}), "b": ("test_efficientnet", {})}, 4)
    (bank / "b.safetensors").write_bytes((bank / "b.safetensors").read_bytes()[:200])  # truncated download
    result = automl_command(*quick_overrides(bank, tmp_path, "task=shapes", "finetune.top_k=1", "finetune.n_trials=1"),
                    f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped b: " in result.stdout
    report = (tmp_path / "run" / "report.md").read_text()
    assert "1 skipped (could not be loaded)" in report and "- `b`: " in report
