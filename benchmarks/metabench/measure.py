"""Bank x targets data: the targets' task configs, every bank model's scores on each target's probe
sets, and the oracle (:mod:`benchmarks.metabench.oracle`)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from automl.bank import load_bank, model_meta_of
from automl.history import History
from automl.images.tasks import load_task
from automl.rank.embeddings import extract_bank
from automl.rank.probe import sample_probe
from automl.settings import CONF_DIR, TaskSettings
from automl.transferability import score_many
from benchmarks.metabench.data import BenchData, BenchError, Key
from benchmarks.metabench.oracle import OracleStats, measure_oracle
from benchmarks.settings import BenchRunSettings

log = logging.getLogger(__name__)


def target_settings(base: TaskSettings, targets: Sequence[Any]) -> list[TaskSettings]:
    """``bench.targets`` → one task's settings per target.

    Each entry is a task config name (``conf/task/<name>.yaml``) or a mapping of task fields (e.g.
    ``{root: /data/flowers}``); either is laid over ``base`` (the composed ``task`` settings), so ``task.*``
    overrides (``task.image_size`` ...) apply to every target.
    """
    fields = {field.name for field in dataclasses.fields(TaskSettings)}
    settings = []
    for index, spec in enumerate(targets):
        if isinstance(spec, str):
            path = CONF_DIR / "task" / f"{spec}.yaml"
            if not path.is_file():
                known = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml"))
                raise BenchError(f"bench.targets[{index}]: no task config {path}; known: {known}")
            spec = OmegaConf.to_container(OmegaConf.load(path))
        if not isinstance(spec, Mapping) or set(spec) - fields:
            raise BenchError(f"bench.targets[{index}]={spec!r} must be a task config name or a mapping of task "
                             f"fields {sorted(fields)}")
        settings.append(dataclasses.replace(base, **spec))
    names = [s.label for s in settings]
    if len(set(names)) != len(names):
        raise BenchError(f"bench.targets: target names must be distinct, got {names}")
    return settings


def bank_data(settings: BenchRunSettings) -> tuple[BenchData, OracleStats]:
    """Scores of every bank model on every target's probe sets, then its oracle (fine-tuned) accuracies."""
    cache_dir = Path(settings.cache_dir)
    tasks = [load_task(t, cache_dir) for t in target_settings(settings.task, settings.bench.targets)]
    bank = load_bank(settings.bank, cache_dir)
    seeds = list(settings.bench.probe_seeds)
    scores, seconds = _probe_scores(tasks, bank, seeds, settings, cache_dir)
    models = next(iter(scores.values())).keys()
    entries = [entry for entry in bank if entry.name in models]
    model_meta = {entry.name: dict(model_meta_of(entry)) for entry in entries}
    with History(settings.storage) as history:
        oracle, oracle_stats = measure_oracle(settings, tasks, entries, history,
                                              first_scores={t.name: scores[(t.name, seeds[0])] for t in tasks},
                                              model_meta=model_meta)
    return BenchData(targets=[t.name for t in tasks], seeds=seeds, oracle=oracle, scores=scores, seconds=seconds,
                     model_meta=model_meta, task_meta={t.name: t.meta() for t in tasks},
                     fingerprints={t.name: t.fingerprint for t in tasks}), oracle_stats


def _probe_scores(tasks, bank, seeds, settings: BenchRunSettings, cache_dir: Path
                  ) -> tuple[dict[Key, dict], dict[Key, dict]]:
    """Every score of every model on each (target, probe seed); a model that fails anywhere is dropped
    everywhere (the bank must be the same on every target)."""
    scores: dict[Key, dict] = {}
    seconds: dict[Key, dict] = {}
    failed: dict[str, str] = {}
    for task in tasks:
        for seed in seeds:
            log.info("scores: %s, probe seed %d", task.name, seed)
            probe = sample_probe(task.splits["train"].labels, dataclasses.replace(settings.probe, seed=seed))
            extracted = extract_bank(bank, task, probe, cache_dir, device=settings.device,
                                     batch_size=settings.rank.batch_size)
            key = (task.name, seed)
            scores[key], seconds[key] = {}, {}
            for name, features in extracted.items():
                if isinstance(features, Exception):
                    failed.setdefault(name, f"{task.name}: {features}")
                    continue
                scores[key][name], seconds[key][name] = score_many(
                    settings.rank.score_names, features.features, features.labels, features.probs,
                    settings.rank.options)
    for name, reason in failed.items():
        log.warning("bank model %s is left out of the benchmark: %s", name, reason)
    if len(bank) - len(failed) < 2:
        raise BenchError(f"bank {bank.name!r}: fewer than 2 usable models; nothing to rank")
    for by_model in (*scores.values(), *seconds.values()):
        for name in failed:
            by_model.pop(name, None)
    return scores, seconds
