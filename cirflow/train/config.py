"""From the workflow's config (`model:` and `train:` sections) to `TrainSettings`.

The rule's params carry what changes the trained weights (model, seed, AMP, the stage's
hyper-parameters); runtime-only keys (device, workers, image cache, resume) come from the config
directly, so that changing them does not make Snakemake retrain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cirflow.errors import CirflowError
from cirflow.train.loop import TrainSettings

STAGES = ("stage1", "stage2")
# Keys of train.stageN that map 1:1 onto TrainSettings.
STAGE_KEYS = (
    "num_epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "warmup_epochs",
    "loss_rtc",
    "loss_align",
    "grad_clip",
    "batching",
    "negatives",
    "validation_frequency",
)
RUNTIME_KEYS = ("device", "num_workers", "image_cache", "resume", "eval_batch_size")


def semantic_params(train_cfg: dict, stage: str) -> dict[str, Any]:
    """The part of `train:` that determines stage `stage`'s weights (a rule's params)."""
    if stage not in STAGES:
        raise CirflowError(f"unknown training stage {stage!r}")
    return {"seed": train_cfg["seed"], "amp": train_cfg["amp"], stage: train_cfg[stage]}


def settings_from_config(
    stage: str,
    cirr_root: str | Path,
    out: str | Path,
    model_cfg: dict,
    train_params: dict,
    runtime_cfg: dict,
    box_file: str | Path | None = None,
    init_checkpoint: str | Path | None = None,
    threads: int | None = None,
) -> TrainSettings:
    stage_cfg = train_params[stage]
    kwargs: dict[str, Any] = {k: stage_cfg[k] for k in STAGE_KEYS if k in stage_cfg}
    kwargs.update({k: runtime_cfg[k] for k in RUNTIME_KEYS if k in runtime_cfg})
    if stage == "stage2":
        if not box_file:
            raise CirflowError("stage 2 needs the merged train box file")
        kwargs["use_region_loss"] = True
        kwargs["loss_region"] = stage_cfg["loss_region"]
        kwargs["box_file"] = str(box_file)
    if init_checkpoint:
        kwargs["init_checkpoint"] = str(init_checkpoint)
    return TrainSettings(
        cirr_root=str(cirr_root),
        out=str(out),
        preset=model_cfg["preset"],
        freeze_vit=model_cfg.get("freeze_vit"),
        vit_precision=model_cfg.get("vit_precision"),
        seed=int(train_params["seed"]),
        amp=bool(train_params["amp"]),
        threads=threads,
        progress=True,
        **kwargs,
    )
