"""The training runs the workflow makes, and the params of each (what a rule's `params.train`
holds: exactly what decides the run's weights).

Stages (rule train, one job per `{stage}`):

    stage1           train.stage1
    stage2           train.stage2, region mode train.stage2.region.mode (none | aux | tokens)
    stage2_control   train.stage2 with region mode none: same init, schedule, seed and batch
                     order as stage 2, so that stage 2 − control is the region effect alone
                     (docs/design.md §6, §11)

The ablation's runs (rule ablation_train): train.stage2 with a given region mode, box source and
seed (and the ablation's epochs), all from the same stage-1 best.pt. A run is named `none` (the
box-independent control, shared by every box source) or `<mode>_<source>` (`tokens_gt`).

Torch-free: `rules/common.smk` imports this module.
"""

from __future__ import annotations

import copy
from typing import Any

from cirflow.errors import CirflowError
from cirflow.model.config import REGION_MODES
from cirflow.train.config import REGION_DEFAULTS, STAGE_RUNTIME_KEYS

STAGES = ("stage1", "stage2_control", "stage2")
CONTROL = "stage2_control"
# Keys of train.stage2 that only matter when boxes are used: a mode-none run's params leave
# them out, so that changing them never reruns the control.
REGION_ONLY_KEYS = ("loss_region", "box_method")
# The settings a region mode decides: the control and stage 2 differ in these (and `out`) only.
REGION_SETTINGS = (
    "region_mode",
    "loss_region",
    "region_lr_multiplier",
    "max_region_tokens",
    "box_file",
    "box_meta_file",
    "val_box_file",
    "val_box_meta_file",
)


# -------------------------------------------------------------------------------- run params
def region_config(stage2_cfg: dict) -> dict[str, Any]:
    """train.stage2.region with its defaults (REGION_DEFAULTS) filled in."""
    return {**REGION_DEFAULTS, **(stage2_cfg.get("region") or {})}


def with_region_mode(stage2_cfg: dict, mode: str, num_epochs: int | None = None) -> dict:
    """A copy of the train.stage2 block with region mode `mode` (and `num_epochs`, if given).
    Mode none keeps no region-only key (REGION_ONLY_KEYS, region.*): none of them can change
    such a run."""
    block = copy.deepcopy(stage2_cfg)
    if mode == "none":
        for key in REGION_ONLY_KEYS:
            block.pop(key, None)
        block["region"] = {"mode": "none"}
    else:
        block["region"] = {**region_config(stage2_cfg), "mode": mode}
    if num_epochs is not None:
        block["num_epochs"] = int(num_epochs)
    return block


def semantic_params(train_cfg: dict, stage: str) -> dict[str, Any]:
    """The part of `train:` that determines stage `stage`'s weights (a rule's params):
    {"seed", "amp", <block name>: block}. The control's block is train.stage2 with region mode
    none, under the name stage2 (it is a stage-2 run in every other respect)."""
    if stage not in STAGES:
        raise CirflowError(f"unknown training stage {stage!r}")
    base = {"seed": train_cfg["seed"], "amp": train_cfg["amp"]}
    block_name = "stage2" if stage == CONTROL else stage
    own = {k: v for k, v in train_cfg[block_name].items() if k not in STAGE_RUNTIME_KEYS}
    if stage == CONTROL:
        own = with_region_mode(own, "none")
    return {**base, block_name: own}


def ablation_params(train_cfg: dict, ablation_cfg: dict, mode: str, seed: int) -> dict[str, Any]:
    """The params of one ablation run: train.stage2 with region mode `mode`, stage-2 seed
    `seed` and the ablation's epochs (ablation.num_epochs; null = train.stage2's)."""
    if mode not in REGION_MODES:
        raise CirflowError(f"ablation: unknown region mode {mode!r} (one of {REGION_MODES})")
    own = {k: v for k, v in train_cfg["stage2"].items() if k not in STAGE_RUNTIME_KEYS}
    block = with_region_mode(own, mode, ablation_cfg.get("num_epochs"))
    return {"seed": int(seed), "amp": train_cfg["amp"], "stage2": block}


def stage_mode(train_params: dict, stage: str = "stage2") -> str:
    """The region mode of a stage's params (none for stage 1)."""
    if stage == "stage1" or stage not in train_params:
        return "none"
    return region_config(train_params[stage])["mode"]


# ------------------------------------------------------------------------- the ablation's runs
def run_name(mode: str, source: str | None) -> str:
    """`none` (box-independent) or `<mode>_<box source>`."""
    if mode == "none":
        return "none"
    if not source:
        raise CirflowError(f"ablation: region mode {mode} needs a box source")
    return f"{mode}_{source}"


def parse_run(name: str) -> tuple[str, str | None]:
    """(mode, box source or None) of a run name; the inverse of `run_name`. A mode's name may
    hold an underscore (token_loss_gt): the longest mode the name starts with is taken."""
    if name == "none":
        return "none", None
    for mode in sorted(REGION_MODES[1:], key=len, reverse=True):
        if name.startswith(mode + "_") and len(name) > len(mode) + 1:
            return mode, name[len(mode) + 1 :]
    raise CirflowError(
        f"ablation run {name!r}: expected none or <mode>_<box source> with a mode of "
        f"{', '.join(REGION_MODES[1:])}"
    )


def ablation_runs(modes: list[str], sources: list[str]) -> list[str]:
    """Every run of the ablation, in order: none once (if asked for), then each box source's
    modes."""
    runs = ["none"] if "none" in modes else []
    for source in sources:
        runs += [run_name(m, source) for m in modes if m != "none"]
    return runs


def ablation_sources(box_sources: list[str] | None, box_methods: list[str], demo: bool) -> list:
    """ablation.box_sources, else boxes.methods plus gt (ground-truth boxes) on the demo."""
    sources = box_sources or [*box_methods, *(["gt"] if demo else [])]
    if "gt" in sources and not demo:
        raise CirflowError("ablation.box_sources: gt (ground-truth boxes) exists only for the demo")
    return list(dict.fromkeys(sources))


def run_pattern(box_sources: list[str]) -> str:
    """The regular expression of a run name (the `{run}` wildcard)."""
    modes = "|".join(sorted(REGION_MODES[1:], key=len, reverse=True))
    return f"none|({modes})_({'|'.join(box_sources)})"
