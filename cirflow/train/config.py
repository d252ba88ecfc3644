"""Training settings: `TrainSettings` of one run, each field declared once (`cirflow.settings`):
its default, meaning, config key, CLI flag, bounds and whether it decides the weights. From the
declaration come the checks (`TrainSettings.check`), the `cirflow train` flags
(`cirflow.train.cli`), reading a rule's params (`settings_from_config`), the runtime keys that
are not rule params (`RUNTIME_KEYS`, `STAGE_RUNTIME_KEYS`) and what the resume fingerprint
leaves out (`fingerprint`). tests/test_settings.py checks the declaration against
schemas/config.schema.yaml.

Config blocks (`Declared.config`): "stage" = `train.stage1` / `train.stage2`, "region" =
`train.stage2.region`, "train" = `train:` itself, "model" = `model:`. A rule's params carry what
changes the trained weights (`param=True`); runtime keys (device, workers, image cache, resume,
...) come from the config directly, so that changing them does not make Snakemake retrain.

Torch-free on purpose: `rules/common.smk` imports this module, and every Snakemake process (each
SLURM job included) parses the workflow again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirflow.data.cirr import captions_file, split_file
from cirflow.data.datasets import CIRR, annotation_files, check_kind
from cirflow.data.feature_index import index_path
from cirflow.data.image_cache import CACHE_MODES
from cirflow.errors import CirflowError
from cirflow.model.config import REGION_MODES, ModelConfig, RegionMode
from cirflow.settings import (
    NO_FLAG,
    check_declared,
    config_key,
    declarations,
    flag_of,
    in_fingerprint,
    optional_bool,
    setting,
)

BATCHING = ("random", "img_set")
NEGATIVES = ("targets", "batch_images")
# train.stage2.region when the block is absent (the original scripts' stage 2: aux).
REGION_DEFAULTS = {"mode": "aux", "lr_multiplier": 1.0, "max_region_tokens": 4}
# The fields only a region mode other than none reads: a mode-none run keeps their defaults.
REGION_FIELDS = ("loss_region", "region_lr_multiplier", "max_region_tokens")


@dataclass
class TrainSettings:
    """Everything one training run needs (the `train.stageN` + `model` config, or the CLI).

    `stage` is the config block the values came from (`stage1` or `stage2`; None: the command
    line): errors name the key as the user wrote it (`key`).
    """

    cirr_root: str  # the dataset root (CIRR's, or FashionIQ's with dataset "fashioniq")
    out: str
    stage: str | None = None
    # The dataset's layout (`cirflow.data.datasets`): cirr | fashioniq. Not a setting: the
    # workflow's paths already tell datasets apart; the resume fingerprint hashes its files.
    dataset: str = CIRR
    # ---- files (rule inputs, or flags)
    # Cached ViT tokens, {"train": [shard .npy, ...], "val": [...]}; None: decode pixels.
    features: dict[str, list[str]] | None = setting(
        None, "cached ViT token shards per split", flag=NO_FLAG
    )
    init_checkpoint: str | None = setting(
        None, "start from this checkpoint (stage 1's best.pt or an SPRC file)"
    )
    box_file: str | None = setting(
        None, "train boxes in the original scripts' format (normalised x1,y1,x2,y2)"
    )
    box_meta_file: str | None = setting(
        None, "the train box file's sidecar (image sizes)", flag=NO_FLAG, param=False
    )
    val_box_file: str | None = setting(
        None, "tokens: the val boxes of the same method (the per-epoch validation uses them)"
    )
    val_box_meta_file: str | None = setting(
        None, "the val box file's sidecar", flag=NO_FLAG, param=False
    )
    # ---- model (`model:`)
    preset: str = setting(
        "tiny",
        "model preset (tiny: the demo's pretrained toy model; tiny_scratch: random init; "
        "pretrain: EVA ViT-g + BLIP-2; pretrain_vitL: CLIP ViT-L + BLIP-2)",
        config="model",
        flag="--backbone",
        cli_default="pretrain",
    )
    freeze_vit: bool | None = setting(
        None, "override the preset's ViT freezing (true/false)", config="model", parse=optional_bool
    )
    vit_precision: str | None = setting(
        None,
        "ViT weight precision on CUDA; default: the preset's",
        config="model",
        choices=("fp16", "fp32"),
    )
    weights: str | None = setting(
        None, "the tiny preset's first-stage file (BLIP-2 layout)", config="model"
    )
    # ---- a stage's hyper-parameters (`train.stageN`)
    num_epochs: int = setting(
        50,
        "epochs trained (OneCycle spans these unless --schedule-epochs is given)",
        config="stage",
        minimum=1,
    )
    batch_size: int = setting(
        128, "triplets per step (in-batch negatives = batch_size - 1)", config="stage", minimum=2
    )
    learning_rate: float = setting(
        1e-5, "peak OneCycle learning rate (AdamW)", config="stage", exclusive_minimum=0
    )
    weight_decay: float = setting(0.05, "AdamW weight decay", config="stage", minimum=0)
    # OneCycle (docs/design.md §5): over schedule_epochs (None: the run's num_epochs; SPRC's own
    # script: 80 while training 50), pct_start = min(warmup_epochs / schedule_epochs, 0.5), the
    # start learning rate = learning_rate / div_factor (torch's default, and SPRC's, is 25).
    warmup_epochs: float = setting(
        1.5,
        "OneCycle warm-up in epochs (pct_start = min(this / schedule epochs, 0.5))",
        config="stage",
        exclusive_minimum=0,
    )
    schedule_epochs: int | None = setting(
        None,
        "epochs the OneCycle schedule spans (default: --num-epochs; SPRC's script: 80 while "
        "training 50)",
        config="stage",
        parse=int,
        minimum=1,
    )
    div_factor: float = setting(
        100.0,
        "OneCycle start learning rate = learning rate / this (SPRC's script: 25)",
        config="stage",
        exclusive_minimum=0,
    )
    loss_rtc: float = setting(0.4, "weight of L_rtc", config="stage", minimum=0)
    loss_align: float = setting(0.4, "weight of L_align", config="stage", minimum=0)
    grad_clip: float | None = setting(
        None,
        "clip the gradient norm to this (off by default)",
        config="stage",
        parse=float,
        exclusive_minimum=0,
    )
    batching: str = setting(
        "random",
        "random (SPRC) or img_set (a set's triplets share a batch)",
        config="stage",
        choices=BATCHING,
    )
    negatives: str = setting(
        "targets",
        "targets (SPRC) or + the batch's reference images",
        config="stage",
        choices=NEGATIVES,
    )
    # Mask false negatives in the contrastive losses (a duplicate of the query's target, the
    # query's own reference image); SPRC does not (docs/sprc-departures.md).
    mask_false_negatives: bool = setting(
        True,
        "SPRC's plain losses: a duplicate target or the query's reference image in the batch "
        "counts as a negative (needs --negatives targets)",
        config="stage",
        flag="--no-false-negative-masking",
        invert=True,
    )
    # Which epoch is best depends on it, the weights of each epoch do not: resumable.
    validation_frequency: int = setting(
        1, "validate on CIRR val every N epochs", config="stage", minimum=1, fingerprint=False
    )
    # ---- stage 2's region supervision (`train.stage2`, `train.stage2.region`)
    loss_region: float = setting(
        0.5, "weight of L_region (aux and tokens)", config="stage", minimum=0
    )
    region_mode: str = setting(
        "none",
        "stage 2's region mode (default: aux with --use-region-loss, else none)",
        config="region",
        key="mode",
        choices=REGION_MODES,
        cli_default=None,
    )
    region_lr_multiplier: float = setting(
        1.0,
        "aux: region_proj's learning rate = --learning-rate x this",
        config="region",
        key="lr_multiplier",
        exclusive_minimum=0,
    )
    max_region_tokens: int = setting(
        4,
        "tokens: at most this many boxes per image (the largest)",
        config="region",
        minimum=1,
    )
    # Stage 2: refuse a box file giving boxes to fewer than this fraction of the targets.
    min_targets_with_boxes: float = setting(
        0.1,
        "with boxes: refuse a box file giving boxes to fewer of the targets",
        config="stage",
        param=False,
        minimum=0,
        maximum=1,
    )
    # ---- the run (`train:`)
    seed: int = setting(0, "seed of init, batch order, dropout", config="train", minimum=0)
    amp: bool = setting(
        True,
        "disable mixed precision on CUDA",
        config="train",
        flag="--no-amp",
        invert=True,
    )
    device: str = setting("auto", "auto | cpu | cuda | cuda:N", config="train", param=False)
    num_workers: int = setting(
        2, "DataLoader workers", config="train", param=False, minimum=0, cli_default=4
    )
    image_cache: str = setting(
        "auto",
        "keep preprocessed images in memory",
        config="train",
        param=False,
        choices=CACHE_MODES,
    )
    eval_batch_size: int = setting(
        128, "batch size of the validation", config="train", param=False, minimum=1
    )
    resume: bool = setting(
        True,
        "do not continue from OUT/last.pt",
        config="train",
        param=False,
        flag="--no-resume",
        invert=True,
    )
    # Unreadable images: past this fraction of a split the run fails before epoch 1.
    max_unreadable_fraction: float = setting(
        0.01,
        "unreadable train/val images are left out; past this fraction of a split: an error",
        config="train",
        param=False,
        minimum=0,
        maximum=1,
    )
    threads: int | None = setting(None, "torch CPU threads", param=False, parse=int)
    progress: bool = setting(True, "progress bars", param=False, flag=NO_FLAG)

    def __post_init__(self) -> None:
        self.region_mode = str(self.region_mode)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ----------------------------------------------------------------------- derived values
    @property
    def uses_boxes(self) -> bool:
        """Whether the run reads boxes (region mode aux or tokens)."""
        return self.region_mode != RegionMode.NONE

    @property
    def model_config(self) -> ModelConfig:
        tokens = RegionMode(self.region_mode).has_region_tokens
        return ModelConfig(
            preset=self.preset,
            freeze_vit=self.freeze_vit,
            vit_precision=self.vit_precision,
            weights=self.weights,
            region_mode=self.region_mode,
            max_region_tokens=int(self.max_region_tokens) if tokens else None,
        )

    @property
    def schedule_length(self) -> int:
        """Epochs the OneCycle schedule spans (schedule_epochs, else num_epochs)."""
        return int(self.schedule_epochs or self.num_epochs)

    @property
    def pct_start(self) -> float:
        return min(self.warmup_epochs / self.schedule_length, 0.5)

    # ------------------------------------------------------------------------------ checks
    def key(self, name: str) -> str:
        """Where the user set field `name`: its config key, or its flag on the command line."""
        f, d = _declared(name)
        if self.stage is None:
            return flag_of(f, d) or name
        blocks = {
            "stage": f"train.{self.stage}.",
            "region": f"train.{self.stage}.region.",
            "train": "train.",
            "model": "model.",
        }
        return blocks.get(d.config, "") + config_key(f, d)

    def check(self) -> None:
        """Every value a run cannot use, named by its key (before any work starts)."""
        check_declared(self, self.key)
        check_kind(self.dataset)
        if self.dataset != CIRR and self.batching == "img_set":
            raise CirflowError(
                f"{self.key('batching')} img_set batches the triplets of one CIRR img_set "
                f"together; {self.dataset} triplets have no img_set: use random"
            )
        if self.schedule_epochs is not None and int(self.schedule_epochs) < int(self.num_epochs):
            raise CirflowError(
                f"{self.key('schedule_epochs')} ({self.schedule_epochs}) must be ≥ "
                f"{self.key('num_epochs')} ({self.num_epochs}), or null (= num_epochs)"
            )
        if not self.mask_false_negatives and self.negatives != "targets":
            # A config key is set false; the command line's flag is inverted (--no-…).
            unmasked = self.key("mask_false_negatives") + (" false" if self.stage else "")
            raise CirflowError(
                f"{unmasked} needs {self.key('negatives')}: "
                f"targets (with {self.negatives}, each query's own reference image would be a "
                "negative)"
            )
        self.check_box_files()

    def check_box_files(self) -> None:
        if self.uses_boxes and not self.box_file:
            raise CirflowError(
                f"region mode {self.region_mode} (--use-region-loss / stage 2) needs a box file: "
                "the train box file (--box-file)"
            )
        if RegionMode(self.region_mode).scores_regions and not self.val_box_file:
            raise CirflowError(
                f"region mode {self.region_mode} validates with the val images' own boxes: give "
                "the val box file of the same method (--val-box-file)"
            )
        for path in (self.box_file, self.val_box_file):
            if path and not Path(path).is_file():
                raise CirflowError(f"box file not found: {path}")


def _declared(name: str):
    for f, d in declarations(TrainSettings):
        if f.name == name:
            return f, d
    raise KeyError(f"TrainSettings has no declared setting {name!r}")


def _config_keys(block: str, param: bool) -> tuple[str, ...]:
    return tuple(
        config_key(f, d)
        for f, d in declarations(TrainSettings)
        if d.config == block and d.param == param
    )


# Keys of `train:` and of `train.stageN` that are read from the config at run time, never rule
# params: changing them reruns nothing.
RUNTIME_KEYS = _config_keys("train", param=False)
STAGE_RUNTIME_KEYS = _config_keys("stage", param=False)


# -------------------------------------------------------------------------------- fingerprint
def file_digest(path: str | Path | None) -> str | None:
    if not path:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _train_data_digests(settings: TrainSettings) -> list[str | None]:
    """The train split's annotation files, by content: CIRR's captions and split file (in the
    order CIRR's fingerprint always had), FashionIQ's image split and captions files."""
    root = settings.cirr_root
    if settings.dataset == CIRR:
        return [file_digest(captions_file(root, "train")), file_digest(split_file(root, "train"))]
    return [file_digest(p) for p in annotation_files(settings.dataset, root, "train")]


def fingerprint(settings: TrainSettings, unreadable: list[str] | None = None) -> str:
    """Hash of what determines the trained weights (not the output folder, device, workers):
    the declared fields that are part of it, with every file replaced by its content's digest.
    `unreadable`: the train images left out (only hashed when there are any)."""
    d: dict[str, Any] = {
        f.name: getattr(settings, f.name)
        for f, decl in declarations(settings)
        if in_fingerprint(f, decl)
    }
    d["data"] = _train_data_digests(settings)
    if settings.dataset != CIRR:  # (a CIRR run's fingerprint stays what it always was)
        d["dataset"] = settings.dataset
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
    d["box_file"] = file_digest(settings.box_file) if settings.uses_boxes else None
    scored = RegionMode(settings.region_mode).scores_regions
    d["val_box_file"] = file_digest(settings.val_box_file) if scored else None
    if unreadable:
        d["unreadable"] = sorted(unreadable)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------- from a rule's params
@dataclass(frozen=True)
class RunFiles:
    """The files of one training run: a rule's inputs and its output folder."""

    cirr_root: str
    out: str
    features: dict[str, list[str]] | None = None
    init_checkpoint: str | None = None
    box_file: str | None = None
    box_meta_file: str | None = None
    val_box_file: str | None = None
    val_box_meta_file: str | None = None
    dataset: str = CIRR

    def as_settings(self) -> dict[str, Any]:
        values = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self).items()}
        if self.features:
            values["features"] = {k: [str(p) for p in v] for k, v in self.features.items()}
        return values


def settings_from_config(
    files: RunFiles,
    model_cfg: dict,
    train_params: dict,
    runtime_cfg: dict,
    threads: int | None = None,
) -> TrainSettings:
    """The settings of one run from a rule's params (`cirflow.train.runs`: `semantic_params`,
    `ablation_params`) and the config's runtime keys.

    The params hold one stage block (stage1, or stage2: the control and the ablation's runs are
    stage-2 blocks). Stage 2 takes its region settings from the block's `region`
    (REGION_DEFAULTS where absent); in mode none they keep their (unused) defaults.
    """
    found = [k for k in ("stage1", "stage2") if k in train_params]
    if len(found) != 1:
        raise CirflowError(f"training params hold {found or 'no'} stage blocks, expected one")
    stage = found[0]
    block = train_params[stage]
    region = {**REGION_DEFAULTS, **(block.get("region") or {})} if stage == "stage2" else {}
    sources = {
        (True, "stage"): block,
        (True, "region"): region,
        (True, "model"): model_cfg,
        (True, "train"): {k: train_params[k] for k in ("seed", "amp")},
        (False, "stage"): runtime_cfg.get(stage) or {},
        (False, "train"): runtime_cfg,
    }
    values: dict[str, Any] = {}
    for f, d in declarations(TrainSettings):
        source = sources.get((d.param, d.config), {})
        if config_key(f, d) in source:
            values[f.name] = source[config_key(f, d)]
    if values.get("region_mode", "none") == "none":
        values = {k: v for k, v in values.items() if k not in REGION_FIELDS}
    return TrainSettings(
        **files.as_settings(), stage=stage, threads=threads, progress=True, **values
    )
