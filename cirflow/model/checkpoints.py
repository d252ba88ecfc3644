"""Model weights on disk: cirflow's checkpoints (written and read here) and the published
SPRC ones (read).

cirflow checkpoint (``best.pt``, ``last.pt``), a dict:

    format      "cirflow-sprc/1"
    model       {"preset": <preset name>, "freeze_vit": bool, "vit_precision": str, "with_region": bool,
                 "region_tokens": bool, "max_region_tokens": int | None}   (the last two: stage 2's
                 region mode `tokens`; absent in older files = false, None)
    state_dict  the trainable weights only: everything except a frozen ViT (LAVIS rebuilds it
                from its own cached weights), with LAVIS/SPRC parameter names
    best.pt     + epoch, metrics (the validation recalls of that epoch), hparams
    last.pt     + optimizer, scheduler, scaler, epoch, num_epochs, rng, fingerprint, and the
                history (train_rows, val_rows, best_score, best_epoch): all a resumed run needs

Both are written atomically (temporary file + rename). `best.pt` is written under
``resume/best.pt`` and hard-linked to ``best.pt``: Snakemake deletes the declared outputs of a
killed job, and the link keeps the best weights for the resumed run without a second copy.

Published SPRC checkpoint: ``{"Blip2QformerCirAlignPrompt": state_dict, ...}`` (what SPRC's
``save_model`` writes), LAVIS parameter names, possibly with a DDP ``module.`` prefix; its
`itm_head.*` and `Qformer.cls.*` weights are not used by SPRC's retrieval and are ignored.

Loading is strict (`load_weights`): the file's keys must be exactly the model's, except

    absent, allowed       ``*position_ids`` buffers; the region head (``region_proj.``) in BLIP-2 /
                          SPRC files, and where the caller allows it (stage 2 from stage 1); the
                          prompt tokens in BLIP-2 files; the ViT as a whole where it is frozen
                          (cirflow files never hold it) or in BLIP-2 files (it has its own file)
    present, ignored      ``itm_head.*``, ``Qformer.cls.*`` (heads SPRC's retrieval never uses)

A ViT present in part, or any other missing or extra key, is a CirflowError that names the keys:
a silently dropped or added block (e.g. ViT-L built with 21 blocks while the file holds 23) is
the most dangerous failure here (docs/design.md §5, "strict loading").
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from cirflow.errors import CirflowError
from cirflow.io import atomic_path

log = logging.getLogger(__name__)

FORMAT = "cirflow-sprc/1"
SPRC_KEY = "Blip2QformerCirAlignPrompt"
IGNORED_PREFIXES = ("itm_head.", "Qformer.cls.")
KINDS = ("cirflow", "sprc", "state_dict", "blip2")
VIT_PREFIX = "visual_encoder."


def saved_state_dict(model) -> dict[str, torch.Tensor]:
    """The weights a checkpoint holds: all but a frozen ViT's."""
    frozen_vit = getattr(model, "freeze_vit", False)
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if not (frozen_vit and k.startswith("visual_encoder."))
    }


def model_spec(model) -> dict[str, Any]:
    return {
        "preset": model.preset.name,
        "freeze_vit": bool(model.preset.freeze_vit),
        "vit_precision": model.preset.vit_precision,
        "with_region": bool(model.with_region),
        # Region tokens (docs/design.md §6): the evaluation then needs the gallery's boxes.
        "region_tokens": bool(getattr(model, "use_region_tokens", False)),
        "max_region_tokens": getattr(model, "max_region_tokens", None),
        # Where the frozen ViT (left out of the file) is rebuilt from: tiny's first stage.
        "weights": model.preset.vit_weights,
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
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def write_best(
    model, stash: Path, published: Path, epoch: int, metrics: dict, hparams: dict
) -> None:
    """The weights of the best epoch: written to `stash` (resume/best.pt), linked to `published`."""
    save_atomic(
        {
            "format": FORMAT,
            "model": model_spec(model),
            "state_dict": saved_state_dict(model),
            "epoch": epoch,
            "metrics": metrics,
            "hparams": hparams,
        },
        stash,
    )
    publish_link(stash, published)


def write_last(path: Path, model, training_state: dict[str, Any]) -> None:
    """Everything a resumed run needs: the weights + `training_state` (optimizer, scheduler,
    scaler, epoch, num_epochs, rng, fingerprint, history; see the module docstring)."""
    save_atomic(
        {
            "format": FORMAT,
            "model": model_spec(model),
            "state_dict": saved_state_dict(model),
            **training_state,
        },
        path,
    )


def torch_load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CirflowError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CirflowError(f"cannot load checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise CirflowError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def extract_state_dict(obj: dict, path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state_dict, kind) from a cirflow or a published SPRC checkpoint."""
    if obj.get("format") == FORMAT:
        return obj["state_dict"], "cirflow"
    if SPRC_KEY in obj and isinstance(obj[SPRC_KEY], dict):
        sd = obj[SPRC_KEY]
        kind = "sprc"
    elif all(isinstance(v, torch.Tensor) for v in obj.values()) and obj:
        sd, kind = obj, "state_dict"
    else:
        raise CirflowError(
            f"{path}: not a cirflow checkpoint (format {FORMAT!r}) nor an SPRC one "
            f"({{'{SPRC_KEY}': state_dict}}); top-level keys: {sorted(obj)[:8]}"
        )
    sd = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in sd.items()}
    return sd, kind


def summarise_keys(keys: list[str], limit: int = 8) -> str:
    """Keys grouped by module, e.g. ``visual_encoder.blocks.2.* (12 keys), temp``: up to the
    first numbered part (a block), else the parent module."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        parts = key.split(".")
        numbered = [i for i, p in enumerate(parts[:-1]) if p.isdigit()]
        head = ".".join(parts[: numbered[0] + 1] if numbered else parts[:-1]) or key
        groups.setdefault(head, []).append(key)
    items = [f"{g}.* ({len(ks)} keys)" if len(ks) > 1 else ks[0] for g, ks in groups.items()]
    more = f", ... ({len(items) - limit} more groups)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def key_problems(
    model_keys,
    file_keys,
    kind: str,
    frozen_vit: bool,
    allow_missing: tuple[str, ...] = (),
) -> tuple[list[str], list[str]]:
    """(missing, unexpected): the keys that break the rules of the module docstring."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    model_keys = set(model_keys)
    file_keys = {k for k in file_keys if not k.startswith(IGNORED_PREFIXES)}
    allowed = tuple(allow_missing)
    if kind in ("sprc", "state_dict", "blip2"):
        allowed += ("region_proj.",)
    if kind == "blip2":
        allowed += ("prompt_tokens",)
    file_has_vit = any(k.startswith(VIT_PREFIX) for k in file_keys)
    vit_may_be_absent = not file_has_vit and (frozen_vit or kind == "blip2")
    missing = sorted(
        k
        for k in model_keys - file_keys
        if not k.endswith("position_ids")
        and not k.startswith(allowed)
        and not (vit_may_be_absent and k.startswith(VIT_PREFIX))
    )
    unexpected = sorted(k for k in file_keys - model_keys if not k.endswith("position_ids"))
    return missing, unexpected


def load_weights(
    model,
    state_dict: dict[str, torch.Tensor],
    source: str,
    kind: str = "cirflow",
    allow_missing: tuple[str, ...] = (),
) -> None:
    """Load `state_dict` (a file of `kind`, see KINDS) into `model`, strictly (module docstring).

    `allow_missing`: further key prefixes that may be absent (e.g. ``region_proj.`` when stage
    2 starts from a stage-1 checkpoint).
    """
    own = model.state_dict()
    frozen_vit = bool(getattr(model, "freeze_vit", False))
    missing, unexpected = key_problems(own, state_dict, kind, frozen_vit, allow_missing)
    if missing or unexpected:
        preset = getattr(getattr(model, "preset", None), "name", "?")
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} model weights missing from the file: {summarise_keys(missing)}"
            )
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected keys in the file: {summarise_keys(unexpected)}"
            )
        raise CirflowError(
            f"{source}: this {kind} file does not match the model (preset {preset!r}; wrong "
            "--backbone, or a file from another LAVIS version?): " + "; ".join(parts)
        )
    sd = {k: v for k, v in state_dict.items() if k in own}
    shape_errors = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in sd.items()
        if tuple(v.shape) != tuple(own[k].shape)
    ]
    if shape_errors:
        raise CirflowError(
            f"{source}: weights do not fit this model (wrong --backbone/preset?): "
            + "; ".join(shape_errors[:5])
        )
    model.load_state_dict(sd, strict=False)
    ignored = [k for k in state_dict if k.startswith(IGNORED_PREFIXES)]
    if ignored:
        log.info(
            "%s: ignored %d weights of heads SPRC does not use (%s)",
            source,
            len(ignored),
            summarise_keys(ignored),
        )


def build_model_from_checkpoint(
    path: str | Path, preset_name: str | None = None, device: str | torch.device = "cpu"
):
    """Build an SPRC model and load `path` (cirflow or published SPRC format) into it.

    A published SPRC file does not say which backbone it was trained with: pass `preset_name`
    (``pretrain`` for SPRC's released CIRR weights).
    """
    from cirflow.model.presets import get_preset
    from cirflow.model.sprc import SPRC

    obj = torch_load(path)
    sd, kind = extract_state_dict(obj, path)
    if kind == "cirflow":
        spec = obj["model"]
        if preset_name and preset_name != spec["preset"]:
            raise CirflowError(
                f"{path} was trained with preset {spec['preset']!r}, not {preset_name!r}"
            )
        preset = get_preset(
            spec["preset"],
            freeze_vit=spec["freeze_vit"],
            vit_precision=spec["vit_precision"],
            weights=spec.get("weights"),
        )
        model = SPRC(
            preset,
            with_region=spec["with_region"],
            load_pretrained=False,
            region_tokens=bool(spec.get("region_tokens", False)),
            max_region_tokens=spec.get("max_region_tokens"),
        )
    else:
        if not preset_name:
            raise CirflowError(
                f"{path} is an SPRC checkpoint: say which backbone it uses (--backbone pretrain)"
            )
        model = SPRC(get_preset(preset_name), load_pretrained=False)
    load_weights(model, sd, str(path), kind=kind)
    model.prepare_for_device(torch.device(device))
    log.info("loaded %s checkpoint %s (preset %s)", kind, path, model.preset.name)
    return model.to(device), obj
