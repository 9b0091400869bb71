"""The meta-benchmark data the predictor ships (automl/predictor/metabench): read as its cells."""

from __future__ import annotations

import numpy as np


def test_each_shipped_validation_curve_is_its_own_models_fit(meta):
    """The curves are read beside the accuracies: every one peaks at its fit's recorded validation accuracy."""
    for cell in meta.cells:
        assert len(cell.oracle_curves) == len(cell.candidates)
        peaks = np.array([max(curve) for curve in cell.oracle_curves])
        np.testing.assert_allclose(peaks, cell.oracle_val, atol=0.01)
