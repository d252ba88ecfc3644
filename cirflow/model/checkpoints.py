"""cirflow's checkpoint format: written and read here, and only here (`best.pt`, `last.pt`).

A checkpoint is a dict:

    format      "cirflow-sprc/2" ("cirflow-sprc/1": the same, with the region mode as two
                booleans in `model`; still read)
    model       the `ModelConfig`, resolved (`cirflow.model.config`): preset, freeze_vit,
                vit_precision, weights (where a frozen ViT left out of the file is rebuilt from),
                region_mode, max_region_tokens
    state_dict  the trainable weights only: everything except a frozen ViT (the factory
                rebuilds it from its own file), with LAVIS/SPRC parameter names
    best.pt     + epoch, metrics (the validation recalls of that epoch), hparams
    last.pt     + optimizer, scheduler, scaler, epoch, num_epochs, rng, fingerprint, and the
                history (train_rows, val_rows, best_score, best_epoch): all a resumed run needs

Both are written atomically (temporary file + rename). `best.pt` is written under
``resume/best.pt`` and hard-linked to ``best.pt``: Snakemake deletes the declared outputs of a
killed job, and the link keeps the best weights for the resumed run without a second copy.

Loading weights into a model (any file kind, strict key rules) is `cirflow.model.factory`'s job.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from cirflow.errors import CirflowError, rebuilt_by
from cirflow.io import atomic_path, failed_writes_named
from cirflow.model.config import ModelConfig

FORMAT = "cirflow-sprc/2"
FORMATS = ("cirflow-sprc/1", FORMAT)
VIT_PREFIX = "visual_encoder."
# The weight files the workflow writes (rules/train.smk, rules/ablation.smk,
# rules/features.smk), as path endings, and the rule that writes each.
WORKFLOW_WEIGHTS = (
    (re.compile(r"(^|/)results/[^/]+/models/[^/]+/best\.pt$"), "train"),
    (re.compile(r"(^|/)results/[^/]+/ablation/runs/[^/]+/seed\d+/best\.pt$"), "ablation_train"),
    # A demo's first stage: DEMO_BACKBONE, or the FashionIQ demo's beside it.
    (re.compile(r"(^|/)results/[^/]+/backbone/backbone\.pth$"), "pretrain_backbone"),
)


def is_cirflow_checkpoint(obj: dict) -> bool:
    return obj.get("format") in FORMATS


def model_config(obj: dict) -> ModelConfig:
    """The model a cirflow checkpoint was written from."""
    return ModelConfig.from_dict(obj["model"])


def saved_state_dict(model) -> dict[str, torch.Tensor]:
    """The weights a checkpoint holds: all but a frozen ViT's."""
    frozen_vit = model.preset.freeze_vit
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if not (frozen_vit and k.startswith(VIT_PREFIX))
    }


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save through a temporary file. Saving to an open file (not a path) names the
    archive's records "archive/…" instead of after the random temporary name, so the same
    content gives the same bytes."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def publish_link(src: Path, dst: Path) -> None:
    """Make `dst` the same file as `src` (hard link; a copy where links are not possible), atomically."""
    tmp = dst.with_name(f".{dst.name}.link")
    if tmp.exists():
        tmp.unlink()
    with failed_writes_named(dst):
        try:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)


def _checkpoint(model, **extra: Any) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model": model.config.resolved().to_dict(),
        "state_dict": saved_state_dict(model),
        **extra,
    }


def write_best(
    model, stash: Path, published: Path, epoch: int, metrics: dict, hparams: dict
) -> None:
    """The weights of the best epoch: written to `stash` (resume/best.pt), linked to `published`."""
    save_atomic(_checkpoint(model, epoch=epoch, metrics=metrics, hparams=hparams), stash)
    publish_link(stash, published)


def write_last(path: Path, model, training_state: dict[str, Any]) -> None:
    """Everything a resumed run needs: the weights + `training_state` (optimizer, scheduler,
    scaler, epoch, num_epochs, rng, fingerprint, history; see the module docstring)."""
    save_atomic(_checkpoint(model, **training_state), path)


def rebuild_advice(path: str | Path) -> str:
    """What makes a damaged weight file whole again: the rule that writes it, for the workflow's
    own files; else a complete copy."""
    posix = Path(path).as_posix()
    for pattern, rule in WORKFLOW_WEIGHTS:
        if pattern.search(posix):
            return rebuilt_by(rule, path)
    return "replace it with a complete copy (a download or copy cut short?)"


def read_checkpoint(path: str | Path, advice: str | None = None) -> dict:
    """A checkpoint file's dict (cirflow's, or a published SPRC one), tensors only. A file that
    cannot be read is an error ending with `advice` (default: `rebuild_advice(path)`)."""
    path = Path(path)
    advice = advice or rebuild_advice(path)
    if not path.is_file():
        raise CirflowError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's errors for a truncated or damaged file vary
        raise CirflowError(
            f"cannot load checkpoint {path} (truncated or damaged? {type(exc).__name__}: "
            f"{exc}); {advice}"
        ) from exc
    if not isinstance(obj, dict):
        raise CirflowError(
            f"{path}: expected a dict checkpoint, got {type(obj).__name__}; {advice}"
        )
    return obj


def write_first_stage(path: str | Path, state_dict: dict[str, torch.Tensor]) -> None:
    """A first stage in BLIP-2's checkpoint layout, ``{"model": state_dict}`` (the demo's
    `pretrain_backbone`; the factory reads it as it reads the official BLIP-2 file)."""
    save_atomic({"model": state_dict}, path)
