"""``python -m automl.bench bench.mode=build``: measure the meta-benchmark and write it as versioned data.

For every bank of :data:`benchmarks.metabench.banks.BANKS` (built first, under ``cache_dir/metabench/banks``):
every model's probe scores on every target and probe seed, and its oracle accuracy on every target
(the fixed recipe ``bench.oracle``), exactly as ``bench.data=bank`` measures one bank. Oracle fits are
kept in ``cache_dir/metabench/history.db`` as they finish and probe features in the feature cache, so an
interrupted build resumes where it stopped, and a finished one rewrites the data in minutes.

The data (``bench.meta_dir``, by default the copy the package ships, ``automl/data/metabench``, read by
:mod:`automl.predictor.shipped`):

* ``models.csv`` — bank, model, architecture, source, how it was pretrained and its held-out source
  accuracy, parameters, depth and forward MFLOPs per image (:func:`automl.bank.model_meta_of`);
* ``targets.csv`` — each target's classes, split sizes, image side and fingerprint;
* ``oracle.csv`` — each (bank model, target): test and validation accuracy of the fixed recipe, its
  validation curve, epochs and seconds;
* ``scores.csv`` — each (bank model, target, probe seed): every transferability score and its time (ms).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automl._fileio import atomic_write_text, read_csv_rows
from automl.bank import load_bank, own_folder_of
from automl.bank.pretrain import Pretraining, build_bank, pretraining_result
from automl.history import History
from automl.predictor.shipped import DATA_DIR
from automl.settings import BankSettings
from benchmarks.metabench.banks import BANKS
from benchmarks.metabench.data import BenchError, checked_names
from benchmarks.metabench.measure import bank_data
from benchmarks.metabench.oracle import oracle_recipe, recipe_id
from benchmarks.metabench.tables import write_results_csv
from benchmarks.settings import BenchRunSettings

log = logging.getLogger(__name__)

CSV_FILES = ("models.csv", "targets.csv", "oracle.csv", "scores.csv")


def meta_root(settings: BenchRunSettings) -> Path:
    return Path(settings.cache_dir) / "metabench"


def bank_folder(settings: BenchRunSettings, name: str) -> Path:
    """Where the meta-benchmark builds bank ``name`` (the build and end-to-end modes share it): the bank's own
    folder with the meta-benchmark's root as the cache."""
    return own_folder_of(name, meta_root(settings))


def built_bank_folder(settings: BenchRunSettings, name: str) -> Path:
    """:func:`bank_folder` with bank ``name`` built there first (only the checkpoints missing or made by another
    recipe are pretrained; a finished one is only read and checked)."""
    folder = bank_folder(settings, name)
    build_bank(folder, name, BANKS[name], seed=0, command="python -m automl.bench bench.mode=build")
    return folder


def build_meta(settings: BenchRunSettings) -> Path:
    """Measure every bank of ``bench.banks`` (null: all) on ``bench.targets`` and write the data files. A subset
    of the banks replaces only those banks' rows of the data already in ``bench.meta_dir`` (:func:`merge_banks`);
    with no data there it is measured but not written. Returns the data folder (or the cache, unwritten)."""
    names = checked_names(settings.bench.banks, list(BANKS), "bench.banks", list(BANKS))
    root = meta_root(settings)
    storage = f"sqlite:///{root / 'history.db'}"
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in CSV_FILES}
    start = time.perf_counter()
    for name in names:
        folder = built_bank_folder(settings, name)
        bank_settings = dataclasses.replace(settings, bank=BankSettings(name=name, dir=str(folder)), storage=storage)
        data, stats = bank_data(bank_settings)
        if stats.failed:
            raise BenchError(f"bank {name}: {len(stats.failed)} oracle fit(s) failed: {stats.failed}")
        rows["models.csv"] += _model_rows(name, folder, BANKS[name], data.model_meta)
        rows["targets.csv"] = [{"target": t, **data.task_meta[t], "fingerprint": fp} for t, fp in data.fingerprints.items()]
        rows["oracle.csv"] += _oracle_rows(name, storage, stats.run_id, data.fingerprints)
        rows["scores.csv"] += [{"bank": name, "model": model, "target": target, "seed": seed,
                                **{score: _number(value) for score, value in scores.items()},
                                **{f"ms_{score}": round(1e3 * s, 3) for score, s in data.seconds[(target, seed)][model].items()}}
                               for (target, seed), by_model in data.scores.items() for model, scores in by_model.items()]
        log.info("meta-benchmark: bank %s measured (%.0f s so far)", name, time.perf_counter() - start)
    out = Path(settings.bench.meta_dir) if settings.bench.meta_dir else DATA_DIR
    recipe = oracle_recipe(settings.bench.oracle, settings.finetune, settings.seed)
    recipe = {"id": recipe_id(recipe), **recipe, "probe": dataclasses.asdict(settings.probe),
              "probe_seeds": settings.bench.probe_seeds}
    if names != list(BANKS):
        if not (out / "models.csv").is_file():
            log.info("meta-benchmark: banks %s measured; build all of them to write the data", names)
            return root
        measured = {row["target"] for row in rows["targets.csv"]}
        if measured < {row["target"] for row in read_csv_rows(out / "targets.csv")}:
            # one of several processes that split the targets between them: the last, full run writes
            log.info("meta-benchmark: banks %s measured on targets %s; build all targets to write", names, sorted(measured))
            return root
        rows = merge_banks(out, rows, names, recipe)
    for file in CSV_FILES:
        write_results_csv(out / file, rows[file])
    atomic_write_text(out / "recipe.json", json.dumps(recipe, indent=2) + "\n")
    log.info("meta-benchmark: data written to %s in %.0f s", out, time.perf_counter() - start)
    return out


def merge_banks(out: Path, rows: dict[str, list[dict[str, Any]]], names: Sequence[str], recipe: Mapping[str, Any]
            ) -> dict[str, list[dict[str, Any]]]:
    """The data in ``out`` with the rows of banks ``names`` replaced by the freshly measured ``rows``: a bank
    is added or rebuilt without measuring the others again. Its targets and recipe must be the data's own."""
    stored_recipe = json.loads((out / "recipe.json").read_text())
    if stored_recipe != json.loads(json.dumps(recipe)):
        raise BenchError(f"{out / 'recipe.json'}: the data was measured with another oracle recipe or probe than "
                         f"bench.banks={list(names)} now; rebuild every bank (bench.banks=null) to change it")
    stored_targets = {row["target"]: row["fingerprint"] for row in read_csv_rows(out / "targets.csv")}
    measured = {row["target"]: row["fingerprint"] for row in rows["targets.csv"]}
    if stored_targets != measured:
        differ = sorted(t for t in stored_targets.keys() | measured.keys() if stored_targets.get(t) != measured.get(t))
        raise BenchError(f"{out / 'targets.csv'}: target(s) {differ} differ from the ones measured now (names or "
                         "data fingerprints); rebuild every bank (bench.banks=null) to change the targets")
    order = {name: index for index, name in enumerate(BANKS)}
    merged = {"targets.csv": read_csv_rows(out / "targets.csv")}
    for file in ("models.csv", "oracle.csv", "scores.csv"):
        kept = [row for row in read_csv_rows(out / file) if row["bank"] not in names]
        merged[file] = sorted(kept + rows[file], key=lambda row: order.get(row["bank"], len(order)))
    return merged


def _model_rows(bank: str, folder: Path, plan: Sequence[Pretraining], meta: Mapping[str, Mapping]) -> list[dict]:
    entries = {entry.name: entry for entry in load_bank(BankSettings(dir=str(folder)), folder)}
    rows = []
    for spec in plan:
        entry = entries[spec.name]
        result = pretraining_result(folder / f"{spec.name}.safetensors")
        rows.append({"bank": bank, "model": spec.name, "arch": entry.arch, "source": entry.source_name,
                     "epochs": spec.epochs, "label_noise": spec.label_noise, "data_fraction": spec.data_fraction,
                     "headless": spec.headless, "source_accuracy": round(result["accuracy"], 2),
                     "source_num_images": entry.source.num_images, "source_num_classes": entry.source.num_classes,
                     "num_classes": entry.num_classes, "num_params": meta[spec.name]["num_params"],
                     "depth": meta[spec.name]["depth"], "mflops": round(meta[spec.name]["mflops"], 3),
                     "sha256": entry.sha256})
    return rows


def _oracle_rows(bank: str, storage: str, run_id: str, fingerprints: Mapping[str, str]) -> list[dict]:
    targets = {fp: name for name, fp in fingerprints.items()}
    with History(storage) as history:
        records = [r for r in history.records(kind="oracle") if r.run_id == run_id and r.task_fingerprint in targets]
    bank_models = {spec.name for spec in BANKS[bank]}
    return [{"bank": bank, "model": r.model_name, "target": targets[r.task_fingerprint],
             "test_accuracy": round(r.test_accuracy, 4), "val_accuracy": round(r.val_accuracy, 4),
             "best_epoch": r.fidelity.get("best_epoch"), "epochs": r.epochs, "seconds": round(r.seconds, 2),
             "val_curve": json.dumps([round(v, 2) for v in r.fidelity.get("val_curve", [])])}
            for r in records if r.model_name in bank_models]


def _number(value: float) -> float | str:
    return "" if not math.isfinite(value) else round(float(value), 6)
