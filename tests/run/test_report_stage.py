"""``stage=report`` reads a finished run from its folder alone (issue 34.1): run from an empty folder with no
other setting, it loads neither the task nor the bank (the defaults would build the digits task and
pretrain the demo bank there), trains and exports nothing, and writes the report the run wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import quick_overrides, run_pipeline

from automl._storage import has_password

pytestmark = [pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning"),  # Lightning's
              pytest.mark.filterwarnings("ignore::UserWarning")]

REPO = Path(__file__).resolve().parents[2]
REPORT_FILES = ("report.md", "run.json", ".hydra", "automl.log")  # what a report rewrites (and Hydra, the log)


def written(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file the run wrote but the report's own (and its figures): content and modification time."""
    return {str(path.relative_to(run_dir)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in run_dir.rglob("*") if path.is_file() and path.suffix != ".png"
            and path.relative_to(run_dir).parts[0] not in REPORT_FILES}


@pytest.mark.slow
def test_report_stage_from_an_empty_folder_reads_the_run_and_builds_nothing(small_demo_bank, tmp_path):
    run_dir = tmp_path / "run"
    run_pipeline(quick_overrides(small_demo_bank, tmp_path, "task=shapes", "finetune.top_k=2", "finetune.n_trials=3"),
                 run_dir)
    report, files = (run_dir / "report.md").read_text(), written(run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["storage"] == f"sqlite:///{tmp_path}/automl.db" and record["task"]["name"] == "shapes"
    assert [m["arch"] for m in record["ranking"]] and record["hardware"]["cores"] >= 1

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AUTOML_")}  # default settings
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "automl", "stage=report", f"hydra.run.dir={run_dir}"], cwd=empty,
                            capture_output=True, text=True, timeout=240,
                            env={**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    seconds = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(empty.iterdir()) == []  # no task materialized, no bank built, no cache, no database
    assert seconds < 120  # imports and a few figures; building the defaults takes minutes

    assert written(run_dir) == files  # ranking.csv, finetune.csv, best/ untouched: nothing re-exported
    again = (run_dir / "report.md").read_text()
    assert again.split("## Time per stage")[0] == report.split("## Time per stage")[0]  # same ranking, trials, test
    for section in ("## Ranking", "## Fine-tuning search", "## Best model on the test split"):
        assert section in again
    rerecorded = json.loads((run_dir / "run.json").read_text())
    assert {**rerecorded, "stage_seconds": None} == {**record, "stage_seconds": None}


@pytest.mark.parametrize(("url", "secret"), [("postgresql://user:pw@host/db", True), ("postgresql://user@host/db", False),
                                             ("sqlite:////tmp/automl.db", False)])
def test_a_storage_url_with_a_password_is_not_recorded(url, secret):
    assert has_password(url) is secret
