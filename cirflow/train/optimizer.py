"""The optimizer of every training run: AdamW with SPRC's betas (0.9, 0.98) and eps 1e-7.

torch's fused AdamW updates all parameters in one kernel per step instead of a dozen operations
per tensor: on the demo's tiny model, where a step's arithmetic is small and the per-operation
overhead is half of it, the optimizer step goes from 3.7 to 1.3 ms of a 72 ms CPU step
(benchmarks/bench_demo.py). The
update is the same AdamW; its float rounding can differ in the last bits from the per-tensor
loop. Devices torch has no fused kernel for (and non-float32 weights) take the default path.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

FUSED_DEVICES = ("cpu", "cuda")


def adamw(params: Iterable, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over `params` (tensors or parameter-group dicts), fused where it can be."""
    groups = list(params)
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = bool(tensors) and all(
        p.device.type in FUSED_DEVICES and p.dtype == torch.float32 for p in tensors
    )
    return torch.optim.AdamW(
        groups,
        lr=learning_rate,
        betas=(0.9, 0.98),
        eps=1e-7,
        weight_decay=weight_decay,
        fused=fused or None,
    )
