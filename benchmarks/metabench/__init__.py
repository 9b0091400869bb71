"""``python -m automl.bench [overrides]``: the benchmarks that choose automl's defaults.

Modes (``bench.mode``) and data (``bench.data``):

* ``ranking`` on ``meta`` (the default) — every ranking method judged on the shipped meta-benchmark, only
  ever on banks and targets it was not fitted or picked on (:mod:`.meta`); seconds, nothing trained;
* ``build`` — measures the meta-benchmark (7 banks, 84 checkpoints, 9 targets) and writes its data
  (:mod:`.build`, :mod:`.banks`); with ``bench.banks=[...]`` it measures those banks and replaces only their
  rows of the data;
* ``end_to_end`` — the model ``python -m automl`` hands back against every model fine-tuned with the fixed
  recipe, and the compute of both (:mod:`.end_to_end`);
* ``ranking`` on ``bank`` — the PARC paper's protocol (Bolya et al., NeurIPS 2021; dbolya/parc
  ``evaluate.py`` and ``metrics.py``) on any bank x targets: every model fine-tuned on every target with the
  fixed recipe ``bench.oracle`` (the oracle, :mod:`.oracle`; stored in the history as it is measured, so a
  rerun trains nothing), 5 class-balanced probe sets of 500 images per target, every score, the paper's
  ``<score>+plasticity`` ensemble and the predictor (:mod:`.methods`);
* ``ranking`` on ``paper`` — the same protocol on the paper's released oracle CSV and probe sets
  (:mod:`.paper`; ``.pkl`` files only with ``bench.trust_pickle=true``: unpickling can run code).

Metrics per (method, target, probe set), across a bank (:mod:`.metrics`): Pearson x100 between score and
oracle (the paper's headline), Kendall's tau-b, weighted tau (``scipy.stats.weightedtau``, as the
LogME/SFDA papers), top-1 regret (accuracy points lost by taking the top-scored model) and top-3 hit.
Outputs in the run folder (atomic writes): ``bench_results.csv``, ``bench_table.md`` and, for a bank,
``scatter.png`` (:mod:`.tables`).
"""

from benchmarks.metabench.data import BenchError
from benchmarks.metabench.measure import target_settings
from benchmarks.metabench.methods import plasticity_scores
from benchmarks.metabench.metrics import (
    RESULT_COLUMNS,
    kendall_tau,
    pearson_x100,
    summarize,
    top1_regret,
    top_k_hit,
    top_k_regret,
    weighted_tau,
)
from benchmarks.metabench.oracle import oracle_recipe, recipe_id
from benchmarks.metabench.paper import (
    PickleRefusedError,
    load_probe,
    probe_features,
    probe_file,
    read_oracle_csv,
)
from benchmarks.metabench.run import BenchResult, run_bench

__all__ = [
    "RESULT_COLUMNS", "BenchError", "BenchResult", "PickleRefusedError", "kendall_tau", "load_probe",
    "oracle_recipe", "pearson_x100", "plasticity_scores", "probe_features", "probe_file",
    "read_oracle_csv", "recipe_id", "run_bench", "summarize", "target_settings", "top1_regret",
    "top_k_hit", "top_k_regret", "weighted_tau",
]
