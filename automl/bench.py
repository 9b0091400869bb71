"""The PARC paper's evaluation protocol on any bank x targets: ``python -m automl.bench [overrides]``.

Protocol (Bolya et al., NeurIPS 2021; reference code dbolya/parc ``evaluate.py`` and ``metrics.py``):

1. **Oracle.** Every bank model is fine-tuned on every target with one fixed recipe and no search:
   ``finetune.default_hparams`` updated by ``bench.oracle.hparams``, with ``finetune.augment``,
   ``finetune.limit_train_batches`` and ``seed``, through :func:`automl.finetune.fit.fit_once` (the
   finetune stage's own training path). Its test accuracy (percent) is the oracle. Every fit is stored
   at once in the transfer history (``kind="oracle"``, ``run_id="oracle-<hash of the recipe>"``, with
   the model's scores on the first probe seed), so the oracle also feeds calibration. Before training,
   ``(run_id, kind, model, task fingerprint)`` is looked up: a rerun (or a resumed, interrupted run)
   trains nothing already measured, and a changed recipe has a new run id, so it measures anew.
2. **Scores.** For every probe seed in ``bench.probe_seeds`` (the paper: 5 runs of 500 images) a
   class-balanced probe set (:func:`automl.probe.sample_probe` with the ``probe`` config), each model's
   probe features (cached by :mod:`automl.features`) and every score of ``rank.scores``. Derived methods:

   * ``<score>+plasticity`` — the paper's ensemble (``metrics.add_plasticity``): the score z-scored over
     every row of the benchmark (all targets, seeds and models; sample std, as pandas) plus depth/50;
   * ``prior(<primary>)`` — the project's prior predictor (:mod:`automl.predictor`) on the probe scores;
   * ``predictor(<primary>)`` — the calibrated predictor evaluated leave-one-target-out: fitted on the
     *other* targets' oracle accuracies (with this seed's scores), predicting this target's models.
     Its predicted accuracy is the score.
3. **Metrics** per (method, target, seed), across the bank: Pearson x100 between score and oracle (the
   paper's headline), Kendall's tau-b, weighted tau (``scipy.stats.weightedtau``, as the LogME/SFDA
   papers), top-1 regret (best oracle accuracy minus that of the top-scored model, accuracy points) and
   top-3 hit (is an oracle-best model among the 3 best-scored). Aggregated as ``metrics.py`` does: per
   seed the mean over targets, then the mean and std (ddof 0) over seeds. Time per score: the median
   ms per model with the probe features given (extraction is shared by every method and cached; the
   paper times the methods alone too).

Outputs in the run folder (atomic writes): ``bench_results.csv`` (one row per method x target x
seed), ``bench_table.md`` (methods as rows, the paper's style), ``scatter.png`` (score vs oracle per
target) and the table printed at the end.

**The paper's own data.** ``bench.paper.oracle_csv`` (columns ``Architecture,Source Dataset,Target
Dataset,Oracle``; rows with Oracle <= 0 are transfers the paper did not measure, skipped as its
``pearson`` does) and ``bench.paper.probes_dir`` (``<arch>_<source>_<target>_<run>.pkl`` as written by
its ``evaluate.py``: dicts with ``features`` [N, D], ``probs`` [N, Cs] and ``y`` [N]; runs are
``bench.probe_seeds``) are scored and evaluated the same way, with ``bench.paper.depth`` giving each
architecture's layer count (the paper's ``constants.model_layers``). A ``.npz`` with the same stem and
keys is read instead when present, without pickle. Unpickling can run arbitrary code, so ``.pkl``
files are read only with ``bench.trust_pickle=true``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import pickle
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from scipy import stats

from automl.bank import load_bank, model_meta_of, weights_digest
from automl.config import CONF_DIR, absolute_path, select_device, storage_url, to_container
from automl.experience import transfer_record
from automl.features import Features, extract_bank
from automl.fileio import atomic_path, atomic_write_text
from automl.finetune.fit import fit_once, quiet_libraries, torch_threads
from automl.finetune.module import Hparams
from automl.history import History, TransferRecord
from automl.predictor import (
    LINEAR,
    PLASTICITY_DEPTH,
    AccuracyPredictor,
    Candidate,
    bank_candidates,
    zscore_bank,
)
from automl.probe import sample_probe
from automl.rank import predictor_options, resolve_score_names, score_features
from automl.tasks import load_task

log = logging.getLogger(__name__)

PLASTICITY = "+plasticity"  # suffix of the paper's plasticity ensemble of a score
TOP_K = 3
ORACLE_COLUMNS = ("Architecture", "Source Dataset", "Target Dataset", "Oracle")
RESULT_COLUMNS = ("method", "target", "seed", "n_models", "pearson", "kendall_tau", "weighted_tau",
                  "top1_regret", "top3_hit", "ms_per_model", "top_model")
_BENCH_KEYS = {"targets", "probe_seeds", "oracle", "plasticity", "scatter", "trust_pickle", "paper"}
_PAPER_KEYS = {"oracle_csv", "probes_dir", "targets", "depth"}

Key = tuple[str, int]  # (target, probe seed)


class BenchError(ValueError):
    """The benchmark cannot run as configured; the message names the setting or file."""


class PickleRefusedError(BenchError):
    """A probe set is a pickle and ``bench.trust_pickle`` is false: nothing was unpickled."""


# ---------------------------------------------------------------------------------------------- metrics
def _arrays(scores: Sequence[float], oracle: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Scores [N] and oracle accuracies [N] of one bank on one target, as float arrays (shapes checked)."""
    s, o = np.asarray(scores, dtype=float), np.asarray(oracle, dtype=float)
    if s.ndim != 1 or s.shape != o.shape:
        raise ValueError(f"scores and oracle must be [N] arrays of one length, got {s.shape} and {o.shape}")
    return s, o


def _finite_pairs(scores: Sequence[float], oracle: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The (score, oracle) pairs whose score is finite."""
    s, o = _arrays(scores, oracle)
    keep = np.isfinite(s)
    return s[keep], o[keep]


def _correlated(s: np.ndarray, o: np.ndarray) -> bool:
    """Whether a correlation is defined: two pairs or more, and neither side constant."""
    return len(s) >= 2 and np.ptp(s) > 0 and np.ptp(o) > 0


def pearson_x100(scores: Sequence[float], oracle: Sequence[float]) -> float:
    """Pearson correlation x100 ([-100, 100]) between the scores and the oracle accuracies of N models
    (the PARC paper's metric); models with a non-finite score are left out; NaN when undefined."""
    s, o = _finite_pairs(scores, oracle)
    return float(100.0 * stats.pearsonr(s, o).statistic) if _correlated(s, o) else math.nan


def kendall_tau(scores: Sequence[float], oracle: Sequence[float]) -> float:
    """Kendall's tau-b ([-1, 1]) between scores and oracle accuracies; non-finite scores left out."""
    s, o = _finite_pairs(scores, oracle)
    return float(stats.kendalltau(s, o).statistic) if _correlated(s, o) else math.nan


def weighted_tau(scores: Sequence[float], oracle: Sequence[float]) -> float:
    """``scipy.stats.weightedtau`` ([-1, 1]): Kendall's tau with hyperbolic weights 1/(rank+1) that make
    swaps among the top models count most (the average of the two rankings, by score and by oracle)."""
    s, o = _finite_pairs(scores, oracle)
    return float(stats.weightedtau(s, o).statistic) if _correlated(s, o) else math.nan


def top1_regret(scores: Sequence[float], oracle: Sequence[float]) -> float:
    """Accuracy points lost by taking the top-scored model: ``max(oracle) - oracle[argmax(scores)]`` (>= 0).

    Models tied for the top score count by their mean oracle accuracy (the expected regret of breaking
    the tie at random); non-finite scores never win; NaN if no score is finite.
    """
    s, o = _arrays(scores, oracle)
    if not np.isfinite(s).any():
        return math.nan
    top = s == np.max(s[np.isfinite(s)])
    return float(np.max(o) - np.mean(o[top]))


def top_k_hit(scores: Sequence[float], oracle: Sequence[float], k: int = TOP_K) -> float:
    """1.0 if a model with the best oracle accuracy is among the ``k`` best-scored models, else 0.0.

    Order: score descending, non-finite scores last, ties in the given (bank) order; NaN if no score is
    finite.
    """
    s, o = _arrays(scores, oracle)
    if not np.isfinite(s).any():
        return math.nan
    order = np.argsort(-np.where(np.isfinite(s), s, -np.inf), kind="stable")
    return float(np.max(o[order[:k]]) == np.max(o))


def plasticity_scores(values: Mapping[Key, Mapping[str, float]], depth: Mapping[str, float]
                      ) -> dict[Key, dict[str, float]]:
    """The paper's plasticity ensemble ``z(score) + depth / 50`` (``metrics.add_plasticity``, weight 1).

    ``values[(target, seed)][model]`` are one score's raw values; the z-score pools every finite value of
    every (target, seed) and model, with the sample std (ddof 1, pandas' ``std``), as the paper's code
    normalises each method's whole results column. ``depth[model]`` is its number of weight layers.
    Non-finite values stay NaN; with no spread, z = 0.
    """
    pooled = np.array([v for by_model in values.values() for v in by_model.values()], dtype=float)
    pooled = pooled[np.isfinite(pooled)]
    center = float(np.mean(pooled)) if len(pooled) else 0.0
    spread = float(np.std(pooled, ddof=1)) if len(pooled) >= 2 else 0.0

    def z(value: float) -> float:
        if not math.isfinite(value):
            return math.nan
        return (value - center) / spread if spread > 0 else 0.0

    return {key: {model: z(v) + depth[model] / PLASTICITY_DEPTH for model, v in by_model.items()}
            for key, by_model in values.items()}


# ------------------------------------------------------------------------------------------------- data
@dataclass
class BenchData:
    """Everything the metrics need, from our bank x targets or from the paper's files.

    ``scores[(target, seed)][model][score]`` are raw transferability scores and ``seconds`` the time each
    took (s); ``oracle[target][model]`` the fine-tuned test accuracy (percent); ``model_meta[model]`` and
    ``task_meta[target]`` the predictor's meta-features (``depth`` is required for the plasticity
    ensemble).
    """

    targets: list[str]
    seeds: list[int]
    oracle: dict[str, dict[str, float]]
    scores: dict[Key, dict[str, dict[str, float]]]
    seconds: dict[Key, dict[str, dict[str, float]]]
    model_meta: dict[str, dict[str, Any]]
    task_meta: dict[str, dict[str, Any]]


@dataclass
class MethodScores:
    """One method's scores of the bank on one (target, seed): higher = predicted to transfer better."""

    scores: dict[str, float]  # model -> score
    seconds: dict[str, float]  # model -> seconds to compute it, probe features given


@dataclass
class OracleStats:
    """What the oracle stage did: fits trained now, found in the history, or failed."""

    run_id: str
    recipe: dict[str, Any]
    trained: int = 0
    cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # "model -> target" -> why
    fit_seconds: float = 0.0  # wall time of the fits trained now
    wall_seconds: float = 0.0  # wall time of the whole oracle stage


@dataclass
class BenchResult:
    rows: list[dict[str, Any]]  # one per method x target x seed (RESULT_COLUMNS)
    summary: list[dict[str, Any]]  # one per method, best Pearson first (see summarize)
    data: BenchData
    oracle: OracleStats | None  # None for the paper's data
    seconds: dict[str, float]  # phase -> wall time
    files: dict[str, Path]


# ----------------------------------------------------------------------------------------------- config
def _settings(cfg: DictConfig) -> dict[str, Any]:
    """The validated ``bench`` block (plain containers)."""
    bench = to_container(cfg.bench)
    unknown = sorted(set(bench) - _BENCH_KEYS)
    if unknown:
        raise BenchError(f"bench: unknown key(s) {unknown}; known: {sorted(_BENCH_KEYS)}")
    unknown = sorted(set(bench["paper"] or {}) - _PAPER_KEYS)
    if unknown:
        raise BenchError(f"bench.paper: unknown key(s) {unknown}; known: {sorted(_PAPER_KEYS)}")
    seeds = bench["probe_seeds"]
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise BenchError(f"bench.probe_seeds={seeds!r} must be a non-empty list of distinct integers >= 0")
    if not isinstance(bench["trust_pickle"], bool):
        raise BenchError(f"bench.trust_pickle={bench['trust_pickle']!r} must be true or false")
    return bench


def _checked_names(value: Any, known: Sequence[str], where: str, default: Sequence[str]) -> list[str]:
    """``value`` (a list of names, or null for ``default``) checked against ``known``."""
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BenchError(f"{where}={value!r} must be a list of names (or null)")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise BenchError(f"{where}: unknown name(s) {unknown}; known: {list(known)}")
    return list(value)


def oracle_recipe(default_hparams: Mapping[str, Any], overrides: Mapping[str, Any] | None,
                  augment: Mapping[str, Any] | None, limit_train_batches: int | float | None,
                  seed: int) -> dict[str, Any]:
    """The oracle's fixed recipe: validated hyperparameters (defaults updated by ``overrides``), training
    augmentation, batch cap and seed — everything that gives an oracle accuracy its meaning."""
    hparams = Hparams.from_mapping({**default_hparams, **(overrides or {})}, where="bench.oracle.hparams")
    return {"hparams": hparams.as_dict(), "augment": dict(augment or {}),
            "limit_train_batches": limit_train_batches, "seed": int(seed)}


def recipe_id(recipe: Mapping[str, Any]) -> str:
    """``oracle-<12 hex>``: a digest of the recipe, the history run id of its oracle records."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"oracle-{digest}"


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


# ------------------------------------------------------------------------------------------- bank mode
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
            probe = sample_probe(task.splits["train"].labels, budget=int(probe_cfg.get("budget", 500)),
                                 min_per_class=int(probe_cfg.get("min_per_class", 2)), seed=seed,
                                 subsample_classes=bool(probe_cfg.get("subsample_classes", True)))
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


class _EpochDescription(pl.Callback):
    """Shows the running fit's epoch and best validation accuracy on the oracle's progress bar."""

    def __init__(self, progress: Progress, bar: Any, label: str, epochs: int):
        self.progress, self.bar, self.label, self.epochs = progress, bar, label, epochs

    def on_validation_end(self, trainer: pl.Trainer, module: Any) -> None:
        self.progress.update(self.bar, description=f"oracle: {self.label} epoch {module.epochs_validated}/"
                                                   f"{self.epochs} val {module.best_val_acc:.1f}%")


def measure_oracle(cfg: DictConfig, bench: Mapping[str, Any], tasks, entries, history, device: str, *,
                   first_scores: Mapping[str, Mapping[str, Mapping[str, float]]],
                   model_meta: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, dict[str, float]], OracleStats]:
    """Fine-tune every entry on every task with the fixed recipe unless the history already holds it.

    Returns ``oracle[task name][model] = test accuracy`` (percent) and what was trained or reused. Each
    fit is added to ``history`` as soon as it ends (an interrupted run resumes at the next pair); a fit
    that fails is logged and left out. ``first_scores[task][model]`` are the scores recorded with it.
    """
    start = time.perf_counter()
    ft = to_container(cfg.finetune)
    recipe = oracle_recipe(ft["default_hparams"], (bench["oracle"] or {}).get("hparams"), ft["augment"],
                           ft["limit_train_batches"], int(cfg.seed))
    hparams = Hparams.from_mapping(recipe["hparams"])
    outcome = OracleStats(run_id=recipe_id(recipe), recipe=recipe)
    stored = {(r.model_name, r.task_fingerprint): r for r in history.records(kind="oracle")
              if r.run_id == outcome.run_id}
    oracle: dict[str, dict[str, float]] = {task.name: {} for task in tasks}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with quiet_libraries(), torch_threads(ft["torch_threads"]), Progress(*columns) as progress:
        bar = progress.add_task("oracle", total=len(tasks) * len(entries))
        for task in tasks:
            bank_scores = first_scores[task.name]
            z = dict(zip(bank_scores, zscore_bank(list(bank_scores.values())), strict=True))
            for entry in entries:
                label = f"{entry.name} → {task.name}"
                record = stored.get((entry.name, task.fingerprint))
                if record is not None:
                    if record.weights_digest != weights_digest(entry):
                        raise BenchError(f"history: the oracle of {label} (run {outcome.run_id}) was measured "
                                         f"with other weights ({record.weights_digest[:16]}…, now "
                                         f"{weights_digest(entry)[:16]}…); give the changed checkpoint a new "
                                         "name in the bank")
                    oracle[task.name][entry.name] = record.test_accuracy
                    outcome.cached += 1
                    progress.advance(bar)
                    continue
                progress.update(bar, description=f"oracle: {label}")
                try:
                    result = fit_once(entry, task, hparams, device=device, seed=recipe["seed"],
                                      precision=ft["precision"], num_workers=ft["num_workers"],
                                      augment=recipe["augment"], limit_train_batches=recipe["limit_train_batches"],
                                      progress_bar=False,  # Lightning's bar would fight this one
                                      callbacks=[_EpochDescription(progress, bar, label, hparams.epochs)])
                except Exception as exc:  # one model that cannot train must not end the benchmark
                    log.error("oracle: %s failed: %s: %s", label, type(exc).__name__, exc)
                    outcome.failed[label] = f"{type(exc).__name__}: {exc}"
                    progress.advance(bar)
                    continue
                history.add(transfer_record(
                    task, entry, model_meta=model_meta[entry.name], scores=first_scores[task.name][entry.name],
                    scores_z=z[entry.name], run_id=outcome.run_id, kind="oracle", trial=None,
                    hparams=recipe["hparams"], val_accuracy=result.val_accuracy,
                    test_accuracy=result.test_accuracy, epochs=result.epochs, seconds=result.seconds))
                oracle[task.name][entry.name] = result.test_accuracy
                outcome.trained += 1
                outcome.fit_seconds += result.seconds
                log.info("oracle: %s test %.2f%% (val %.2f%%, %.1f s)", label, result.test_accuracy,
                         result.val_accuracy, result.seconds)
                progress.advance(bar)
    outcome.wall_seconds = time.perf_counter() - start
    return oracle, outcome


# ------------------------------------------------------------------------------------------ paper mode
def read_oracle_csv(path: str | Path) -> list[tuple[str, str, str, float]]:
    """The paper's oracle CSV → ``(architecture, source, target, oracle accuracy)`` rows, file order.

    Columns ``Architecture,Source Dataset,Target Dataset,Oracle`` (others are ignored); errors name the
    file and line.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ORACLE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise BenchError(f"{path}, line 1: missing column(s) {missing}; the PARC oracle CSV has "
                                 f"{', '.join(ORACLE_COLUMNS)}")
            rows, seen = [], {}
            for row in reader:
                where = f"{path}, line {reader.line_num}"
                names = tuple((row[c] or "").strip() for c in ORACLE_COLUMNS[:3])
                if not all(names):
                    raise BenchError(f"{where}: empty {ORACLE_COLUMNS[names.index('')]}")
                try:
                    accuracy = float(row["Oracle"])
                except (TypeError, ValueError):
                    raise BenchError(f"{where}: Oracle={row['Oracle']!r} is not a number") from None
                if names in seen:
                    raise BenchError(f"{where}: duplicate transfer {names} (first on line {seen[names]})")
                seen[names] = reader.line_num
                rows.append((*names, accuracy))
    except OSError as exc:
        raise BenchError(f"{path}: cannot read the oracle CSV: {exc.strerror or exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: not a CSV file: {exc}") from None
    if not rows:
        raise BenchError(f"{path}: no transfers")
    return rows


def probe_file(probes_dir: Path, architecture: str, source: str, target: str, run: int) -> Path:
    """Where the paper's ``evaluate.py`` writes a probe set; the ``.npz`` twin wins when it exists."""
    stem = probes_dir / f"{architecture}_{source}_{target}_{run}"
    npz = stem.with_name(stem.name + ".npz")
    return npz if npz.is_file() else stem.with_name(stem.name + ".pkl")


def load_probe(path: Path, trust_pickle: bool = False) -> Features:
    """One probe set in the paper's format: ``features`` [N, D], ``probs`` [N, Cs] (optional), ``y`` [N].

    ``.npz`` is read with ``allow_pickle=False``; ``.pkl`` only when ``trust_pickle`` (else
    :class:`PickleRefusedError`, before the file is opened).
    """
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                payload = {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise BenchError(f"{path}: cannot read the probe set: {exc}") from None
    else:
        if not trust_pickle:
            raise PickleRefusedError(_pickle_refusal(path))
        try:
            with path.open("rb") as handle:
                payload = pickle.load(handle)  # the user vouched for this file with bench.trust_pickle=true
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise BenchError(f"{path}: cannot unpickle the probe set: {type(exc).__name__}: {exc}") from None
    return probe_features(payload, str(path))


def _pickle_refusal(path: Path, more: int = 0) -> str:
    others = f" (and {more} more)" if more else ""
    return (f"{path}{others} is a Python pickle. Unpickling runs whatever code the file asks for, so a "
            "probe set from an untrusted source could take over this machine; automl reads pickles only "
            "with bench.trust_pickle=true. Prefer safe .npz files: the same names with the suffix .npz and "
            "the arrays features, probs, y (np.savez), which are read without pickle and win over the .pkl.")


def probe_features(payload: Any, where: str) -> Features:
    """The paper's probe dict → :class:`Features` (float32 features/probs, int64 labels), validated."""
    if not isinstance(payload, Mapping):
        raise BenchError(f"{where}: expected a dict with features, probs, y; got {type(payload).__name__}")
    missing = [key for key in ("features", "y") if key not in payload]
    if missing:
        raise BenchError(f"{where}: missing key(s) {missing}; found {sorted(map(str, payload))}")
    try:
        features = np.asarray(payload["features"], dtype=np.float32)
        labels = np.asarray(payload["y"])
        probs = None if payload.get("probs") is None else np.asarray(payload["probs"], dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise BenchError(f"{where}: features/probs/y must be numeric arrays: {exc}") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise BenchError(f"{where}: y must be [N] integer class labels, got {labels.shape} {labels.dtype} "
                         "(multi-label targets such as voc2007 are not supported; leave them out with "
                         "bench.paper.targets)")
    for name, values in (("features", features), ("probs", probs)):
        if values is not None and (values.ndim != 2 or len(values) != len(labels)):
            raise BenchError(f"{where}: {name} must be [{len(labels)}, D], got {values.shape}")
        if values is not None and not np.isfinite(values).all():
            raise BenchError(f"{where}: {name} hold NaN or inf")
    return Features(features=features, probs=probs, labels=labels.astype(np.int64))


def paper_data(bench: Mapping[str, Any], score_names: Sequence[str], options: Mapping[str, Mapping]) -> BenchData:
    """Score the paper's probe sets and pair them with its oracle CSV."""
    paper = bench["paper"]
    if not paper.get("oracle_csv") or not paper.get("probes_dir"):
        raise BenchError("bench.paper: set both oracle_csv (the PARC oracle CSV) and probes_dir (its probe sets)")
    probes_dir = absolute_path(paper["probes_dir"])
    if not probes_dir.is_dir():
        raise BenchError(f"bench.paper.probes_dir={probes_dir} is not a folder")
    rows = read_oracle_csv(absolute_path(paper["oracle_csv"]))
    unmeasured = sum(accuracy <= 0 for *_, accuracy in rows)
    if unmeasured:
        log.info("paper: %d transfer(s) with Oracle <= 0 (not measured by the paper) are skipped", unmeasured)
    rows = [row for row in rows if row[3] > 0]
    all_targets = list(dict.fromkeys(target for _, _, target, _ in rows))
    targets = _checked_names(paper.get("targets"), all_targets, "bench.paper.targets", all_targets)
    seeds = list(bench["probe_seeds"])
    depth_table = paper.get("depth") or {}
    files = {(a, s, t, run): probe_file(probes_dir, a, s, t, run) for a, s, t, _ in rows if t in targets
             for run in seeds}
    present = {t for (_, _, t, _), path in files.items() if path.is_file()}
    for target in targets:
        if target not in present:
            log.warning("paper: no probe sets for target %s in %s; skipped", target, probes_dir)
    targets = [t for t in targets if t in present]
    files = {key: path for key, path in files.items() if key[2] in present}
    absent = [path for path in files.values() if not path.is_file()]
    if absent:
        raise BenchError(f"paper: {len(absent)} probe set(s) missing, e.g. {absent[0]} (runs = bench.probe_seeds)")
    if not targets:
        raise BenchError(f"paper: none of the targets {all_targets} has probe sets in {probes_dir}")
    pickles = [path for path in files.values() if path.suffix != ".npz"]
    if pickles and not bench["trust_pickle"]:
        raise PickleRefusedError(_pickle_refusal(pickles[0], len(pickles) - 1))
    unknown = sorted({a for a, _, t, _ in rows if t in targets and a not in depth_table})
    if unknown:
        raise BenchError(f"bench.paper.depth has no layer count for architecture(s) {unknown} (the plasticity "
                         "term needs it): add e.g. bench.paper.depth.<arch>=<layers>")

    oracle = {t: {} for t in targets}
    model_meta = {}
    for architecture, source, target, accuracy in rows:
        if target in oracle:
            model = f"{architecture}/{source}"
            oracle[target][model] = accuracy
            model_meta[model] = {"depth": depth_table[architecture]}
    scores: dict[Key, dict] = {(t, run): {} for t in targets for run in seeds}
    seconds: dict[Key, dict] = {(t, run): {} for t in targets for run in seeds}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        for (architecture, source, target, run), path in progress.track(files.items(), description="paper probes"):
            model = f"{architecture}/{source}"
            features = load_probe(path, bench["trust_pickle"])
            scores[(target, run)][model], seconds[(target, run)][model] = score_features(features, score_names,
                                                                                         options)
    return BenchData(targets=targets, seeds=seeds, oracle=oracle, scores=scores, seconds=seconds,
                     model_meta=model_meta, task_meta={t: {} for t in targets})


# --------------------------------------------------------------------------------------------- methods
def derive_methods(data: BenchData, score_names: Sequence[str], predictor: Mapping[str, Any],
                   plasticity: Sequence[str]) -> dict[str, dict[Key, MethodScores]]:
    """Every method's scores per (target, seed): the raw scores, their plasticity ensembles, the prior
    and the leave-one-target-out predictor (both need the ``linear`` score; ``predictor`` holds the
    :class:`AccuracyPredictor` arguments, :func:`automl.rank.predictor_options`)."""
    methods = {name: {key: MethodScores({m: s[name] for m, s in by_model.items()},
                                        {m: data.seconds[key][m].get(name, math.nan) for m in by_model})
                      for key, by_model in data.scores.items()}
               for name in score_names}
    depth = {model: meta.get("depth") for model, meta in data.model_meta.items()}
    shallow = [model for model, d in depth.items() if not (isinstance(d, int | float) and d > 0)]
    if plasticity and shallow:
        raise BenchError(f"model(s) {shallow}: no depth (weight layers), which the plasticity ensemble needs")
    for name in plasticity:
        ensemble = plasticity_scores({key: ms.scores for key, ms in methods[name].items()}, depth)
        methods[name + PLASTICITY] = {key: MethodScores(ensemble[key], dict(ms.seconds))
                                      for key, ms in methods[name].items()}
    if LINEAR not in score_names:
        log.warning("the prior and the predictor are anchored on the %r score, which rank.scores leaves out; "
                    "not evaluated", LINEAR)
    else:
        methods.update(predictor_methods(data, predictor, score_names))
    return methods


def predictor_methods(data: BenchData, predictor: Mapping[str, Any], score_names: Sequence[str]
                      ) -> dict[str, dict[Key, MethodScores]]:
    """``prior(<primary>)`` and, with two targets or more, ``predictor(<primary>)`` fitted on the other
    targets' oracle (leave-one-target-out). Time per model: the scores each consumes plus its fit and
    prediction over the bank, per model."""
    primary = predictor["primary"]
    prior_name, predictor_name = f"prior({primary})", f"predictor({primary})"
    out: dict[str, dict[Key, MethodScores]] = {prior_name: {}}
    if len(data.targets) >= 2:
        out[predictor_name] = {}
    else:
        log.warning("the predictor is evaluated leave-one-target-out and needs 2 targets or more; not evaluated")
    for seed in data.seeds:
        candidates = {}
        for t in data.targets:
            scored = data.scores[(t, seed)]
            candidates[t] = bank_candidates(scored, {m: data.model_meta[m] for m in scored}, data.task_meta[t])
        for target in data.targets:
            key, bank = (target, seed), candidates[target]
            seconds = data.seconds[key]
            start = time.perf_counter()
            prior = AccuracyPredictor(**predictor).predict_prior(bank)
            overhead = (time.perf_counter() - start) / len(bank)
            out[prior_name][key] = MethodScores(
                {c.model_name: float(v) for c, v in zip(bank, prior.mean, strict=True)},
                {c.model_name: overhead + sum(seconds[c.model_name].get(n, 0.0) for n in {LINEAR, primary})
                 for c in bank})
            if predictor_name not in out:
                continue
            start = time.perf_counter()
            training = [_loto_record(c, other, data.oracle[other][c.model_name]) for other in data.targets
                        if other != target for c in candidates[other] if c.model_name in data.oracle[other]]
            predicted = AccuracyPredictor(**predictor).fit(training).predict(bank)
            overhead = (time.perf_counter() - start) / len(bank)
            out[predictor_name][key] = MethodScores(
                {c.model_name: float(v) for c, v in zip(bank, predicted.mean, strict=True)},
                {c.model_name: overhead + sum(seconds[c.model_name].get(n, 0.0) for n in score_names)
                 for c in bank})
    return out


def _loto_record(candidate: Candidate, target: str, accuracy: float) -> TransferRecord:
    """A measured transfer for fitting the leave-one-target-out predictor (in memory, not stored)."""
    return TransferRecord(run_id="bench", kind="oracle", task_name=target, task_fingerprint=target,
                          model_name=candidate.model_name, model_meta=dict(candidate.model_meta),
                          task_meta=dict(candidate.task_meta), scores=dict(candidate.scores),
                          scores_z=dict(candidate.scores_z), test_accuracy=accuracy)


# -------------------------------------------------------------------------------------------- evaluate
def evaluate(methods: Mapping[str, Mapping[Key, MethodScores]], oracle: Mapping[str, Mapping[str, float]]
             ) -> list[dict[str, Any]]:
    """One row of metrics per (method, target, seed), over the models that have an oracle accuracy."""
    rows = []
    for method, by_key in methods.items():
        for (target, seed), ms in by_key.items():
            models = [m for m in oracle[target] if m in ms.scores]
            s = np.array([ms.scores[m] for m in models], dtype=float)
            o = np.array([oracle[target][m] for m in models], dtype=float)
            ms_per_model = [1000.0 * ms.seconds[m] for m in models if math.isfinite(ms.seconds.get(m, math.nan))]
            finite = np.isfinite(s)
            rows.append({
                "method": method, "target": target, "seed": seed, "n_models": len(models),
                "pearson": pearson_x100(s, o), "kendall_tau": kendall_tau(s, o),
                "weighted_tau": weighted_tau(s, o),
                "top1_regret": top1_regret(s, o), "top3_hit": top_k_hit(s, o, TOP_K),
                "ms_per_model": float(np.median(ms_per_model)) if ms_per_model else math.nan,
                "top_model": models[int(np.argmax(np.where(finite, s, -np.inf)))] if finite.any() else "",
            })
    return rows


_AVERAGED = ("pearson", "kendall_tau", "weighted_tau", "top1_regret", "top3_hit")


def summarize(rows: Sequence[Mapping[str, Any]], targets: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per method, best mean Pearson first (NaN last).

    ``pearson_<target>``: mean over seeds. For every metric of ``_AVERAGED``: ``<metric>`` and
    ``<metric>_std`` — per seed the mean over targets, then mean and std (ddof 0) over seeds, as the
    paper's ``MetricEval.aggregate``. ``ms_per_model``: median over targets and seeds.
    """
    summary = []
    for method in dict.fromkeys(row["method"] for row in rows):
        mine = [row for row in rows if row["method"] == method]
        seeds = sorted({row["seed"] for row in mine})
        entry: dict[str, Any] = {"method": method}
        for target in targets:
            entry[f"pearson_{target}"] = float(np.mean([r["pearson"] for r in mine if r["target"] == target]))
        for metric in _AVERAGED:
            per_seed = [np.mean([r[metric] for r in mine if r["seed"] == seed]) for seed in seeds]
            entry[metric], entry[f"{metric}_std"] = float(np.mean(per_seed)), float(np.std(per_seed))
        entry["ms_per_model"] = float(np.nanmedian([r["ms_per_model"] for r in mine])) \
            if any(math.isfinite(r["ms_per_model"]) for r in mine) else math.nan
        summary.append(entry)
    summary.sort(key=lambda e: -e["pearson"] if math.isfinite(e["pearson"]) else math.inf)
    return summary


# ---------------------------------------------------------------------------------------------- output
def _fmt(value: float, digits: int = 1, std: float | None = None) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and math.isfinite(std) else "")


def table_cells(summary: Sequence[Mapping[str, Any]], targets: Sequence[str], spread: bool = True
                ) -> tuple[list[str], list[list[str]]]:
    """The benchmark table (header, rows) shared by the markdown file and the console; ``spread=False``
    leaves the std over seeds out of every column but the headline Pearson (a narrow console)."""
    def cell(entry: Mapping[str, Any], metric: str, digits: int) -> str:
        return _fmt(entry[metric], digits, entry[f"{metric}_std"] if spread else None)

    header = ["method", *targets, "Pearson mean ± std", "Kendall τ", "weighted τ", "regret (pts)", "top-3 %",
              "ms/model"]
    rows = [[e["method"], *(_fmt(e[f"pearson_{t}"]) for t in targets), _fmt(e["pearson"], 1, e["pearson_std"]),
             cell(e, "kendall_tau", 2), cell(e, "weighted_tau", 2), cell(e, "top1_regret", 2),
             _fmt(100 * e["top3_hit"], 0), _fmt(e["ms_per_model"], 2)] for e in summary]
    return header, rows


def write_results_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else
                                 "" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def oracle_cells(data: BenchData) -> tuple[list[str], list[list[str]]]:
    """Per target: bank size and the spread of oracle accuracies (what a ranking can gain)."""
    header = ["target", "models", "best (oracle %)", "mean %", "worst %"]
    rows = []
    for target in data.targets:
        acc = data.oracle[target]
        best = max(acc, key=acc.get)
        rows.append([target, str(len(acc)), f"{best} ({acc[best]:.1f})", f"{np.mean(list(acc.values())):.1f}",
                     f"{min(acc.values()):.1f}"])
    return header, rows


def write_table_md(path: Path, summary, data: BenchData, context: Sequence[str]) -> Path:
    text = "\n\n".join([
        "# Transferability benchmark (PARC protocol)",
        "\n".join(f"- {line}" for line in context),
        _markdown(*table_cells(summary, data.targets)),
        "Per target: Pearson r x100 between score and oracle accuracy across the bank (mean over probe seeds). "
        "Pearson mean ± std: averaged over targets (± std over seeds); Kendall τ, weighted τ, regret and top-3 "
        "likewise. Regret: top-1 regret, the oracle accuracy lost by taking the top-scored model (points). "
        "Top-3: how often an oracle-best model is among the 3 best-scored. ms/model: median time to compute "
        "the score from the probe features.",
        "## Oracle",
        _markdown(*oracle_cells(data)),
    ])
    atomic_write_text(path, text + "\n")
    return path


def write_scatter(path: Path, methods: Mapping[str, Mapping[Key, MethodScores]], data: BenchData,
                  names: Sequence[str]) -> Path:
    """Score (z-scored across the bank, first probe seed) vs oracle accuracy, one panel per target."""
    from matplotlib.figure import Figure

    columns = min(3, len(data.targets))
    rows = math.ceil(len(data.targets) / columns)
    figure = Figure(figsize=(4.6 * columns, 3.8 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    seed = data.seeds[0]
    for ax, target in zip(axes, data.targets, strict=False):
        for name, marker in zip(names, "os^Dvx<>", strict=False):
            ms = methods[name][(target, seed)]
            models = [m for m in data.oracle[target] if math.isfinite(ms.scores.get(m, math.nan))]
            s = np.array([ms.scores[m] for m in models])
            o = np.array([data.oracle[target][m] for m in models])
            z = (s - s.mean()) / s.std() if len(s) > 1 and s.std() > 0 else np.zeros_like(s)
            ax.scatter(z, o, marker=marker, alpha=0.75, label=f"{name} (r={_fmt(pearson_x100(s, o), 0)})")
        ax.set_title(target)
        ax.set_xlabel("score, z across the bank")
        ax.set_ylabel("oracle test accuracy (%)")
        ax.legend(fontsize="x-small")
    for ax in axes[len(data.targets):]:
        ax.set_visible(False)
    figure.suptitle(f"score vs fine-tuned accuracy (probe seed {seed})")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120)
    return path


def console_table(summary, targets: Sequence[str], caption: str) -> Table:
    header, rows = table_cells(summary, targets, spread=False)
    table = Table(title="Transferability benchmark (PARC protocol): score vs fine-tuned accuracy", caption=caption)
    for index, column in enumerate(header):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


# ------------------------------------------------------------------------------------------------- run
def run_bench(cfg: DictConfig, run_dir: str | Path, console: Console | None = None) -> BenchResult:
    """Run the benchmark configured by ``cfg`` (``conf/bench.yaml``) and write its outputs to ``run_dir``."""
    console = console or Console()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    bench = _settings(cfg)
    score_names = resolve_score_names(to_container(cfg.rank.scores))
    primary = str(cfg.rank.primary)
    if primary not in score_names:
        raise BenchError(f"rank.primary={primary!r} is not among the computed scores {score_names}")
    plasticity = _checked_names(bench["plasticity"], score_names, "bench.plasticity", score_names)
    paper = bench["paper"] or {}
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    oracle_stats = None
    if paper.get("oracle_csv") or paper.get("probes_dir"):
        data = paper_data(bench, score_names, to_container(cfg.rank.options) or {})
        source = f"paper data: {paper['oracle_csv']} x {paper['probes_dir']}"
    else:
        data, oracle_stats = bank_data(cfg, bench, score_names, select_device(str(cfg.device)))
        source = f"bank {cfg.bank.name} x targets {', '.join(data.targets)}"
    seconds["data"] = time.perf_counter() - start
    if oracle_stats is not None:  # split the bank's data phase into probe scores and oracle fits
        seconds = {"probe scores": seconds["data"] - oracle_stats.wall_seconds,
                   "oracle": oracle_stats.wall_seconds}

    start = time.perf_counter()
    methods = derive_methods(data, score_names, predictor_options(cfg.rank), plasticity)
    rows = evaluate(methods, data.oracle)
    summary = summarize(rows, data.targets)
    seconds["metrics"] = time.perf_counter() - start

    defaults = [primary, primary + PLASTICITY, f"prior({primary})", f"predictor({primary})"]
    scatter = _checked_names(bench["scatter"], list(methods), "bench.scatter",
                             [m for m in defaults if m in methods])
    context = [source, f"probe seeds {data.seeds} ({to_container(cfg.probe).get('budget')} images per probe set)",
               f"primary score {primary}"]
    if oracle_stats is not None:
        context.append(f"oracle recipe {oracle_stats.run_id}: {json.dumps(oracle_stats.recipe, sort_keys=True)}")
        context.append(f"oracle fits: {oracle_stats.trained} trained now ({oracle_stats.fit_seconds:.0f} s), "
                       f"{oracle_stats.cached} from the history, {len(oracle_stats.failed)} failed")
    context.append("wall time: " + ", ".join(f"{name} {secs:.0f} s" for name, secs in seconds.items()))
    files = {
        "csv": write_results_csv(run_dir / "bench_results.csv", rows),
        "table": write_table_md(run_dir / "bench_table.md", summary, data, context),
        "scatter": write_scatter(run_dir / "scatter.png", methods, data, scatter),
    }
    wide = console if console.is_terminal else Console(file=console.file, width=160)  # a log file: no 80-column wrap
    wide.print(console_table(summary, data.targets, "\n".join(context)))
    console.print(f"results: {run_dir}")
    return BenchResult(rows=rows, summary=summary, data=data, oracle=oracle_stats, seconds=seconds, files=files)


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    """``python -m automl.bench [bench.targets=[digits,glyphs]] [bank=...] [bench.paper.oracle_csv=...]``."""
    try:
        run_bench(cfg, Path(HydraConfig.get().runtime.output_dir))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
