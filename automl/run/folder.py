"""What a run folder remembers: ``run.json`` holds what the run decided and what its report needs — a
summary of its task (classes, images per class and split, sizes, modes, skipped files), its bank, the full
ranking (every model's arch, source, scores, meta-features and predicted accuracy), the bank entries that
failed, the Optuna study it opened (name, candidates, and the database URL unless it holds a password),
the hardware it computed on and the wall time of each stage — so that a stage run later in the folder
reads what the run wrote instead of deciding again with a history that has grown since.

* ``stage=report`` builds the report from ``run.json``, ``best/test.csv`` and the study alone: it loads
  neither the task nor the bank, never ranks, trains or exports again, and rewrites no file but the report;
* rerunning ``stage=all`` or ``stage=finetune`` in the folder resumes the recorded study with its
  recorded candidates (the ranking is not redone), so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl._fileio import atomic_write_text
from automl.bank import Bank
from automl.errors import AutomlError
from automl.images.summary import TaskSummary, summarize_task
from automl.images.tasks import Task
from automl.rank.stage import RankedModel, Ranking

RUN_FILE = "run.json"
FORMAT_VERSION = 2


@dataclass
class RecordedModel:
    """One ranked bank model as the run recorded it (accuracies in percent)."""

    name: str
    arch: str  # timm architecture
    source: str | None  # the dataset the checkpoint was pretrained on
    scores: dict[str, float]  # raw scores, NaN where a score does not apply
    scores_z: dict[str, float]  # z-scored across the bank on this task
    model_meta: dict[str, Any]
    task_meta: dict[str, Any]
    predicted: float
    low: float  # the 80% interval
    high: float


@dataclass
class RunRecord:
    task: TaskSummary
    bank: str
    ranking: list[RecordedModel]  # best first
    score_names: list[str]
    predictor: str  # what the predictor learnt from
    failed: dict[str, str] = field(default_factory=dict)  # bank entry → why it could not be ranked
    study: str | None = None  # the Optuna study the finetune stage opened
    candidates: list[str] | None = None  # the models that study searches
    storage: str | None = None  # the study's database URL; None when it holds a password (use storage=)
    hardware: dict[str, Any] = field(default_factory=dict)  # what the run computed on (automl._device)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time of each stage that ran here

    def matches(self, task: Task, bank: Bank) -> bool:
        return self.task.fingerprint == task.fingerprint and self.bank == bank.name

    def top(self, k: int) -> list[RecordedModel]:
        return self.ranking[:k]


def read_record(run_dir: str | Path) -> RunRecord | None:
    """The folder's ``run.json`` (None when there is none)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        version = data.pop("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"format version {version}, this automl reads {FORMAT_VERSION}")
        data["task"] = TaskSummary.from_dict(data["task"])
        data["ranking"] = [RecordedModel(**{**m, "scores": _floats(m["scores"]), "scores_z": _floats(m["scores_z"])})
                           for m in data["ranking"]]
        return RunRecord(**data)
    except (ValueError, TypeError, KeyError) as exc:
        raise AutomlError(f"{path}: not a run record of this automl ({exc}); use another hydra.run.dir") from exc


def write_record(run_dir: str | Path, record: RunRecord) -> Path:
    data = {"format_version": FORMAT_VERSION, **dataclasses.asdict(record)}
    return atomic_write_text(Path(run_dir) / RUN_FILE, json.dumps(data, indent=1, allow_nan=True) + "\n")


def record_ranking(ranking: Ranking, bank: Bank) -> RunRecord:
    """A new run record holding ``ranking``."""
    models = [RecordedModel(m.name, m.entry.arch, m.entry.source_name, m.scores, m.scores_z, m.model_meta,
                            m.task_meta, m.predicted, m.low, m.high) for m in ranking.models]
    return RunRecord(summarize_task(ranking.task), bank.name, models, list(ranking.score_names), ranking.predictor,
                     dict(ranking.failed))


def recorded_ranking(record: RunRecord, task: Task, bank: Bank) -> Ranking:
    """The ranking ``record`` holds, its models resolved in ``bank`` (an error names one that is gone)."""
    entries = {entry.name: entry for entry in bank}
    missing = [m.name for m in record.ranking if m.name not in entries]
    if missing:
        raise AutomlError(f"the run ranked bank models {missing}, which bank {bank.name!r} no longer has; use "
                          "another hydra.run.dir to rank the bank again")
    models = [RankedModel(entries[m.name], m.scores, m.scores_z, m.model_meta, m.task_meta, m.predicted, m.low,
                          m.high) for m in record.ranking]
    return Ranking(task, models, list(record.score_names), record.predictor, dict(record.failed))


def _floats(values: dict[str, Any]) -> dict[str, float]:
    return {name: math.nan if value is None else float(value) for name, value in values.items()}
