"""Training settings: the `TrainSettings` of one run, built from the workflow's config (`model:`
and `train:`) or the CLI, and the fingerprint that decides whether `last.pt` can be resumed.

Torch-free on purpose: `rules/common.smk` imports this module, and every Snakemake process (each
SLURM job included) parses the workflow again.

The rule's params carry what changes the trained weights (model, seed, AMP, the stage's
hyper-parameters); runtime-only keys (device, workers, image cache, resume) come from the config
directly, so that changing them does not make Snakemake retrain.

Training runs (`STAGES`, each a `train.*` block the rule's params carry):

    stage1           train.stage1
    stage2           train.stage2, region mode train.stage2.region.mode (none | aux | tokens)
    stage2_control   train.stage2 with region mode none: same init, schedule, seed and batch
                     order as stage 2, so that stage 2 − control is the region effect alone
                     (docs/design.md §6, §11)

and the ablation's runs (`ablation_params`): train.stage2 with a given mode and seed (and the
ablation's epochs), all from the same stage-1 best.pt.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirflow.data.cirr import captions_file, split_file
from cirflow.data.feature_index import index_path
from cirflow.data.image_cache import check_cache_mode
from cirflow.errors import CirflowError

STAGES = ("stage1", "stage2_control", "stage2")
CONTROL = "stage2_control"
BATCHING = ("random", "img_set")
NEGATIVES = ("targets", "batch_images")
# What boxes do in stage 2 (docs/design.md §6): nothing (the control), the auxiliary region
# loss, or region tokens in every score.
REGION_MODES = ("none", "aux", "tokens")
# train.stage2.region when the block is absent (the original scripts' stage 2: aux).
REGION_DEFAULTS = {"mode": "aux", "lr_multiplier": 1.0, "max_region_tokens": 4}
# Keys of train.stage2 that only matter when boxes are used: a mode-none run's params leave
# them out, so that changing them never reruns the control.
REGION_ONLY_KEYS = ("loss_region", "box_method")
# The settings a region mode decides: the control and stage 2 differ in these (and `out`) only.
REGION_SETTINGS = (
    "region_mode",
    "use_region_loss",
    "loss_region",
    "region_lr_multiplier",
    "max_region_tokens",
    "box_file",
    "box_meta_file",
    "val_box_file",
    "val_box_meta_file",
)
# Keys of train.stageN that map 1:1 onto TrainSettings.
STAGE_KEYS = (
    "num_epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "warmup_epochs",
    "schedule_epochs",
    "div_factor",
    "loss_rtc",
    "loss_align",
    "grad_clip",
    "batching",
    "negatives",
    "mask_false_negatives",
    "validation_frequency",
)
RUNTIME_KEYS = (
    "device",
    "num_workers",
    "image_cache",
    "resume",
    "eval_batch_size",
    "max_unreadable_fraction",
)
# Keys of train.stageN that only decide whether a run may start (not its weights): read from the
# config at run time, left out of the rule's params.
STAGE_RUNTIME_KEYS = ("min_targets_with_boxes",)


@dataclass
class TrainSettings:
    """Everything one training run needs (the `train.stageN` + `model` config, or the CLI).

    `config_section` is where the values came from (`train.stage1`, `train.stage2` or `train`
    for the CLI): errors name the key as the user wrote it.
    """

    cirr_root: str
    out: str
    preset: str = "tiny"
    freeze_vit: bool | None = None  # None: the preset's choice
    vit_precision: str | None = None
    weights: str | None = None  # model.weights: the tiny preset's first-stage file
    # Cached ViT tokens, {"train": [shard .npy, ...], "val": [...]}; None: decode pixels.
    features: dict[str, list[str]] | None = None
    num_epochs: int = 50
    batch_size: int = 128
    learning_rate: float = 1e-5
    weight_decay: float = 0.05
    loss_rtc: float = 0.4
    loss_align: float = 0.4
    loss_region: float = 0.5
    # Region mode (REGION_MODES). `use_region_loss` (the original scripts' --use-region-loss)
    # is kept in step with it: true means aux when no mode is given, and it is true exactly
    # when the mode uses boxes.
    region_mode: str = "none"
    use_region_loss: bool = False
    # aux: region_proj's learning rate = learning_rate × this (its own parameter group).
    region_lr_multiplier: float = 1.0
    # tokens: at most this many boxes (region tokens) per image, the largest first.
    max_region_tokens: int = 4
    box_file: str | None = None
    box_meta_file: str | None = None  # the box file's sidecar (image sizes)
    # tokens: the val boxes of the same method (the per-epoch validation scores with them).
    val_box_file: str | None = None
    val_box_meta_file: str | None = None
    init_checkpoint: str | None = None  # stage 2: stage 1's best.pt; or a published SPRC file
    batching: str = "random"  # random (SPRC) | img_set (a set's triplets share a batch)
    negatives: str = "targets"  # targets (SPRC) | batch_images (+ the batch's reference images)
    # Mask false negatives in the contrastive losses (a duplicate of the query's target, the
    # query's own reference image); SPRC does not (docs/sprc-departures.md).
    mask_false_negatives: bool = True
    # OneCycle (docs/design.md §5): over schedule_epochs (None: the run's num_epochs; SPRC's own
    # script: 80 while training 50), pct_start = min(warmup_epochs / schedule_epochs, 0.5), the
    # start learning rate = learning_rate / div_factor (torch's default, and SPRC's, is 25).
    warmup_epochs: float = 1.5
    schedule_epochs: int | None = None
    div_factor: float = 100.0
    grad_clip: float | None = None
    validation_frequency: int = 1
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    image_cache: str = "auto"
    eval_batch_size: int = 128
    threads: int | None = None
    resume: bool = True
    progress: bool = True
    # Unreadable images: past this fraction of a split the run fails before epoch 1.
    max_unreadable_fraction: float = 0.01
    # Stage 2: refuse a box file giving boxes to fewer than this fraction of the targets.
    min_targets_with_boxes: float = 0.1
    config_section: str = "train"
    # Settings that do not change the trained weights (left out of the resume fingerprint).
    RUNTIME_ONLY = (
        "out",
        "device",
        "num_workers",
        "image_cache",
        "eval_batch_size",
        "threads",
        "resume",
        "progress",
        "validation_frequency",
        "config_section",
        "box_meta_file",
        "max_unreadable_fraction",
        "min_targets_with_boxes",
        "val_box_meta_file",
    )

    def __post_init__(self) -> None:
        if self.use_region_loss and self.region_mode == "none":
            self.region_mode = "aux"
        self.use_region_loss = self.region_mode != "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self, name: str) -> str:
        """The config key of setting `name`, as the user set it (runtime keys live in `train:`)."""
        if name in RUNTIME_KEYS:
            return f"train.{name}"
        return f"{self.config_section}.{name}"

    @property
    def schedule_length(self) -> int:
        """Epochs the OneCycle schedule spans (schedule_epochs, else num_epochs)."""
        return int(self.schedule_epochs or self.num_epochs)

    @property
    def pct_start(self) -> float:
        return min(self.warmup_epochs / self.schedule_length, 0.5)

    def check(self) -> None:
        """Every value a run cannot use, named by its config key (before any work starts)."""
        for name in ("num_epochs", "batch_size", "validation_frequency"):
            if int(getattr(self, name)) < 1:
                raise CirflowError(f"{self.key(name)} must be ≥ 1 (got {getattr(self, name)!r})")
        if not self.learning_rate > 0:
            raise CirflowError(
                f"{self.key('learning_rate')} must be > 0 (got {self.learning_rate!r})"
            )
        if self.schedule_epochs is not None and int(self.schedule_epochs) < int(self.num_epochs):
            raise CirflowError(
                f"{self.key('schedule_epochs')} ({self.schedule_epochs}) must be ≥ "
                f"{self.key('num_epochs')} ({self.num_epochs}), or null (= num_epochs)"
            )
        if not self.div_factor > 0:
            raise CirflowError(f"{self.key('div_factor')} must be > 0 (got {self.div_factor!r})")
        if self.batching not in BATCHING:
            raise CirflowError(
                f"{self.key('batching')} must be one of {', '.join(BATCHING)} (got {self.batching!r})"
            )
        if self.negatives not in NEGATIVES:
            raise CirflowError(
                f"{self.key('negatives')} must be one of {', '.join(NEGATIVES)} "
                f"(got {self.negatives!r})"
            )
        if not self.mask_false_negatives and self.negatives != "targets":
            raise CirflowError(
                f"{self.key('mask_false_negatives')} false needs {self.key('negatives')}: "
                f"targets (with {self.negatives}, each query's own reference image would be a "
                "negative)"
            )
        check_cache_mode(self.image_cache, self.key("image_cache"))
        for name in ("max_unreadable_fraction", "min_targets_with_boxes"):
            if not 0 <= float(getattr(self, name)) <= 1:
                raise CirflowError(
                    f"{self.key(name)} must be a fraction in [0, 1] (got {getattr(self, name)!r})"
                )
        if self.region_mode not in REGION_MODES:
            raise CirflowError(
                f"{self.key('region.mode')} must be one of {', '.join(REGION_MODES)} "
                f"(got {self.region_mode!r})"
            )
        if not self.region_lr_multiplier > 0:
            raise CirflowError(
                f"{self.key('region.lr_multiplier')} must be > 0 "
                f"(got {self.region_lr_multiplier!r})"
            )
        if int(self.max_region_tokens) < 1:
            raise CirflowError(
                f"{self.key('region.max_region_tokens')} must be ≥ 1 "
                f"(got {self.max_region_tokens!r})"
            )
        if self.use_region_loss and not self.box_file:
            raise CirflowError(
                f"region mode {self.region_mode} (--use-region-loss / stage 2) needs a box file: "
                "the train box file (--box-file)"
            )
        if self.region_mode == "tokens" and not self.val_box_file:
            raise CirflowError(
                "region mode tokens validates with the val images' own boxes: give the val box "
                "file of the same method (--val-box-file)"
            )
        for path in (self.box_file, self.val_box_file):
            if path and not Path(path).is_file():
                raise CirflowError(f"box file not found: {path}")


def file_digest(path: str | Path | None) -> str | None:
    if not path:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(settings: TrainSettings, unreadable: list[str] | None = None) -> str:
    """Hash of what determines the trained weights (not the output folder, device, workers).
    `unreadable`: the train images left out (only hashed when there are any)."""
    d = {k: v for k, v in settings.to_dict().items() if k not in TrainSettings.RUNTIME_ONLY}
    d["cirr_root"] = None  # the data itself is hashed instead of its path
    d["data"] = [
        file_digest(captions_file(settings.cirr_root, "train")),
        file_digest(split_file(settings.cirr_root, "train")),
    ]
    d["init_checkpoint"] = file_digest(settings.init_checkpoint)
    d["weights"] = file_digest(settings.weights)
    # The feature indexes name the model and transform that made the tokens.
    d["features"] = (
        {
            split: [file_digest(index_path(p)) for p in paths]
            for split, paths in settings.features.items()
        }
        if settings.features
        else None
    )
    d["box_file"] = file_digest(settings.box_file) if settings.use_region_loss else None
    if unreadable:
        d["unreadable"] = sorted(unreadable)
    tokens = settings.region_mode == "tokens"
    d["val_box_file"] = file_digest(settings.val_box_file) if tokens else None
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    if stage == CONTROL:
        own = {k: v for k, v in train_cfg["stage2"].items() if k not in STAGE_RUNTIME_KEYS}
        return {**base, "stage2": with_region_mode(own, "none")}
    own = {k: v for k, v in train_cfg[stage].items() if k not in STAGE_RUNTIME_KEYS}
    return {**base, stage: own}


def ablation_params(train_cfg: dict, ablation_cfg: dict, mode: str, seed: int) -> dict[str, Any]:
    """The params of one ablation run: train.stage2 with region mode `mode`, stage-2 seed
    `seed` and the ablation's epochs (ablation.num_epochs; null = train.stage2's)."""
    if mode not in REGION_MODES:
        raise CirflowError(f"ablation: unknown region mode {mode!r} (one of {REGION_MODES})")
    block = with_region_mode(train_cfg["stage2"], mode, ablation_cfg.get("num_epochs"))
    return {"seed": int(seed), "amp": train_cfg["amp"], "stage2": block}


def stage_mode(train_params: dict, stage: str = "stage2") -> str:
    """The region mode of a stage's params (none for stage 1)."""
    if stage == "stage1" or stage not in train_params:
        return "none"
    return region_config(train_params[stage])["mode"]


def settings_from_config(
    stage: str | None,
    cirr_root: str | Path,
    out: str | Path,
    model_cfg: dict,
    train_params: dict,
    runtime_cfg: dict,
    box_file: str | Path | None = None,
    box_meta_file: str | Path | None = None,
    init_checkpoint: str | Path | None = None,
    threads: int | None = None,
    features: dict[str, list[str]] | None = None,
    val_box_file: str | Path | None = None,
    val_box_meta_file: str | Path | None = None,
) -> TrainSettings:
    """The settings of one run from a rule's params (`semantic_params`, `ablation_params`).

    `stage` None: the one stage block the params hold (stage1 or stage2; the control and the
    ablation's runs are stage-2 blocks). Stage 2 takes its region settings from the block's
    `region` (REGION_DEFAULTS where absent); the train box file is needed unless the mode is
    none, the val box file (the per-epoch validation) with tokens.
    """
    if stage is None:
        found = [k for k in ("stage1", "stage2") if k in train_params]
        if len(found) != 1:
            raise CirflowError(f"training params hold {found or 'no'} stage blocks, expected one")
        stage = found[0]
    stage_cfg = train_params[stage]
    kwargs: dict[str, Any] = {k: stage_cfg[k] for k in STAGE_KEYS if k in stage_cfg}
    kwargs.update({k: runtime_cfg[k] for k in RUNTIME_KEYS if k in runtime_cfg})
    runtime_stage = runtime_cfg.get(stage) or {}
    kwargs.update({k: runtime_stage[k] for k in STAGE_RUNTIME_KEYS if k in runtime_stage})
    if stage == "stage2":
        region = region_config(stage_cfg)
        mode = region["mode"]
        kwargs["region_mode"] = mode
        if mode != "none":  # mode none: the region settings keep their (unused) defaults
            kwargs["loss_region"] = stage_cfg["loss_region"]
            kwargs["region_lr_multiplier"] = float(region["lr_multiplier"])
            kwargs["max_region_tokens"] = int(region["max_region_tokens"])
            if not box_file:
                raise CirflowError(f"stage 2 (region mode {mode}) needs the merged train box file")
            kwargs["box_file"] = str(box_file)
            kwargs["box_meta_file"] = str(box_meta_file) if box_meta_file else None
        if mode == "tokens":
            if not val_box_file:
                raise CirflowError("stage 2 (region mode tokens) needs the merged val box file")
            kwargs["val_box_file"] = str(val_box_file)
            kwargs["val_box_meta_file"] = str(val_box_meta_file) if val_box_meta_file else None
    elif stage != "stage1":
        raise CirflowError(f"unknown training stage block {stage!r}")
    if init_checkpoint:
        kwargs["init_checkpoint"] = str(init_checkpoint)
    return TrainSettings(
        cirr_root=str(cirr_root),
        out=str(out),
        preset=model_cfg["preset"],
        freeze_vit=model_cfg.get("freeze_vit"),
        vit_precision=model_cfg.get("vit_precision"),
        weights=model_cfg.get("weights"),
        features={k: [str(p) for p in v] for k, v in features.items()} if features else None,
        seed=int(train_params["seed"]),
        amp=bool(train_params["amp"]),
        threads=threads,
        progress=True,
        config_section=f"train.{stage}",
        **kwargs,
    )
