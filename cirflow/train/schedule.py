"""The learning-rate schedule of a training run: torch's OneCycleLR (docs/design.md §5).

    total steps  = steps_per_epoch × schedule_length   (schedule_epochs, else num_epochs)
    pct_start    = min(warmup_epochs / schedule_length, 0.5)
    start lr     = learning_rate / div_factor, peak learning_rate, cosine annealing to
                   start lr / 1e4 (torch's final_div_factor) at the schedule's end

Default (schedule_epochs null, div_factor 100): the schedule ends with the run. SPRC's own
script (blip_fine_tune_2.py, CIRR) builds ``OneCycleLR(max_lr=lr, pct_start=1/50,
steps_per_epoch=len(loader), epochs=80)`` — torch's div_factor 25 — and trains 50 of those 80
epochs: schedule_epochs 80, warmup_epochs 1.6, div_factor 25 reproduce it step for step
(config/presets/sprc_cirr.yaml). OneCycleLR also cycles AdamW's beta1 between 0.95 and 0.85
(cycle_momentum), in SPRC's script as here.

Parameter groups: OneCycleLR takes one peak per group (`max_lr` as a list). A group's peak is
learning_rate × its ``lr_multiplier`` (1 when absent): stage 2's `aux` mode gives `region_proj`
its own group (train.stage2.region.lr_multiplier), the same shape of schedule at a scaled
height.
"""

from __future__ import annotations

import torch


def one_cycle(
    optimizer: torch.optim.Optimizer,
    learning_rate: float,
    total_steps: int,
    pct_start: float,
    div_factor: float,
) -> torch.optim.lr_scheduler.OneCycleLR:
    """OneCycleLR over `total_steps`, each parameter group peaking at `learning_rate` × its
    ``lr_multiplier``."""
    peaks = [
        learning_rate * float(group.get("lr_multiplier", 1.0)) for group in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=peaks if len(peaks) > 1 else peaks[0],
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=float(div_factor),
    )
