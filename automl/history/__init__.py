"""The history of measured transfers: every fine-tuned accuracy next to the scores that predicted it.

A record (:class:`TransferRecord`, :mod:`.records`) is one measured transfer (bank model → task) with the
task/model meta-features, every transferability score (raw and z-scored across the bank at rank time),
the hyperparameters and the measured accuracies. :class:`History` (:mod:`.store`) keeps them in the
``storage`` database next to the Optuna studies; :mod:`.csvfile` moves them between machines. The
accuracy predictor (:mod:`automl.predictor`) is refit on these records.
"""

from automl.history.csvfile import read_csv
from automl.history.records import FIELDS, KINDS, HistoryError, RecordError, TransferRecord
from automl.history.similar import similar_task_hparams, task_distance
from automl.history.store import SCHEMA_VERSION, History

__all__ = ["FIELDS", "KINDS", "SCHEMA_VERSION", "History", "HistoryError", "RecordError", "TransferRecord",
           "read_csv", "similar_task_hparams", "task_distance"]
