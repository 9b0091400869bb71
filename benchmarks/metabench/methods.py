"""The methods the benchmark ranks a bank x targets (or the paper's data) with, per (target, probe seed):
every raw score, its plasticity ensemble, and the predictor."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

from automl.predictor import AccuracyPredictor, bank_candidates, zscore_bank
from automl.settings import PredictorSettings
from benchmarks.metabench.data import BenchData, BenchError, Key, MethodScores

PLASTICITY = "+plasticity"  # suffix of the paper's plasticity ensemble of a score
PLASTICITY_DEPTH = 50.0  # the paper's capacity term is depth / 50
PREDICTOR = "predictor"  # the pipeline's ranking: predicted accuracy


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


def derive_methods(data: BenchData, score_names: Sequence[str], predictor: PredictorSettings,
                   plasticity: Sequence[str]) -> dict[str, dict[Key, MethodScores]]:
    """Every method's scores per (target, seed): the raw scores, their plasticity ensembles, and the
    predictor's predicted accuracy (the cold start, fitted on the shipped meta-benchmark)."""
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
    methods[PREDICTOR] = predictor_scores(data, predictor)
    return methods


def predictor_scores(data: BenchData, settings: PredictorSettings) -> dict[Key, MethodScores]:
    """The predicted accuracy of every model per (target, seed). Time per model: every score it consumes
    plus the prediction over the bank, per model."""
    predictor = AccuracyPredictor(settings)
    predictor.cold_start()  # fitted once, before the clock
    out = {}
    for (target, seed), scored in data.scores.items():
        start = time.perf_counter()
        bank = bank_candidates(scored, {m: data.model_meta[m] for m in scored}, data.task_meta[target])
        predicted = predictor.predict(bank)
        overhead = (time.perf_counter() - start) / len(bank)
        seconds = data.seconds[(target, seed)]
        out[(target, seed)] = MethodScores({c.model_name: float(v) for c, v in zip(bank, predicted.mean, strict=True)},
                                           {c.model_name: overhead + sum(seconds[c.model_name].values()) for c in bank})
    return out
