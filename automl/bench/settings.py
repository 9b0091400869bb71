"""The ``bench`` block of ``conf/bench.yaml``, validated, and :class:`BenchError`, which names the bad
setting or file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

from automl.config import to_container

_BENCH_KEYS = {"targets", "probe_seeds", "oracle", "plasticity", "scatter", "trust_pickle", "paper"}
_PAPER_KEYS = {"oracle_csv", "probes_dir", "targets", "depth"}


class BenchError(ValueError):
    """The benchmark cannot run as configured; the message names the setting or file."""


def bench_settings(cfg: DictConfig) -> dict[str, Any]:
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


def checked_names(value: Any, known: Sequence[str], where: str, default: Sequence[str]) -> list[str]:
    """``value`` (a list of names, or null for ``default``) checked against ``known``."""
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BenchError(f"{where}={value!r} must be a list of names (or null)")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise BenchError(f"{where}: unknown name(s) {unknown}; known: {list(known)}")
    return list(value)
