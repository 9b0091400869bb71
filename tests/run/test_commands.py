"""The commands as a user starts them: every tool answers --help, a project-local config folder adds
task configs, and runs started together get their own folders."""

from __future__ import annotations

import pytest
from conftest import automl_command, quick_overrides, write_image_folder

from automl.settings import compose
from benchmarks.settings import compose_bench

pytestmark = [pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning"),  # Lightning's
              pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.mark.slow
def test_tools_have_help(tmp_path):
    for module in ("automl.predict", "automl.history", "automl.export", "automl.bank.demo", "automl.bench",
                   "automl"):
        result = automl_command("--help", cwd=tmp_path, module=module)
        assert (result.returncode == 0 and "key=value" in result.stdout + result.stderr) or "Override" in result.stdout


# -------------------------------------------------------------------------------- project-local configs
@pytest.mark.slow
def test_a_project_local_task_config(small_demo_bank, tmp_path):
    root = write_image_folder(tmp_path / "flowers", {"rose": 12, "tulip": 12})
    (tmp_path / "conf" / "task").mkdir(parents=True)
    (tmp_path / "conf" / "task" / "mydata.yaml").write_text(f"root: {root}\nval_fraction: 0.25\n")
    result = automl_command("--config-dir", str(tmp_path / "conf"), "task=mydata",
                    *quick_overrides(small_demo_bank, tmp_path, "stage=rank"), f"hydra.run.dir={tmp_path / 'run'}",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Ranking on flowers" in result.stdout


# ------------------------------------------------------------------------------------------ run folders
@pytest.mark.parametrize("config_name", ["config", "bench"])
def test_runs_started_in_the_same_second_get_their_own_folders(config_name):
    # Hydra names run folders by start time; two runs launched together (two benchmark processes, a script
    # looping over tasks) shared, and overwrote, one folder when the name stopped at seconds.
    make = compose_bench if config_name == "bench" else compose
    first, second = (make(return_hydra_config=True).hydra for _ in range(2))
    assert first.run.dir != second.run.dir and first.sweep.dir != second.sweep.dir
