"""Bank x targets data: the targets' task configs, every bank model's scores on each target's probe
sets, and the oracle (:mod:`automl.bench.oracle`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from automl.bank import load_bank, model_meta_of
from automl.bench.data import BenchData, Key
from automl.bench.oracle import OracleStats, measure_oracle
from automl.bench.settings import BenchError
from automl.config import CONF_DIR, absolute_path, storage_url, to_container
from automl.features import extract_bank
from automl.history import History
from automl.probe import probe_from_config
from automl.rank import score_features
from automl.tasks import load_task

log = logging.getLogger(__name__)


def target_configs(cfg: DictConfig, targets: Sequence[Any]) -> list[dict[str, Any]]:
    """``bench.targets`` → resolved task configs.

    Each entry is a task config name (``conf/task/<name>.yaml``) or a mapping of task fields (e.g.
    ``{root: /data/flowers}``); either is merged over the composed ``task`` config, so ``task.*``
    overrides (``task.image_size`` ...) apply to every target.
    """
    if not isinstance(targets, list) or not targets:
        raise BenchError(f"bench.targets={targets!r} must be a non-empty list of task config names or mappings")
    base = OmegaConf.to_container(cfg.task, resolve=False)  # keep ${seed} and the name resolver unresolved
    configs = []
    for index, spec in enumerate(targets):
        if isinstance(spec, str):
            path = CONF_DIR / "task" / f"{spec}.yaml"
            if not path.is_file():
                known = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml"))
                raise BenchError(f"bench.targets[{index}]: no task config {path}; known: {known}")
            node = OmegaConf.load(path)
        elif isinstance(spec, Mapping):
            node = OmegaConf.create(dict(spec))
        else:
            raise BenchError(f"bench.targets[{index}]={spec!r} must be a task config name or a mapping")
        merged = OmegaConf.create({"seed": cfg.seed, "task": OmegaConf.merge(base, node)})
        configs.append(OmegaConf.to_container(merged, resolve=True)["task"])
    names = [c["name"] for c in configs]
    if len(set(names)) != len(names):
        raise BenchError(f"bench.targets: target names must be distinct, got {names}")
    return configs


def bank_data(cfg: DictConfig, bench: Mapping[str, Any], score_names: Sequence[str], device: str
              ) -> tuple[BenchData, OracleStats]:
    """Scores of every bank model on every target's probe sets, then its oracle (fine-tuned) accuracies."""
    cache_dir = absolute_path(cfg.cache_dir)
    tasks = [load_task(c, cache_dir) for c in target_configs(cfg, bench["targets"])]
    bank = load_bank(to_container(cfg.bank), cache_dir)
    seeds = list(bench["probe_seeds"])
    scores, seconds = _probe_scores(tasks, bank, seeds, to_container(cfg.probe), score_names,
                                    to_container(cfg.rank.options) or {}, cache_dir, device,
                                    int(cfg.rank.batch_size))
    models = next(iter(scores.values())).keys()
    entries = [entry for entry in bank if entry.name in models]
    model_meta = {entry.name: dict(model_meta_of(entry)) for entry in entries}
    with History(storage_url(str(cfg.storage))) as history:
        oracle, oracle_stats = measure_oracle(cfg, bench, tasks, entries, history, device,
                                              first_scores={t.name: scores[(t.name, seeds[0])] for t in tasks},
                                              model_meta=model_meta)
    return BenchData(targets=[t.name for t in tasks], seeds=seeds, oracle=oracle, scores=scores, seconds=seconds,
                     model_meta=model_meta, task_meta={t.name: t.meta() for t in tasks}), oracle_stats


def _probe_scores(tasks, bank, seeds, probe_cfg, score_names, options, cache_dir, device, batch_size
                  ) -> tuple[dict[Key, dict], dict[Key, dict]]:
    """Every score of every model on each (target, probe seed); a model that fails anywhere is dropped
    everywhere (the bank must be the same on every target)."""
    scores: dict[Key, dict] = {}
    seconds: dict[Key, dict] = {}
    failed: dict[str, str] = {}
    for task in tasks:
        for seed in seeds:
            log.info("scores: %s, probe seed %d", task.name, seed)
            probe = probe_from_config(task.splits["train"].labels, probe_cfg, seed=seed)
            extracted = extract_bank(bank, task, probe, cache_dir, device=device, batch_size=batch_size)
            key = (task.name, seed)
            scores[key], seconds[key] = {}, {}
            for name, features in extracted.items():
                if isinstance(features, Exception):
                    failed.setdefault(name, f"{task.name}: {features}")
                    continue
                scores[key][name], seconds[key][name] = score_features(features, score_names, options)
    for name, reason in failed.items():
        log.warning("bank model %s is left out of the benchmark: %s", name, reason)
    if len(bank) - len(failed) < 2:
        raise BenchError(f"bank {bank.name!r}: fewer than 2 usable models; nothing to rank")
    for by_model in (*scores.values(), *seconds.values()):
        for name in failed:
            by_model.pop(name, None)
    return scores, seconds
