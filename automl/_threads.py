"""One-thread sections for small numerical work (threadpoolctl, restored afterwards).

At the sizes automl scores and predicts (hundreds to a few thousand rows) BLAS and OpenMP threads gain
nothing, and on small or shared machines their pools fight each other and torch's: one randomized PCA
of a 500 x 2048 matrix took 1.2 s with torch imported instead of 16 ms, and two workers fitting the
boosting predictor at once took 14.5 s each instead of 1.3 s. One thread also makes the numbers
independent of the core count.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import cache

from threadpoolctl import ThreadpoolController


def single_threaded() -> AbstractContextManager:
    """A context in which the loaded BLAS and OpenMP libraries run one thread."""
    return _thread_pools().limit(limits=1)


@cache
def _thread_pools() -> ThreadpoolController:
    """The BLAS/OpenMP libraries loaded at the first call (scanning them costs ~2 ms); numpy, scipy,
    scikit-learn and torch are imported by then."""
    return ThreadpoolController()
