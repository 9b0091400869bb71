"""The package as a user installs it: a wheel built from the checkout, installed into a fresh virtual
environment without the source tree on the path, runs its commands from an empty folder.

The fresh environment takes automl from the wheel alone; its dependencies (torch and friends, gigabytes)
are the test environment's own, reached through a ``.pth`` line that adds that site-packages folder
(whose own ``.pth`` files, the editable install's among them, are not processed)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import write_random_bank

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def git_status() -> str | None:
    """The checkout's status, files ignored by git included (None: not a git checkout, e.g. an export)."""
    done = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its python."""
    root = tmp_path_factory.mktemp("install")
    before = git_status()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "wheels"), str(REPO)], check=True, capture_output=True, text=True)
    assert git_status() == before, "building the wheel wrote into the checkout"
    wheel = next((root / "wheels").glob("automl-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "automl/conf/config.yaml" in names and "automl/conf/task/digits.yaml" in names
    assert "automl/predictor/metabench/scores.csv" in names
    assert not any(name.startswith(("benchmarks/", "tests/", "conf/")) for name in names)

    env = root / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, capture_output=True, text=True)
    return python


def run_in(folder: Path, *args: str) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(list(args), cwd=folder, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(folder), "OMP_NUM_THREADS": "1"})


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    where = run_in(tmp_path / "empty", str(installed), "-c", "import automl; print(automl.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.parent.parent)
    missing = run_in(tmp_path / "empty", str(installed), "-c", "import benchmarks")
    assert "No module named 'benchmarks'" in missing.stderr


@pytest.mark.parametrize("command", ["automl", "automl.predict", "automl.export", "automl.history", "automl.bank.demo"])
def test_every_command_finds_its_configs_from_an_empty_folder(installed, tmp_path, command):
    helped = run_in(tmp_path / "empty", str(installed), "-m", command, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "== Config ==" in helped.stdout or "== Settings (key=value) ==" in helped.stdout


def test_the_console_script_and_a_tiny_rank_stage_from_an_empty_folder(installed, tmp_path):
    script = installed.parent / "automl"
    assert run_in(tmp_path / "empty", str(script), "--help").returncode == 0
    bank = write_random_bank(tmp_path / "bank", {"tiny_resnet": ("test_resnet", {})}, num_classes=4)
    ranked = run_in(tmp_path / "work", str(script), "task=digits", f"bank.dir={bank}", "bank.build=null",
                    "stage=rank", "debug=quick")
    assert ranked.returncode == 0, ranked.stderr[-3000:]
    runs = list((tmp_path / "work" / "outputs" / "runs" / "digits").iterdir())
    assert len(runs) == 1 and (runs[0] / "ranking.csv").read_text().startswith("rank,model,arch,source,")
    bench = run_in(tmp_path / "empty", str(installed), "-m", "automl.bench")
    assert bench.returncode != 0 and "not installed with automl" in bench.stderr
