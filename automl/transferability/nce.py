"""NCE: Negative Conditional Entropy (Tran, Nguyen, Hassner; ICCV 2019).

With z_i = argmax_z probs[i, z] the source model's hard prediction and P(y, z) the empirical joint of
(target label, source prediction) over the N probe images:

    NCE = -H(Y | Z) = sum_{y,z} P(y, z) log P(y | z) = sum P(y, z) log P(y, z) - sum_z P(z) log P(z)

with 0 log 0 = 0. Scale: nats, in [-log C, 0] (0 = each source prediction determines the target
class); higher = better.

Reference: github.com/thuml/LogME, NCE.py (current version, which masks source classes never
predicted and adds 1e-20 inside the log; that offset changes the result by < C * 5e-19).
Limits: ties in probs go to the lowest source class (argmax). Constant probabilities put every
image in one source class: NCE = -H(Y).
"""

from __future__ import annotations

import numpy as np

from ._registry import register_score
from ._validate import Inputs


@register_score("nce", uses_features=False, needs_probs=True)
def nce(inputs: Inputs) -> float:
    """-H(Y | Z) in nats for Z = argmax of ``probs`` [N, Cs]; in [-log C, 0]."""
    probs = inputs.probs
    n, n_source = probs.shape
    z = probs.argmax(axis=1)
    _, joint = np.unique(inputs.labels * n_source + z, return_counts=True)  # nonzero N * P(y, z)
    _, p_z = np.unique(z, return_counts=True)  # nonzero N * P(z)
    joint, p_z = joint / n, p_z / n  # 0 log 0 = 0: only nonzero cells are listed
    return float(np.dot(joint, np.log(joint)) - np.dot(p_z, np.log(p_z)))
