"""Training settings: the `TrainSettings` of one run, built from the workflow's config (`model:`
and `train:`) or the CLI, and the fingerprint that decides whether `last.pt` can be resumed.

Torch-free on purpose: `rules/common.smk` imports this module, and every Snakemake process (each
SLURM job included) parses the workflow again.

The rule's params carry what changes the trained weights (model, seed, AMP, the stage's
hyper-parameters); runtime-only keys (device, workers, image cache, resume) come from the config
directly, so that changing them does not make Snakemake retrain.
"""

from __future__ import annotations

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

STAGES = ("stage1", "stage2")
BATCHING = ("random", "img_set")
NEGATIVES = ("targets", "batch_images")
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
    use_region_loss: bool = False
    box_file: str | None = None
    box_meta_file: str | None = None  # the box file's sidecar (image sizes)
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
    )

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
        if self.use_region_loss and not self.box_file:
            raise CirflowError(
                "the region loss (--use-region-loss / stage 2) needs a box file (--box-file)"
            )
        if self.box_file and not Path(self.box_file).is_file():
            raise CirflowError(f"box file not found: {self.box_file}")


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
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def semantic_params(train_cfg: dict, stage: str) -> dict[str, Any]:
    """The part of `train:` that determines stage `stage`'s weights (a rule's params)."""
    if stage not in STAGES:
        raise CirflowError(f"unknown training stage {stage!r}")
    own = {k: v for k, v in train_cfg[stage].items() if k not in STAGE_RUNTIME_KEYS}
    return {"seed": train_cfg["seed"], "amp": train_cfg["amp"], stage: own}


def settings_from_config(
    stage: str,
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
) -> TrainSettings:
    stage_cfg = train_params[stage]
    kwargs: dict[str, Any] = {k: stage_cfg[k] for k in STAGE_KEYS if k in stage_cfg}
    kwargs.update({k: runtime_cfg[k] for k in RUNTIME_KEYS if k in runtime_cfg})
    runtime_stage = runtime_cfg.get(stage) or {}
    kwargs.update({k: runtime_stage[k] for k in STAGE_RUNTIME_KEYS if k in runtime_stage})
    if stage == "stage2":
        if not box_file:
            raise CirflowError("stage 2 needs the merged train box file")
        kwargs["use_region_loss"] = True
        kwargs["loss_region"] = stage_cfg["loss_region"]
        kwargs["box_file"] = str(box_file)
        kwargs["box_meta_file"] = str(box_meta_file) if box_meta_file else None
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
