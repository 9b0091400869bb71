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

from automl.bench.data import BenchError
from automl.bench.measure import target_settings
from automl.bench.methods import plasticity_scores
from automl.bench.metrics import (
    RESULT_COLUMNS,
    kendall_tau,
    pearson_x100,
    summarize,
    top1_regret,
    top_k_hit,
    weighted_tau,
)
from automl.bench.oracle import oracle_recipe, recipe_id
from automl.bench.paper import PickleRefusedError, load_probe, probe_features, probe_file, read_oracle_csv
from automl.bench.run import BenchResult, run_bench

__all__ = [
    "RESULT_COLUMNS", "BenchError", "BenchResult", "PickleRefusedError", "kendall_tau", "load_probe",
    "oracle_recipe", "pearson_x100", "plasticity_scores", "probe_features", "probe_file",
    "read_oracle_csv", "recipe_id", "run_bench", "summarize", "target_settings", "top1_regret",
    "top_k_hit", "weighted_tau",
]
