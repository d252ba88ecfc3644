"""What a model is: its preset (with the config's overrides) and its region mode, as one value.

`ModelConfig` is what the factory (`cirflow.model.factory`) builds a model from and what every
cirflow checkpoint stores (`cirflow.model.checkpoints`), so that a checkpoint alone says how to
rebuild its model. Torch-free: the workflow and the settings modules use it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from cirflow.errors import CirflowError
from cirflow.model.presets import ModelPreset, get_preset


class RegionMode(StrEnum):
    """What boxes do in stage 2 (docs/design.md §6)."""

    NONE = "none"  # nothing: the stage-1 loss (the control)
    AUX = "aux"  # + L_region on region_proj's ROI features of the target boxes (training only)
    TOKEN_LOSS = "token_loss"  # + L_region on the target boxes' region tokens (training only)
    TOKENS = "tokens"  # region tokens join every image's candidate tokens
    GATED = "gated"  # tokens, their part in each score a learned gate that starts at 0

    @property
    def uses_boxes(self) -> bool:
        return self is not RegionMode.NONE

    @property
    def has_region_tokens(self) -> bool:
        """Training computes region tokens (the Q-Former on the patches inside each box)."""
        return self in (RegionMode.TOKEN_LOSS, RegionMode.TOKENS, RegionMode.GATED)

    @property
    def scores_regions(self) -> bool:
        """Retrieval scores region tokens: evaluation needs each gallery image's boxes."""
        return self in (RegionMode.TOKENS, RegionMode.GATED)


REGION_MODES = tuple(m.value for m in RegionMode)


def region_mode(value: str | RegionMode, key: str = "region mode") -> RegionMode:
    """`value` as a RegionMode; an unknown name is an error naming `key`."""
    try:
        return RegionMode(value)
    except ValueError:
        raise CirflowError(
            f"{key} must be one of {', '.join(REGION_MODES)} (got {value!r})"
        ) from None


@dataclass(frozen=True)
class ModelConfig:
    """A preset name, the config's overrides of it (`model:`), and the region mode.

    `max_region_tokens` is the cap on boxes per image in the modes with region tokens (None
    otherwise): an evaluation loads each gallery image's boxes the way training did.
    """

    preset: str = "tiny"
    freeze_vit: bool | None = None  # None: the preset's choice
    vit_precision: str | None = None
    weights: str | None = None  # the tiny preset's first-stage file
    region_mode: RegionMode = RegionMode.NONE
    max_region_tokens: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "region_mode", region_mode(self.region_mode))
        if not self.region_mode.has_region_tokens:
            object.__setattr__(self, "max_region_tokens", None)

    def resolve_preset(self) -> ModelPreset:
        return get_preset(
            self.preset,
            freeze_vit=self.freeze_vit,
            vit_precision=self.vit_precision,
            weights=self.weights,
        )

    def resolved(self) -> ModelConfig:
        """The same model with every override filled in from the preset: what a checkpoint
        stores, so that it still means the same model if a preset's defaults change."""
        preset = self.resolve_preset()
        return replace(
            self,
            freeze_vit=bool(preset.freeze_vit),
            vit_precision=preset.vit_precision,
            weights=preset.vit_weights,
        )

    def with_region(self, mode: str | RegionMode, max_region_tokens: int | None) -> ModelConfig:
        return replace(self, region_mode=mode, max_region_tokens=max_region_tokens)

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "freeze_vit": self.freeze_vit,
            "vit_precision": self.vit_precision,
            "weights": self.weights,
            "region_mode": str(self.region_mode),
            "max_region_tokens": self.max_region_tokens,
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> ModelConfig:
        """From a checkpoint's `model` entry, including files written before the region mode
        was one value (`with_region`: aux, `region_tokens`: tokens)."""
        mode = spec.get("region_mode")
        if mode is None:
            mode = (
                "tokens"
                if spec.get("region_tokens")
                else "aux"
                if spec.get("with_region")
                else "none"
            )
        return cls(
            preset=spec["preset"],
            freeze_vit=spec.get("freeze_vit"),
            vit_precision=spec.get("vit_precision"),
            weights=spec.get("weights"),
            region_mode=mode,
            max_region_tokens=spec.get("max_region_tokens"),
        )

    @classmethod
    def from_model_section(cls, model_cfg: dict[str, Any]) -> ModelConfig:
        """From config.yaml's `model:` section (region mode none: a training run sets its own)."""
        return cls(
            preset=model_cfg["preset"],
            freeze_vit=model_cfg.get("freeze_vit"),
            vit_precision=model_cfg.get("vit_precision"),
            weights=model_cfg.get("weights"),
        )
