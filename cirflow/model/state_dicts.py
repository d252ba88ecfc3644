"""Strict loading of a state dict into a model: which keys a file of each kind may lack or carry.

Kinds of file (`KINDS`):

    cirflow     a cirflow checkpoint's `state_dict` (`cirflow.model.checkpoints`)
    sprc        a published SPRC checkpoint: ``{"Blip2QformerCirAlignPrompt": state_dict, ...}``
                (what SPRC's ``save_model`` writes), LAVIS names, possibly a DDP ``module.`` prefix
    state_dict  a bare ``{name: tensor}`` dict with LAVIS names
    blip2       a BLIP-2 file's ``model`` entry (the pretrained Q-Former, projections, queries)

Loading is strict: the file's keys must be exactly the model's, except

    absent, allowed       ``*position_ids`` buffers; the region weights (``region_proj.``,
                          ``region_temp``) in BLIP-2 / SPRC files, and where the caller allows it (stage 2 from stage 1); the
                          prompt tokens in BLIP-2 files; the ViT as a whole where it is frozen
                          (cirflow files never hold it) or in BLIP-2 files (it has its own file)
    present, ignored      ``itm_head.*``, ``Qformer.cls.*`` (heads SPRC's retrieval never uses)

A ViT present in part, or any other missing or extra key, is a CirflowError that names the keys:
a silently dropped or added block (e.g. ViT-L built with 21 blocks while the file holds 23) is
the most dangerous failure here (docs/design.md §5, "strict loading").
"""

from __future__ import annotations

import logging

import torch

from cirflow.errors import CirflowError
from cirflow.model.checkpoints import FORMAT, VIT_PREFIX, is_cirflow_checkpoint

log = logging.getLogger(__name__)

SPRC_KEY = "Blip2QformerCirAlignPrompt"
IGNORED_PREFIXES = ("itm_head.", "Qformer.cls.")
KINDS = ("cirflow", "sprc", "state_dict", "blip2")


def state_dict_of(obj: dict, path) -> tuple[dict[str, torch.Tensor], str]:
    """(state_dict, kind) of a cirflow or a published SPRC checkpoint, or a bare state dict."""
    if is_cirflow_checkpoint(obj):
        return obj["state_dict"], "cirflow"
    if SPRC_KEY in obj and isinstance(obj[SPRC_KEY], dict):
        sd, kind = obj[SPRC_KEY], "sprc"
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
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
        allowed += ("region_proj.", "region_temp")
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


def load_state(
    model,
    state_dict: dict[str, torch.Tensor],
    source: str,
    kind: str = "cirflow",
    allow_missing: tuple[str, ...] = (),
) -> None:
    """Load `state_dict` (a file of `kind`) into `model`, strictly (module docstring).

    `allow_missing`: further key prefixes that may be absent (e.g. ``region_proj.`` when stage
    2 starts from a stage-1 checkpoint).
    """
    own = model.state_dict()
    missing, unexpected = key_problems(
        own, state_dict, kind, model.preset.freeze_vit, allow_missing
    )
    if missing or unexpected:
        raise CirflowError(
            f"{source}: this {kind} file does not match the model (preset "
            f"{model.preset.name!r}; wrong --backbone, or a file from another LAVIS version?): "
            + "; ".join(_key_report(missing, unexpected))
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


def _key_report(missing: list[str], unexpected: list[str]) -> list[str]:
    parts = []
    if missing:
        parts.append(
            f"{len(missing)} model weights missing from the file: {summarise_keys(missing)}"
        )
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys in the file: {summarise_keys(unexpected)}")
    return parts
