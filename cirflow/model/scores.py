"""How an image's region tokens enter its score, shared by training (`cirflow.model.sprc`) and
the evaluation's ranking (`cirflow.evaluate.ranking`), so that both score alike.

With s_K the best global token's score and s_R the best region token's (−inf without boxes):

    tokens   s = max(s_K, s_R)
    gated    s = s_K + g · τ · softplus((s_R − s_K) / τ),   g ∈ [0, 1] learned, τ = GATE_SOFTNESS

The gated score is exactly s_K at g = 0 (the control's) and for an image without boxes, and
close to the union at g = 1 (within τ·log 2 where s_R = s_K). A softplus rather than a hinge:
with max(0, s_R − s_K) the gate gets no gradient while no region token beats its image's global
tokens, which is how training starts, so it would never open. It is 1-Lipschitz in (s_K, s_R),
as the max is: the bf16 error bound of the ranking holds for it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GATE_SOFTNESS = 0.05


def with_regions(
    by_global: torch.Tensor, by_region: torch.Tensor, gate: torch.Tensor | float | None
) -> torch.Tensor:
    """The score over an image's global and region tokens from their two maxima (module
    docstring): the union without a gate, the gated union with one."""
    if gate is None:
        return torch.maximum(by_global, by_region)
    lift = GATE_SOFTNESS * F.softplus((by_region - by_global) / GATE_SOFTNESS)
    return by_global + gate * lift
