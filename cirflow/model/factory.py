"""Models from configs: the one place an SPRC model is built and any weight file loaded into it.

    build_model(config)                   the architecture, then the preset's files: the ViT file
                                          (eva_vit_g.pth, clip_vit_L.pth) or the tiny preset's
                                          first stage, and the BLIP-2 file
    model_for_training(config, init)      the same, or started from a cirflow / SPRC checkpoint
                                          (stage 2 from stage 1's best.pt)
    load_model(path)                      the model a checkpoint holds, for evaluation
    pretrained_vision_encoder(preset)     the ViT alone, with its weights (cached image features)

LAVIS's own files are read through its download cache (`$TORCH_HOME/hub/checkpoints`); the key
rules of every state dict are `cirflow.model.state_dicts`'.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cirflow.errors import CirflowError
from cirflow.model.checkpoints import model_config, read_checkpoint, rebuild_advice
from cirflow.model.config import ModelConfig, RegionMode
from cirflow.model.lavis_modules import (
    clip_interpolate_pos_embed,
    convert_weights_to_fp16,
    download_cached_file,
    eva_interpolate_pos_embed,
    is_url,
)
from cirflow.model.lavis_parts import build_vision_encoder
from cirflow.model.presets import VIT_WEIGHTS, ModelPreset, check_weights_available
from cirflow.model.sprc import SPRC
from cirflow.model.state_dicts import load_state, state_dict_of, summarise_keys

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- entry points
def build_model(config: ModelConfig, pretrained: bool = True) -> SPRC:
    """The model `config` describes, with its preset's weight files. `pretrained` False skips
    the BLIP-2 file (a checkpoint holding every trainable weight is loaded next)."""
    preset = config.resolve_preset()
    check_weights_available(preset)
    model = SPRC(preset, config.region_mode, config.max_region_tokens)
    load_vit_weights(model.visual_encoder, preset)
    if pretrained and preset.pretrained:
        load_blip2_file(model, preset.pretrained)
    return model


def model_for_training(config: ModelConfig, init_checkpoint: str | None = None) -> SPRC:
    """A training run's model: from `init_checkpoint` (a cirflow or SPRC file) when given, else
    from the preset's pretrained weights. A stage-1 file lacks the weights a region mode adds
    (`region_temp`, 0.07; aux's `region_proj`, random init; gated's `region_gate`, 0)."""
    if not init_checkpoint:
        return build_model(config)
    obj = read_checkpoint(init_checkpoint)
    state, kind = state_dict_of(obj, init_checkpoint)
    if kind == "cirflow" and model_config(obj).preset != config.preset:
        raise CirflowError(
            f"{init_checkpoint} was trained with preset {model_config(obj).preset!r}, this run "
            f"uses {config.preset!r}"
        )
    # A full init checkpoint replaces the BLIP-2 weights: do not load those first.
    model = build_model(config, pretrained=False)
    # Only the weights a region mode adds are missing from a stage-1 file (they start anew).
    allow = added_by_region_mode(config.region_mode)
    load_state(model, state, init_checkpoint, kind=kind, allow_missing=allow)
    log.info("initialised from %s (region mode %s)", init_checkpoint, config.region_mode)
    return model


def added_by_region_mode(mode: RegionMode) -> tuple[str, ...]:
    """The weights (name prefixes) a region mode adds to the stage-1 model."""
    if not mode.uses_boxes:
        return ()
    own = {RegionMode.AUX: ("region_proj.",), RegionMode.GATED: ("region_gate",)}
    return (*own.get(mode, ()), "region_temp")


def load_model(
    path: str | Path, preset_name: str | None = None, device: str | torch.device = "cpu"
) -> tuple[SPRC, dict]:
    """(model on `device`, the checkpoint's dict) of a cirflow or published SPRC checkpoint.

    A published SPRC file does not say which backbone it was trained with: pass `preset_name`
    (``pretrain`` for SPRC's released CIRR weights).
    """
    obj = read_checkpoint(path)
    state, kind = state_dict_of(obj, path)
    if kind == "cirflow":
        config = model_config(obj)
        if preset_name and preset_name != config.preset:
            raise CirflowError(
                f"{path} was trained with preset {config.preset!r}, not {preset_name!r}"
            )
    elif not preset_name:
        raise CirflowError(
            f"{path} is an SPRC checkpoint: say which backbone it uses (--backbone pretrain)"
        )
    else:
        config = ModelConfig(preset_name)
    model = build_model(config, pretrained=False)
    # region_temp enters the training loss only; files from before it was added score alike.
    load_state(model, state, str(path), kind=kind, allow_missing=("region_temp",))
    model.prepare_for_device(torch.device(device))
    log.info("loaded %s checkpoint %s (preset %s)", kind, path, config.preset)
    return model.to(device), obj


def pretrained_vision_encoder(preset: ModelPreset) -> tuple[nn.Module, nn.Module]:
    """(ViT, ln_vision) of `preset` with the ViT's weights (fp16 where the preset says so)."""
    vit, ln_vision = build_vision_encoder(preset)
    load_vit_weights(vit, preset)
    return vit, ln_vision


# ------------------------------------------------------------------------------- weight files
def load_vit_weights(vit: nn.Module, preset: ModelPreset) -> None:
    """The preset's ViT file (unless random), then LAVIS's fp16 conversion if asked."""
    if preset.vit_model in VIT_WEIGHTS and not preset.random_init:
        load_vit_file(vit, VIT_WEIGHTS[preset.vit_model], preset)
    elif preset.vit_weights:  # tiny: the demo's first stage
        load_first_stage_vit(vit, preset.vit_weights)
    if preset.vit_precision == "fp16" and preset.vit_model != "eva_tiny":
        # LAVIS's conversion (Linear/Conv weights; they run under autocast). The tiny ViT
        # stays fp32 whatever vit_precision says, as it always has.
        convert_weights_to_fp16(vit)


def local_file(url_or_path: str) -> str:
    """A LAVIS URL through LAVIS's download cache ($TORCH_HOME/hub/checkpoints), or a path."""
    if is_url(url_or_path):
        return download_cached_file(url_or_path, check_hash=False, progress=True)
    return url_or_path


def load_weight_file(url_or_path: str, weights_only: bool = True) -> Any:
    """torch.load of a weight file (a LAVIS URL through its download cache). A file torch cannot
    read is an error naming it and what makes it whole again."""
    path = local_file(url_or_path)
    if not Path(path).is_file():
        raise CirflowError(f"weight file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # torch's errors for a truncated or damaged file vary
        advice = (
            f"delete it: the next run downloads it again from {url_or_path}"
            if is_url(url_or_path)
            else rebuild_advice(path)
        )
        raise CirflowError(
            f"cannot load {path} (truncated or damaged? {type(exc).__name__}: {exc}); {advice}"
        ) from exc


def load_first_stage_vit(vit: nn.Module, path: str) -> None:
    """A tiny ViT's weights from a BLIP-2-layout file ({"model": state_dict}, `visual_encoder.*`).

    Every ViT weight must be in the file and match: a frozen ViT is never trained afterwards, so
    a silently missing block would stay random for good.
    """
    obj = load_weight_file(path)
    state = obj.get("model") if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CirflowError(f"{path}: not a BLIP-2-layout file ({{'model': state_dict}})")
    prefix = "visual_encoder."
    vit_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = vit.load_state_dict(vit_state, strict=False)
    if missing or unexpected:
        raise CirflowError(
            f"{path}: its ViT weights do not fit this preset's ViT: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )


def load_vit_file(vit: nn.Module, url_or_path: str, preset: ModelPreset) -> None:
    """Load a LAVIS ViT file (eva_vit_g.pth, clip_vit_L.pth) into `vit`: every weight of the
    built ViT must be in the file (a CirflowError names the missing ones). The file's blocks
    beyond the built depth are not used (BLIP-2 drops the ViT's last layer) and are logged."""
    state = load_weight_file(url_or_path, weights_only=False)
    if not isinstance(state, dict):
        raise CirflowError(f"{url_or_path}: expected a ViT state dict, got {type(state).__name__}")
    eva = preset.vit_model.startswith("eva")
    (eva_interpolate_pos_embed if eva else clip_interpolate_pos_embed)(vit, state)
    own = vit.state_dict()
    missing = sorted(k for k in own if k not in state)
    if missing:
        raise CirflowError(
            f"{url_or_path}: the ViT file lacks {len(missing)} weights of preset "
            f"{preset.name!r} ({preset.vit_depth} blocks): {summarise_keys(missing)}"
        )
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if shapes:
        raise CirflowError(
            f"{url_or_path}: ViT weights of the wrong shape: {'; '.join(shapes[:5])}"
        )
    vit.load_state_dict({k: state[k] for k in own})
    unused = sorted(k for k in state if k not in own)
    if unused:
        log.info(
            "%s: %d entries not used by the %d-block ViT: %s",
            url_or_path,
            len(unused),
            preset.vit_depth,
            summarise_keys(unused),
        )


def load_blip2_file(model: SPRC, url_or_path: str) -> None:
    """A BLIP-2 file (``{"model": state_dict}``), its keys checked against the model: only the
    prompt tokens, the region head and the ViT (it has its own file) may be absent;
    itm_head / Qformer.cls are known and ignored; anything else is an error."""
    # The official BLIP-2 files are trusted pickles (they hold more than tensors).
    checkpoint = load_weight_file(url_or_path, weights_only=False)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise CirflowError(f"{url_or_path}: not a BLIP-2 checkpoint ({{'model': state_dict}})")
    load_state(model, checkpoint["model"], str(url_or_path), kind="blip2")
    log.info("loaded BLIP-2 weights from %s", url_or_path)
