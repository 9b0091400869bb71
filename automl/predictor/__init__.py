"""Transferability scores + meta-features → predicted fine-tuned accuracy (percent) with an 80% interval.

:mod:`.features` (what the model sees), :mod:`.model` (the regression and its intervals), :mod:`.shipped`
(the meta-benchmark records it is trained on), :mod:`.predictor` (cold start, refined by the user's
history), :mod:`.calibration` (whether the history helps), :mod:`.curves` (where a fit stopped early was
headed, from its validation curve).
"""

from automl.predictor.calibration import format_calibration
from automl.predictor.curves import CurveEstimate, CurveModel, shipped_curve_model
from automl.predictor.inputs import Candidate, bank_candidates, zscore_bank
from automl.predictor.predictor import AccuracyPredictor, Prediction, comparable_transfers, leave_one_task_out

__all__ = ["AccuracyPredictor", "Candidate", "CurveEstimate", "CurveModel", "Prediction", "bank_candidates", "comparable_transfers",
           "format_calibration", "leave_one_task_out", "shipped_curve_model", "zscore_bank"]
