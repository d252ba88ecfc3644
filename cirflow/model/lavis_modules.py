"""The LAVIS names cirflow uses, imported in one place (stand-in: plain LAVIS imports)."""

from lavis.common.dist_utils import download_cached_file
from lavis.common.utils import is_url
from lavis.models import clip_vit, eva_vit
from lavis.models.blip2_models.blip2 import Blip2Base, LayerNorm, disabled_train
from lavis.models.blip2_models.Qformer import BertConfig, BertLMHeadModel
from lavis.models.eva_vit import VisionTransformer, convert_weights_to_fp16

__all__ = [
    "BertConfig",
    "BertLMHeadModel",
    "Blip2Base",
    "LayerNorm",
    "VisionTransformer",
    "clip_vit",
    "convert_weights_to_fp16",
    "disabled_train",
    "download_cached_file",
    "eva_vit",
    "is_url",
]
