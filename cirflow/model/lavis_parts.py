"""The LAVIS components of SPRC, built at a preset's sizes with random weights: the tokenizer, the
ViT (+ `ln_vision`) and the Q-Former with its query tokens.

Weights come later, from files (`cirflow.model.factory`). Building here and loading there keeps
the construction order — and so every random draw — the same whatever files are loaded.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cirflow.errors import CirflowError
from cirflow.model.lavis_modules import (
    BertConfig,
    BertLMHeadModel,
    Blip2Base,
    ClipVisionTransformer,
    EvaVisionTransformer,
    LayerNorm,
)
from cirflow.model.presets import TINY_VOCAB_FILE, ModelPreset


def build_tokenizer(preset: ModelPreset):
    if preset.vocab == "bert-base-uncased":
        return Blip2Base.init_tokenizer()  # bert-base-uncased + [DEC] as bos token
    from transformers import BertTokenizer

    vocab = TINY_VOCAB_FILE if preset.vocab == "tiny" else preset.vocab
    tokenizer = BertTokenizer(vocab_file=str(vocab), do_lower_case=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    return tokenizer


def build_vit(preset: ModelPreset) -> nn.Module:
    """The preset's ViT architecture (LAVIS classes at the preset's sizes).

    eva_*: lavis.models.eva_vit.VisionTransformer, as LAVIS's create_eva_vit_g builds it.
    clip_L: lavis.models.clip_vit.VisionTransformer with `vit_depth` residual blocks (see
    `build_clip_vit`).
    """
    if preset.vit_model.startswith("eva"):
        return EvaVisionTransformer(
            img_size=preset.image_size,
            patch_size=preset.vit_patch_size,
            embed_dim=preset.vit_width,
            depth=preset.vit_depth,
            num_heads=preset.vit_heads,
            mlp_ratio=preset.vit_mlp_ratio,
            qkv_bias=True,
            drop_path_rate=preset.drop_path_rate,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_mean_pooling=False,
            use_checkpoint=preset.use_grad_checkpoint,
        )
    if preset.vit_model != "clip_L":
        raise CirflowError(f"unknown vit_model {preset.vit_model!r} in preset {preset.name!r}")
    return build_clip_vit(preset)


def build_clip_vit(preset: ModelPreset) -> nn.Module:
    """CLIP ViT-L with `vit_depth` residual blocks. LAVIS 1.0.2's class builds one block fewer
    than its `layers` argument (SPRC's bundled copy does not), so the count is measured on a
    small probe and checked after building."""

    def build(layers: int, width: int, heads: int, size: int, checkpointing: bool):
        return ClipVisionTransformer(
            input_resolution=size,
            patch_size=preset.vit_patch_size,
            width=width,
            layers=layers,
            heads=heads,
            use_grad_checkpointing=checkpointing,
        )

    probe = build(3, 8, 1, preset.vit_patch_size, False)
    dropped = 3 - len(probe.transformer.resblocks)  # 1 in LAVIS 1.0.2, 0 in SPRC's copy
    vit = build(
        preset.vit_depth + dropped,
        preset.vit_width,
        preset.vit_heads,
        preset.image_size,
        preset.use_grad_checkpoint,
    )
    if len(vit.transformer.resblocks) != preset.vit_depth:
        raise CirflowError(
            f"preset {preset.name!r}: built {len(vit.transformer.resblocks)} ViT blocks, "
            f"expected {preset.vit_depth}"
        )
    return vit


def build_vision_encoder(preset: ModelPreset) -> tuple[nn.Module, nn.Module]:
    """(ViT, ln_vision) with random weights."""
    vit = build_vit(preset)
    return vit, LayerNorm(vit.num_features)


def build_qformer(
    preset: ModelPreset, vision_width: int, vocab_size: int
) -> tuple[nn.Module, nn.Parameter]:
    """(Q-Former, query tokens). With an empty `preset.qformer`: LAVIS's BLIP-2 Q-Former from
    bert-base-uncased's weights; else a random Q-Former of the given sizes."""
    if not preset.qformer:
        qformer, query_tokens = Blip2Base.init_Qformer(
            preset.num_query_token, vision_width, preset.cross_attention_freq
        )
        qformer.resize_token_embeddings(vocab_size)
    else:
        config = BertConfig.from_dict(qformer_config(preset, vision_width, vocab_size))
        qformer = BertLMHeadModel(config)
        query_tokens = nn.Parameter(torch.zeros(1, preset.num_query_token, config.hidden_size))
        query_tokens.data.normal_(mean=0.0, std=config.initializer_range)
    # As BLIP-2: the query feed-forward starts as a copy of the text feed-forward.
    state = qformer.state_dict()
    for name, param in qformer.named_parameters():
        if "_query" in name:
            param.data.copy_(state[name.replace("_query", "")])
    # SPRC never uses the MLM head: drop it (its keys are ignored when loading checkpoints).
    qformer.cls = None
    return qformer, query_tokens


def qformer_config(preset: ModelPreset, vision_width: int, vocab_size: int) -> dict:
    """BertConfig of a randomly initialised Q-Former: BERT's defaults, the preset's sizes."""
    return {
        "vocab_size": vocab_size,
        "hidden_act": "gelu",
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "position_embedding_type": "absolute",
        **preset.qformer,
        "encoder_width": vision_width,
        "add_cross_attention": True,
        "cross_attention_freq": preset.cross_attention_freq,
        "query_length": preset.num_query_token,
    }
