"""The training runs the workflow makes, and the params of each (what a rule's `params.train`
holds: exactly what decides the run's weights).

Stages (rule train, one job per `{stage}`):

    stage1           train.stage1
    stage2           train.stage2, region mode train.stage2.region.mode (none | aux | tokens)
    stage2_control   train.stage2 with region mode none: same init, schedule, seed and batch
                     order as stage 2, so that stage 2 − control is the region effect alone
                     (docs/design.md §6, §11)

The ablation's runs (rule ablation_train): train.stage2 with a given region mode, box source and
seed (and the ablation's epochs, or the run's own), all from the same stage-1 best.pt. A run is
named `none` (the box-independent control, shared by every box source) or `<mode>_<source>`
(`tokens_gt`), with `@<epochs>` for a run of its own length (`none@6`): `AblationRun`.

Torch-free: `rules/common.smk` imports this module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from cirflow.errors import CirflowError
from cirflow.model.config import REGION_MODES, RegionMode
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


def ablation_params(
    train_cfg: dict, ablation_cfg: dict, run: AblationRun, seed: int
) -> dict[str, Any]:
    """The params of one ablation run: train.stage2 with the run's region mode, stage-2 seed
    `seed` and its epochs (the run's own, else ablation.num_epochs, else train.stage2's)."""
    own = {k: v for k, v in train_cfg["stage2"].items() if k not in STAGE_RUNTIME_KEYS}
    epochs = run.epochs or ablation_cfg.get("num_epochs")
    block = with_region_mode(own, run.mode, epochs)
    return {"seed": int(seed), "amp": train_cfg["amp"], "stage2": block}


def stage_mode(train_params: dict, stage: str = "stage2") -> str:
    """The region mode of a stage's params (none for stage 1)."""
    if stage == "stage1" or stage not in train_params:
        return "none"
    return region_config(train_params[stage])["mode"]


# ------------------------------------------------------------------------- the ablation's runs
# Box sources of the demo only: its ground-truth boxes (rule gt_boxes) and each triplet's
# edited-object boxes (the generator's sidecars: per triplet, so only for modes that score no
# region tokens).
DEMO_SOURCES = ("gt", "edited")
PER_TRIPLET_SOURCES = ("edited",)


@dataclass(frozen=True)
class AblationRun:
    """One kind of ablation run: a region mode, its box source (None for none) and, where it
    differs from the ablation's, its stage-2 epochs. Named `none`, `<mode>_<box source>`, with
    `@<epochs>` appended for its own epochs (`token_loss_edited@6`)."""

    mode: str
    source: str | None = None
    epochs: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in REGION_MODES:
            raise CirflowError(
                f"ablation: unknown region mode {self.mode!r} (one of {REGION_MODES})"
            )
        if (self.mode == "none") != (self.source is None):
            raise CirflowError(
                f"ablation: region mode {self.mode} "
                + ("takes no box source" if self.mode == "none" else "needs a box source")
            )
        if self.source in PER_TRIPLET_SOURCES and RegionMode(self.mode).scores_regions:
            raise CirflowError(
                f"ablation run {self.name}: box source {self.source} gives each triplet its "
                f"own boxes, but mode {self.mode} scores every image with one set: use it "
                "with aux or token_loss"
            )

    @property
    def name(self) -> str:
        base = "none" if self.mode == "none" else f"{self.mode}_{self.source}"
        return base if self.epochs is None else f"{base}@{self.epochs}"

    @classmethod
    def parse(cls, name: str) -> AblationRun:
        """The run a name stands for; the inverse of `name`. A mode's name may hold an
        underscore (token_loss_gt): the longest mode the name starts with is taken."""
        base, at, epochs = name.partition("@")
        if at and not (epochs.isdigit() and int(epochs) >= 1):
            raise CirflowError(f"ablation run {name!r}: @ takes a number of epochs (≥ 1)")
        epochs_of = int(epochs) if at else None
        if base == "none":
            return cls("none", None, epochs_of)
        for mode in sorted(REGION_MODES[1:], key=len, reverse=True):
            if base.startswith(mode + "_") and len(base) > len(mode) + 1:
                return cls(mode, base[len(mode) + 1 :], epochs_of)
        raise CirflowError(
            f"ablation run {name!r}: expected none or <mode>_<box source>[@<epochs>] with a "
            f"mode of {', '.join(REGION_MODES[1:])}"
        )


def ablation_runs(ablation_cfg: dict, sources: list[str]) -> list[AblationRun]:
    """The ablation's runs: `ablation.runs` as given, else none once (if among the modes) and
    each box source's modes."""
    if ablation_cfg.get("runs"):
        runs = [AblationRun.parse(name) for name in ablation_cfg["runs"]]
    else:
        modes = ablation_cfg["modes"]
        runs = [AblationRun("none")] if "none" in modes else []
        for source in sources:
            runs += [AblationRun(m, source) for m in modes if m != "none"]
    return list(dict.fromkeys(runs))


def ablation_sources(box_sources: list[str] | None, box_methods: list[str], demo: bool) -> list:
    """ablation.box_sources, else boxes.methods plus gt (ground-truth boxes) on the demo."""
    sources = box_sources or [*box_methods, *(["gt"] if demo else [])]
    demo_only = [s for s in sources if s in DEMO_SOURCES]
    if demo_only and not demo:
        raise CirflowError(
            f"ablation: box source {demo_only[0]} exists only for the demo (dataset.name: demo)"
        )
    return list(dict.fromkeys(sources))


def run_pattern(box_sources: list[str]) -> str:
    """The regular expression of a run name (the `{run}` wildcard)."""
    modes = "|".join(sorted(REGION_MODES[1:], key=len, reverse=True))
    return rf"(none|({modes})_({'|'.join(box_sources)}))(@[1-9][0-9]*)?"
