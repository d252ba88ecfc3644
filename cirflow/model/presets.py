"""Model presets: which ViT, Q-Former size, vocabulary and weights a `--backbone` name means.

* ``pretrain``      — EVA ViT-g/14 + BERT-base Q-Former, BLIP-2 weights (SPRC's default backbone).
* ``pretrain_vitL`` — CLIP ViT-L/14 + BERT-base Q-Former, BLIP-2 weights.
* ``tiny``          — the same LAVIS classes at toy sizes, with the vocabulary file shipped beside
                      this module, starting from the demo's own BLIP-2-style first stage (rule
                      pretrain_backbone, `cirflow.train.pretrain`) with the ViT frozen: the demo
                      takes the path real users take with ``pretrain``. Fully offline.
* ``tiny_scratch``  — ``tiny`` randomly initialised with a trainable ViT (for tests, and for the
                      backbone's own pretraining).
* ``pretrain_random`` — the ``pretrain`` architecture (EVA ViT-g + a BERT-base-sized Q-Former)
                      with random weights and the tiny vocabulary file: nothing to download; for
                      speed and memory measurements only (benchmarks/gpu_check.py), never results.

Each ViT is built by this package at the sizes below (the LAVIS classes, then the LAVIS weight
file), so that the depth is the one the published checkpoints were trained with: for
``pretrain_vitL`` that is the 23 residual blocks of SPRC's bundled LAVIS ``clip_vit.py``, where
the installed LAVIS 1.0.2 would build 21 (docs/design.md §5, "ViT-L depth").

The two ``pretrain*`` presets load their weights the way LAVIS does (its download cache, i.e.
``$TORCH_HOME/hub/checkpoints`` for the ViT and BLIP-2 files, the Hugging Face cache for
``bert-base-uncased``); `check_weights_available` turns a missing file on an offline machine into
an error naming the file instead of a multi-minute network hang.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cirflow.errors import CirflowError

TINY_VOCAB_FILE = Path(__file__).with_name("tiny_vocab.txt")
# The tiny preset's first stage, written by the demo's rule pretrain_backbone (BLIP-2's layout).
DEMO_BACKBONE = "results/demo/backbone/backbone.pth"

LAVIS_BLIP2 = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/"


@dataclass(frozen=True)
class ModelPreset:
    name: str
    # Vision encoder family and weights: "eva_clip_g" (EVA ViT-g, eva_vit_g.pth) | "clip_L" (CLIP
    # ViT-L, clip_vit_L.pth) | "eva_tiny" (random init). eva_* use lavis.models.eva_vit's
    # VisionTransformer, clip_L lavis.models.clip_vit's, at the vit_* sizes below.
    vit_model: str
    image_size: int
    freeze_vit: bool
    vit_precision: str  # "fp16" | "fp32" (fp16 is used on CUDA only)
    num_query_token: int
    embed_dim: int
    max_txt_len: int
    cross_attention_freq: int = 2
    drop_path_rate: float = 0.0
    use_grad_checkpoint: bool = False
    # The BLIP-2 checkpoint (LAVIS URL or a path) the Q-Former, query tokens, projections start from.
    pretrained: str | None = None
    # Where a frozen ViT's weights come from when a checkpoint leaves them out: None for the
    # LAVIS backbones (their factory loads them), the BLIP-2-layout file for tiny.
    vit_weights: str | None = None
    # "bert-base-uncased" (Hugging Face) or a local WordPiece vocab file ("tiny": the shipped one).
    vocab: str = "bert-base-uncased"
    # ViT sizes: patch, width, residual blocks (as built, i.e. after BLIP-2's "drop the last
    # layer"), heads, MLP ratio.
    vit_patch_size: int = 14
    vit_width: int = 0
    vit_depth: int = 0
    vit_heads: int = 0
    vit_mlp_ratio: float = 4.0
    # True: no ViT file is loaded (random ViT weights), whatever vit_model says.
    random_init: bool = False
    # Q-Former config for BertConfig.from_dict (random init). Empty: LAVIS's bert-base-uncased
    # Q-Former with BERT's weights (then the BLIP-2 file).
    qformer: dict[str, Any] = field(default_factory=dict)

    @property
    def vit_grid(self) -> int:
        """Patch grid side G (ViT tokens = 1 + G*G)."""
        return self.image_size // self.vit_patch_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, ModelPreset] = {
    "pretrain": ModelPreset(
        name="pretrain",
        vit_model="eva_clip_g",
        image_size=224,
        freeze_vit=True,
        vit_precision="fp16",
        num_query_token=32,
        embed_dim=256,
        max_txt_len=32,
        pretrained=LAVIS_BLIP2 + "blip2_pretrained.pth",
        # LAVIS's (and SPRC's bundled) create_eva_vit_g: 39 of EVA-CLIP-g's 40 blocks.
        vit_patch_size=14,
        vit_width=1408,
        vit_depth=39,
        vit_heads=1408 // 88,
        vit_mlp_ratio=4.3637,
    ),
    "pretrain_vitL": ModelPreset(
        name="pretrain_vitL",
        vit_model="clip_L",
        image_size=224,
        freeze_vit=True,
        vit_precision="fp16",
        num_query_token=32,
        embed_dim=256,
        max_txt_len=32,
        pretrained=LAVIS_BLIP2 + "blip2_pretrained_vitL.pth",
        # SPRC's bundled clip_vit.py: create_clip_vit_L(layers=23), Transformer(width, layers):
        # 23 residual blocks. Installed LAVIS 1.0.2: layers=22, Transformer(width, layers - 1),
        # i.e. 21 (LAVIS issues #216, #609).
        vit_patch_size=14,
        vit_width=1024,
        vit_depth=23,
        vit_heads=16,
    ),
    "tiny": ModelPreset(
        name="tiny",
        vit_model="eva_tiny",
        image_size=64,
        freeze_vit=True,
        vit_precision="fp32",
        num_query_token=8,
        embed_dim=64,
        max_txt_len=24,
        vocab="tiny",
        pretrained=DEMO_BACKBONE,
        vit_weights=DEMO_BACKBONE,
        vit_patch_size=8,
        vit_width=96,
        vit_depth=3,
        vit_heads=4,
        qformer={
            "hidden_size": 96,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "intermediate_size": 192,
            # No dropout: a from-scratch model trained for minutes underfits, it does not overfit
            # (and dropout's random masks cost ~9 % of a CPU step).
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "max_position_embeddings": 64,
            # BERT's 0.02 keeps a randomly initialised narrow Q-Former near-constant over its
            # inputs (cosine 0.9999 between samples): ~1/sqrt(width) lets it learn from scratch.
            "initializer_range": 0.1,
        },
    ),
}
PRESETS["tiny_scratch"] = dataclasses.replace(
    PRESETS["tiny"], name="tiny_scratch", freeze_vit=False, pretrained=None, vit_weights=None
)
# BERT-base sizes (bert-base-uncased's config.json) + the [DEC] token LAVIS adds: 30523 words.
BERT_BASE = {
    "vocab_size": 30523,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "initializer_range": 0.02,
}
PRESETS["pretrain_random"] = dataclasses.replace(
    PRESETS["pretrain"],
    name="pretrain_random",
    pretrained=None,
    random_init=True,
    vocab="tiny",
    qformer=BERT_BASE,
)

# Files LAVIS downloads for the ViT of each pretrained backbone.
VIT_WEIGHTS = {
    "eva_clip_g": LAVIS_BLIP2 + "eva_vit_g.pth",
    "clip_L": LAVIS_BLIP2 + "clip_vit_L.pth",
}


def get_preset(
    name: str,
    freeze_vit: bool | None = None,
    vit_precision: str | None = None,
    weights: str | None = None,
) -> ModelPreset:
    """The preset `name`, with the optional overrides from config (`model.freeze_vit`, ...).

    `weights` (`model.weights`): another first-stage file for a preset that reads one from a
    path (tiny: the demo backbone).
    """
    if name not in PRESETS:
        raise CirflowError(
            f"unknown model preset (model.preset / --backbone) {name!r}: expected one of "
            f"{', '.join(PRESETS)}"
        )
    preset = PRESETS[name]
    changes: dict[str, Any] = {}
    if freeze_vit is not None:
        changes["freeze_vit"] = bool(freeze_vit)
    if vit_precision is not None:
        if vit_precision not in ("fp16", "fp32"):
            raise CirflowError(f"model.vit_precision must be fp16 or fp32 (got {vit_precision!r})")
        changes["vit_precision"] = vit_precision
    if weights is not None:
        if preset.vit_weights is None:
            raise CirflowError(
                f"model.weights is for presets that start from a local file (tiny); "
                f"{name!r} loads the published BLIP-2 weights"
            )
        changes["pretrained"] = changes["vit_weights"] = str(weights)
    return dataclasses.replace(preset, **changes) if changes else preset


def _lavis_cache_file(url: str) -> Path:
    """Where LAVIS's download_cached_file keeps `url` (timm's hub cache under TORCH_HOME)."""
    from timm.models import hub as timm_hub

    return Path(timm_hub.get_cache_dir()) / os.path.basename(url)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("", "0")


def needs_downloads(preset: ModelPreset) -> bool:
    """Whether building `preset` reads LAVIS / Hugging Face files (the ViT, BLIP-2, BERT)."""
    if preset.random_init or preset.vit_model == "eva_tiny":
        return False
    return preset.vit_model in VIT_WEIGHTS or bool(preset.pretrained) or not preset.qformer


def check_weights_available(preset: ModelPreset) -> None:
    """On an offline machine, fail fast with the missing files named (no network hang)."""
    if preset.vit_model == "eva_tiny":  # local files only
        for path in {preset.pretrained, preset.vit_weights} - {None}:
            if not Path(path).is_file():
                hint = (
                    f" (the demo's first stage: `snakemake {DEMO_BACKBONE}` makes it)"
                    if path == DEMO_BACKBONE
                    else ""
                )
                raise CirflowError(
                    f"model preset {preset.name!r} starts from {path}, which does not exist{hint}"
                )
        return
    if not needs_downloads(preset) or not offline():
        return
    missing = []
    for url in (VIT_WEIGHTS.get(preset.vit_model), preset.pretrained):
        if url and not _lavis_cache_file(url).is_file():
            missing.append(f"{url} -> {_lavis_cache_file(url)}")
    try:
        from huggingface_hub import try_to_load_from_cache

        for fname in ("config.json", "vocab.txt"):
            hit = try_to_load_from_cache("bert-base-uncased", fname)
            if not isinstance(hit, str):
                missing.append(f"bert-base-uncased/{fname} in the Hugging Face cache ($HF_HOME)")
    except ImportError:  # pragma: no cover - huggingface_hub is installed with transformers
        pass
    if missing:
        raise CirflowError(
            f"model preset {preset.name!r} needs weights that are not cached and this machine is "
            "offline (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE set):\n  "
            + "\n  ".join(missing)
            + "\nDownload them on a machine with internet (run the same command once there, or "
            "fetch the URLs into the paths shown) and copy the caches here; or use --backbone tiny."
        )
