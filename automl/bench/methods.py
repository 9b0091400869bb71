"""The methods the benchmark ranks with, per (target, probe seed): every raw score, its plasticity
ensemble, the prior and the leave-one-target-out predictor."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from automl.bench.data import BenchData, BenchError, Key, MethodScores
from automl.history import TransferRecord
from automl.predictor import (
    LINEAR,
    PLASTICITY_DEPTH,
    AccuracyPredictor,
    Candidate,
    bank_candidates,
    zscore_bank,
)

log = logging.getLogger(__name__)

PLASTICITY = "+plasticity"  # suffix of the paper's plasticity ensemble of a score


def plasticity_scores(values: Mapping[Key, Mapping[str, float]], depth: Mapping[str, float]
                      ) -> dict[Key, dict[str, float]]:
    """The paper's plasticity ensemble ``z(score) + depth / 50`` (``metrics.add_plasticity``, weight 1).

    ``values[(target, seed)][model]`` are one score's raw values; the z-score pools every finite value of
    every (target, seed) and model, with the sample std (ddof 1, pandas' ``std``), as the paper's code
    normalises each method's whole results column. ``depth[model]`` is its number of weight layers.
    Non-finite values stay NaN; with no spread, z = 0.
    """
    cells = [(key, model) for key, by_model in values.items() for model in by_model]
    pooled = zscore_bank([{"score": values[key][model]} for key, model in cells])  # one bank of every cell
    result: dict[Key, dict[str, float]] = {key: {} for key in values}
    for (key, model), z in zip(cells, pooled, strict=True):
        result[key][model] = z.get("score", math.nan) + depth[model] / PLASTICITY_DEPTH
    return result


def derive_methods(data: BenchData, score_names: Sequence[str], predictor: Mapping[str, Any],
                   plasticity: Sequence[str]) -> dict[str, dict[Key, MethodScores]]:
    """Every method's scores per (target, seed): the raw scores, their plasticity ensembles, the prior
    and the leave-one-target-out predictor (both need the ``linear`` score; ``predictor`` holds the
    :class:`AccuracyPredictor` arguments, :func:`automl.predictor.predictor_options`)."""
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
