"""The PARC paper's released data: its oracle CSV and its probe sets (``.npz``; ``.pkl`` only with
``bench.trust_pickle=true``, else :class:`PickleRefusedError` before anything is unpickled)."""

from __future__ import annotations

import csv
import logging
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from automl._fileio import absolute_path
from automl._progress import progress_bar
from automl.rank.embeddings import Features
from automl.transferability import score_many
from benchmarks.metabench.data import BenchData, BenchError, Key, checked_names
from benchmarks.settings import BenchSettings

log = logging.getLogger(__name__)

ORACLE_COLUMNS = ("Architecture", "Source Dataset", "Target Dataset", "Oracle")


class PickleRefusedError(BenchError):
    """A probe set is a pickle and ``bench.trust_pickle`` is false: nothing was unpickled."""


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


def paper_data(bench: BenchSettings, score_names: Sequence[str], options: Mapping[str, Mapping]) -> BenchData:
    """Score the paper's probe sets and pair them with its oracle CSV."""
    paper = bench.paper
    if not paper.oracle_csv or not paper.probes_dir:
        raise BenchError("bench.paper: set both oracle_csv (the PARC oracle CSV) and probes_dir (its probe sets)")
    probes_dir = absolute_path(paper.probes_dir)
    if not probes_dir.is_dir():
        raise BenchError(f"bench.paper.probes_dir={probes_dir} is not a folder")
    rows = read_oracle_csv(absolute_path(paper.oracle_csv))
    unmeasured = sum(accuracy <= 0 for *_, accuracy in rows)
    if unmeasured:
        log.info("paper: %d transfer(s) with Oracle <= 0 (not measured by the paper) are skipped", unmeasured)
    rows = [row for row in rows if row[3] > 0]
    all_targets = list(dict.fromkeys(target for _, _, target, _ in rows))
    targets = checked_names(paper.targets, all_targets, "bench.paper.targets", all_targets)
    seeds = list(bench.probe_seeds)
    depth_table = paper.depth
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
    if pickles and not bench.trust_pickle:
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
    with progress_bar() as progress:
        for (architecture, source, target, run), path in progress.track(files.items(), description="paper probes"):
            model = f"{architecture}/{source}"
            features = load_probe(path, bench.trust_pickle)
            scores[(target, run)][model], seconds[(target, run)][model] = score_many(
                score_names, features.features, features.labels, features.probs, options)
    return BenchData(targets=targets, seeds=seeds, oracle=oracle, scores=scores, seconds=seconds,
                     model_meta=model_meta, task_meta={t: {} for t in targets})
