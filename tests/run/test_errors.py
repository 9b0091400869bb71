"""Reruns, reports and failures a user can trust (issue 11): each test reproduces one way a run lost data,
lied, or failed unreadably, through the commands a user runs."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, write_image_folder, write_random_bank
from PIL import Image

from automl.predict import main as predict_main
from automl.run.report import history_axes, plot_history, predicted_vs_measured_axes
from automl.run.stages import NothingExported
from automl.run.stages import run as run_settings
from automl.settings import compose, resolve
from benchmarks.settings import compose_bench

pytestmark = [pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

REPO = Path(__file__).resolve().parents[2]
QUICK = ["finetune.limit_train_batches=2", "finetune.max_epochs=2", "finetune.first_rung=2",
         "finetune.default_hparams.epochs=2", "finetune.progress_bar=false", "probe.budget=100", "device=cpu",
         "finetune.torch_threads=1"]


def overrides(bank: Path, work: Path, *extra: str) -> list[str]:
    return [f"bank.dir={bank}", "bank.name=small", "bank.build=null", f"cache_dir={work}/cache",
            f"storage=sqlite:///{work}/automl.db", f"finetune.artifacts_dir={work}/artifacts", *QUICK, *extra]


def run(args: list[str], run_dir: Path):
    return run_settings(resolve(compose(args)), run_dir)


def automl(*args: str, cwd: Path, module: str = "automl") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


def huge_png(path: Path, side: int = 14000) -> Path:
    """A valid PNG header claiming ``side`` x ``side`` grey pixels, with almost no data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------------------------ data loss and lies
def test_report_stage_reads_the_run_and_a_rerun_resumes_its_study(small_demo_bank, tmp_path):
    base = overrides(small_demo_bank, tmp_path, "task=shapes", "finetune.top_k=2", "finetune.n_trials=2")
    run_dir = tmp_path / "run"
    run(base, run_dir)
    report, ranking = (run_dir / "report.md").read_text(), (run_dir / "ranking.csv").read_bytes()
    study = json.loads((run_dir / "run.json").read_text())["study"]
    # the history grows: another task fine-tuned (its records refine the predictor next time)
    run(overrides(small_demo_bank, tmp_path, "task=digits", "finetune.top_k=4", "finetune.n_trials=4",
                  "finetune.pruner=none"), tmp_path / "other")
    run(overrides(small_demo_bank, tmp_path, "task=glyphs", "finetune.top_k=4", "finetune.n_trials=4",
                  "finetune.pruner=none"), tmp_path / "third")

    run([*base, "stage=report"], run_dir)
    assert (run_dir / "ranking.csv").read_bytes() == ranking  # never rewritten by a report
    again = (run_dir / "report.md").read_text()
    for section in ("**Best model", "## Fine-tuning search", "## Best model on the test split"):
        assert section in report and section in again
    assert len(again.splitlines()) >= len(report.splitlines())

    # the same command in a new folder finds the same study (named by the inputs, not by the grown
    # history's ranking) and trains nothing: its budget is spent
    run(base, tmp_path / "rerun")
    assert json.loads((tmp_path / "rerun" / "run.json").read_text())["study"] == study
    rows = (tmp_path / "rerun" / "finetune.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and rows == (run_dir / "finetune.csv").read_text().splitlines()[1:]


def test_report_stage_needs_a_run_folder(small_demo_bank, tmp_path):
    with pytest.raises(ValueError, match="stage=report reads a run folder"):
        run(overrides(small_demo_bank, tmp_path, "stage=report"), tmp_path / "empty")


def test_a_checkpoint_that_no_longer_matches_its_sha256_is_skipped_even_with_cached_features(tmp_path):
    bank = write_random_bank(tmp_path / "bank", {"a": ("test_resnet", {}), "b": ("test_efficientnet", {}),
                                                 "c": ("test_convnext", {})}, num_classes=4)
    manifest = yaml.safe_load((bank / "bank.yaml").read_text())
    for entry in manifest["models"]:
        entry["sha256"] = hashlib.sha256((bank / entry["weights"]).read_bytes()).hexdigest()
    (bank / "bank.yaml").write_text(yaml.safe_dump(manifest))
    args = overrides(bank, tmp_path, "task=shapes", "stage=rank")
    run(args, tmp_path / "first")  # every feature cached
    manifest["models"][1]["sha256"] = "0" * 64  # the pin no longer matches the file
    (bank / "bank.yaml").write_text(yaml.safe_dump(manifest))
    result = automl(*args, f"hydra.run.dir={tmp_path / 'second'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranked = [line.split(",")[1] for line in (tmp_path / "second" / "ranking.csv").read_text().splitlines()[1:]]
    assert sorted(ranked) == ["a", "c"]
    assert "skipped b: " in result.stdout and "sha256 mismatch" in result.stdout
    with pytest.raises(ValueError, match=r"1 model\(s\) of bank 'bank' could not be loaded.*\n  b: .*sha256 mismatch"):
        run([*args, "bank.on_error=error"], tmp_path / "third")


def test_a_run_whose_every_trial_failed_exits_non_zero_and_says_why(tmp_path):
    bank = write_random_bank(tmp_path / "bank", {"convnext": ("test_convnext", {})}, num_classes=4)
    args = overrides(bank, tmp_path, "task=shapes", "finetune.top_k=1", "finetune.n_trials=1",
                     "~search_space.lr", "finetune.default_hparams.lr=1e9",
                     "finetune.default_hparams.optimizer=sgd",
                     "finetune.default_hparams.label_smoothing=0", f"hydra.run.dir={tmp_path / 'run'}")
    result = automl(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-2000:]
    assert "no trial completed, so nothing was exported" in result.stderr and "NonFiniteLossError" in result.stderr
    assert not (tmp_path / "run" / "best").exists()
    with pytest.raises(NothingExported):
        run(args[:-1], tmp_path / "in-process")


def test_a_huge_image_is_a_bad_image_skipped_and_named(tmp_path, capsys):
    root = write_image_folder(tmp_path / "data", {"a": 12, "b": 12})
    bomb = huge_png(root / "a" / "bomb.png")
    from automl.images.tasks import TaskError, load_task
    from automl.settings import TaskSettings

    task = load_task(TaskSettings(root=str(root)), tmp_path / "cache")
    assert bomb not in {p for split in task.splits.values() for p in split.paths} and task.num_classes == 2
    with pytest.raises(TaskError, match=r"bomb\.png: 14000x14000 = 196000000 pixels, more than the limit"):
        load_task(TaskSettings(root=str(root), on_bad_image="error"), tmp_path / "cache")
    # a higher limit lets it through to the decoder, which finds it truncated: still named, still skipped
    with pytest.raises(TaskError, match=r"bomb\.png: not a readable image"):
        load_task(TaskSettings(root=str(root), on_bad_image="error", max_image_pixels=10**9), tmp_path / "cache")


def test_predict_skips_a_huge_image_and_prints_one_images_label(small_demo_bank, tmp_path, capsys):
    run(overrides(small_demo_bank, tmp_path, "task=shapes", "finetune.top_k=1", "finetune.n_trials=1"),
        tmp_path / "run")
    best = tmp_path / "run" / "best"
    folder = write_image_folder(tmp_path / "images", {"x": 3})
    huge_png(folder / "x" / "bomb.png")
    os.chdir(tmp_path)
    assert run_cli(predict_main, f"model={best}", f"images={folder}") == 0
    out = capsys.readouterr()
    assert "bomb.png" in out.out + out.err  # named, skipped
    csv = tmp_path / "run" / "predictions-images.csv"  # by default next to the model, not in the current folder
    assert csv.is_file() and not (tmp_path / "predictions.csv").exists()
    assert len(csv.read_text().splitlines()) == 1 + 3
    one = next((folder / "x").glob("0*.png"))
    assert run_cli(predict_main, f"model={best}", f"images={one}", f"out={tmp_path / 'one.csv'}") == 0
    label = (tmp_path / "one.csv").read_text().splitlines()[1].split(",")[1]
    assert f"{one}: {label} (" in capsys.readouterr().out


def test_skipped_bank_entries_are_listed_in_the_summary_and_the_report(tmp_path):
    bank = write_random_bank(tmp_path / "bank", {"a": ("test_resnet", {}), "b": ("test_efficientnet", {})}, 4)
    (bank / "b.safetensors").write_bytes((bank / "b.safetensors").read_bytes()[:200])  # truncated download
    result = automl(*overrides(bank, tmp_path, "task=shapes", "finetune.top_k=1", "finetune.n_trials=1"),
                    f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped b: " in result.stdout
    report = (tmp_path / "run" / "report.md").read_text()
    assert "1 skipped (could not be loaded)" in report and "- `b`: " in report


# ------------------------------------------------------------------------------ errors a person can read
@pytest.mark.parametrize(("args", "message"), [
    (["task.root=/no/such/folder"], "task.root /no/such/folder is not a folder"),
    (["rank.scores=[parc,bogus]"], "unknown score(s) ['bogus']"),
    (["task.val_fraction=0.9"], "task.val_fraction=0.9 + task.test_fraction=0.15 must be below 1"),
    (["storage=postgresql://nobody@127.0.0.1:1/none"], "nobody@127.0.0.1:1/none: cannot open the database"),
])
def test_a_user_error_is_one_line_and_a_hint_also_in_the_runs_log(tmp_path, args, message):
    run_dir = tmp_path / "run"
    result = automl(*args, f"cache_dir={tmp_path}/cache", f"storage=sqlite:///{tmp_path}/a.db", *args,
                    "stage=rank", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "--help" in lines[1] and "Traceback" not in result.stderr
    assert message in (run_dir / "automl.log").read_text()  # the run's log keeps the fatal error
    debug = subprocess.run([sys.executable, "-m", "automl", *args, f"cache_dir={tmp_path}/cache", "stage=rank",
                            f"hydra.run.dir={run_dir}"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(REPO), "AUTOML_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_the_search_space_is_checked_before_anything_is_ranked(small_demo_bank, tmp_path):
    with pytest.raises(ValueError, match=r"search_space\.lr: .*low and high are required"):
        run(overrides(small_demo_bank, tmp_path, "task=shapes",
                      "~search_space.lr.low"), tmp_path / "run")
    assert not (tmp_path / "cache" / "features").exists()  # failed before any feature was extracted


def test_tools_have_help(tmp_path):
    for module in ("automl.predict", "automl.history", "automl.export", "automl.bank.demo", "automl.bench",
                   "automl"):
        result = automl("--help", cwd=tmp_path, module=module)
        assert (result.returncode == 0 and "key=value" in result.stdout + result.stderr) or "Override" in result.stdout


def test_calibrate_alone_prints_no_empty_summary_and_claims_help_only_when_it_is_there(tmp_path):
    result = automl(f"storage=sqlite:///{tmp_path}/h.db", "stage=calibrate", f"hydra.run.dir={tmp_path}/run",
                    cwd=tmp_path)
    assert result.returncode == 0 and "automl summary" not in result.stdout
    assert "at least 2 tasks" in result.stdout.replace("\n", " ")


# --------------------------------------------------------------------------------------------- figures
def test_the_search_history_shows_pruned_trials_on_an_accuracy_axis(tmp_path):
    import matplotlib.pyplot as plt

    from automl.finetune.outcome import TrialResult

    def trial(number: int, state: str, val: float | None) -> TrialResult:
        return TrialResult("s", number, "m", state, {}, val, None, 2, [], 1.0, 0, None, None, None, None)

    trials = [trial(0, "COMPLETE", 80.0), trial(1, "PRUNED", 40.0), trial(2, "PRUNED", 55.0), trial(3, "FAIL", None)]
    ax = history_axes(trials)
    assert sum(len(collection.get_offsets()) for collection in ax.collections) == 3  # pruned ones too
    assert ax.get_ylim() == (0.0, 100.0) and "1 failed" in ax.get_title()
    assert all(float(tick).is_integer() for tick in ax.get_xticks())
    plt.close(ax.figure)
    with Image.open(plot_history(trials, tmp_path / "history.png")) as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_interval_whiskers_stay_inside_the_predicted_vs_measured_axes(tmp_path):
    from types import SimpleNamespace

    models = [SimpleNamespace(name=f"m{i}", predicted=p, low=lo, high=hi)
              for i, (p, lo, hi) in enumerate([(50.0, 12.0, 95.0), (70.0, 40.0, 99.0)])]
    ax = predicted_vs_measured_axes(SimpleNamespace(models=models), {"m0": 60.0, "m1": 65.0})
    low, high = ax.get_xlim()
    assert low <= 12.0 and high >= 99.0
    import matplotlib.pyplot as plt

    plt.close(ax.figure)


# -------------------------------------------------------------------------------- project-local configs
def test_a_project_local_task_config(small_demo_bank, tmp_path):
    root = write_image_folder(tmp_path / "flowers", {"rose": 12, "tulip": 12})
    (tmp_path / "conf" / "task").mkdir(parents=True)
    (tmp_path / "conf" / "task" / "mydata.yaml").write_text(f"root: {root}\nval_fraction: 0.25\n")
    result = automl("--config-dir", str(tmp_path / "conf"), "task=mydata",
                    *overrides(small_demo_bank, tmp_path, "stage=rank"), f"hydra.run.dir={tmp_path / 'run'}",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Ranking on flowers" in result.stdout


# ------------------------------------------------------------------------------------------- deployment
def test_onnx_export_matches_pytorch_and_a_copy_of_its_folder_runs_without_torch(small_demo_bank, tmp_path, capsys):
    from automl.export import main as export_main

    run(overrides(small_demo_bank, tmp_path, "task=shapes", "finetune.top_k=1", "finetune.n_trials=1"),
        tmp_path / "run")
    best = tmp_path / "run" / "best"
    assert run_cli(export_main, f"model={best}") == 0
    assert run_cli(export_main, f"model={best}") == 0  # a re-export replaces, and orphans nothing
    printed = capsys.readouterr().out
    assert printed.count("checked on") == 2 and "torch.onnx" not in printed and "✅" not in printed
    onnx_files = sorted(path.name for path in (best / "onnx").iterdir())
    assert onnx_files == ["check.json", "model.onnx", "predict.py", "preprocess.json"]  # weights inside model.onnx
    check = json.loads((best / "onnx" / "check.json").read_text())
    assert check["opset"] == 18 and check["top1_identical"] and check["max_abs_probability_difference"] < 1e-4
    test = list(csv.DictReader((best / "test.csv").open()))
    assert check["images"] == len(test) > 0
    # the deployable folder, copied elsewhere, with torch, timm and automl made unimportable
    deployed = tmp_path / "elsewhere"
    shutil.copytree(best / "onnx", deployed)
    images = Path(test[0]["path"]).parent.parent  # the task's labelled test folder
    blocker = ("import sys, runpy\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('torch', 'timm', 'lightning', 'automl'):\n"
               "            raise ImportError(f'{name} is not available here')\n"
               "sys.meta_path.insert(0, Block())\n"
               f"sys.argv = ['predict.py', 'images={images}']\n"
               f"runpy.run_path({str(deployed / 'predict.py')!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((best / "config.json").read_text())
    out = deployed / f"predictions-{images.name}.csv"  # next to the model, not in the current folder
    assert f"predictions: {out}" in done.stdout and f"accuracy: {config['test_accuracy']:.4f}" in done.stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(test) and all(row["true_label"] == Path(row["path"]).parent.name for row in rows)
    one = subprocess.run([sys.executable, str(deployed / "predict.py"), f"images={test[0]['path']}"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert one.returncode == 0 and one.stdout.startswith(f"{test[0]['path']}: "), one.stderr[-2000:]


@pytest.mark.parametrize("config_name", ["config", "bench"])
def test_runs_started_in_the_same_second_get_their_own_folders(config_name):
    # Hydra names run folders by start time; two runs launched together (two benchmark processes, a script
    # looping over tasks) shared, and overwrote, one folder when the name stopped at seconds.
    make = compose_bench if config_name == "bench" else compose
    first, second = (make(return_hydra_config=True).hydra for _ in range(2))
    assert first.run.dir != second.run.dir and first.sweep.dir != second.sweep.dir
