"""What a run folder remembers: ``run.json`` holds what the run decided — its task and bank, the full
ranking (every model's scores, meta-features and predicted accuracy), the bank entries that failed, and
the Optuna study it opened with its candidates — so that a stage run later in the same folder reads what
the run wrote instead of deciding again with a history that has grown since.

* ``stage=report`` rebuilds the report from ``run.json`` and the study; it never ranks again and never
  rewrites ``ranking.csv``;
* rerunning ``stage=all`` or ``stage=finetune`` in the folder resumes the recorded study with its
  recorded candidates (the ranking is not redone), so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl._fileio import atomic_write_text
from automl.bank import Bank
from automl.errors import AutomlError
from automl.images.tasks import Task
from automl.rank.stage import RankedModel, Ranking

RUN_FILE = "run.json"
FORMAT_VERSION = 1


@dataclass
class RunRecord:
    task_name: str
    task_fingerprint: str
    bank: str
    ranking: list[dict[str, Any]]  # best first: name, scores, scores_z, model_meta, task_meta, predicted, low, high
    score_names: list[str]
    predictor: str
    failed: dict[str, str] = field(default_factory=dict)
    study: str | None = None  # the Optuna study the finetune stage opened
    candidates: list[str] | None = None  # the models that study searches
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time of each stage that ran here

    def matches(self, task: Task, bank: Bank) -> bool:
        return self.task_fingerprint == task.fingerprint and self.bank == bank.name


def read_record(run_dir: str | Path) -> RunRecord | None:
    """The folder's ``run.json`` (None when there is none)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.pop("format_version") != FORMAT_VERSION:
            raise ValueError("unknown format version")
        return RunRecord(**data)
    except (ValueError, TypeError, KeyError) as exc:
        raise AutomlError(f"{path}: not a run record of this automl ({exc}); use another hydra.run.dir") from exc


def write_record(run_dir: str | Path, record: RunRecord) -> Path:
    data = {"format_version": FORMAT_VERSION, **record.__dict__}
    return atomic_write_text(Path(run_dir) / RUN_FILE, json.dumps(data, indent=1, allow_nan=True) + "\n")


def record_ranking(ranking: Ranking, bank: Bank) -> RunRecord:
    """A new run record holding ``ranking``."""
    models = [{"name": m.name, "scores": m.scores, "scores_z": m.scores_z, "model_meta": m.model_meta,
               "task_meta": m.task_meta, "predicted": m.predicted, "low": m.low, "high": m.high}
              for m in ranking.models]
    return RunRecord(ranking.task.name, ranking.task.fingerprint, bank.name, models, list(ranking.score_names),
                     ranking.predictor, dict(ranking.failed))


def recorded_ranking(record: RunRecord, task: Task, bank: Bank) -> Ranking:
    """The ranking ``record`` holds, its models resolved in ``bank`` (an error names one that is gone)."""
    entries = {entry.name: entry for entry in bank}
    missing = [m["name"] for m in record.ranking if m["name"] not in entries]
    if missing:
        raise AutomlError(f"the run ranked bank models {missing}, which bank {bank.name!r} no longer has; use "
                          "another hydra.run.dir to rank the bank again")
    models = [RankedModel(entries[m["name"]], _floats(m["scores"]), _floats(m["scores_z"]), m["model_meta"],
                          m["task_meta"], m["predicted"], m["low"], m["high"]) for m in record.ranking]
    return Ranking(task, models, list(record.score_names), record.predictor, dict(record.failed))


def _floats(values: dict[str, Any]) -> dict[str, float]:
    return {name: math.nan if value is None else float(value) for name, value in values.items()}
