"""SPRC (`blip2_cir_align_prompt`) on LAVIS components, with the optional region head of stage 2.

Notation (docs/design.md §5, §6): T is the tokenised caption, E_r and E_t the ViT tokens of the reference
and target image (after `ln_vision`), nq the number of learnable query tokens, ⟨·,·⟩ the dot
product of L2-normalised vectors and τ the learnable temperature.

    P   = QFormer(queries ⊕ T, cross-attending E_r)[:, :nq]                      sentence-level prompt
    q   = norm(text_proj(QFormer(P ⊕ T, no image)[:, nq]))                       composed query
          (P takes no position embeddings, the words take 0..L-1: LAVIS's embeddings, as SPRC)
    K_t = norm(vision_proj(QFormer(queries, cross-attending E_t)))               nq target tokens
    s(i, j) = max_k ⟨q_i, K_{t_j,k}⟩                       L_itc   = CE(s / τ, diagonal)
    u   = norm(text_proj(QFormer([CLS] ⊕ prompt_tokens ⊕ T[1:], no image)[:, 0]))
          (positions 0..nq+L-1 over that whole sequence: the prompt tokens take 1..nq)
                                                           L_rtc   = CE(max_k ⟨u_i, K_{t_j,k}⟩ / τ, diagonal)
    L_align = MSE(mean_k P_k, stopgrad(mean_k prompt_tokens_k))

Stage 2 (docs/design.md §6; `train.stage2.region.mode`) is one of three modes. Boxes arrive in
input pixels of the S×S model input, (B, M, 4) with a (B, M) validity mask.

`none` — the control: the stage-1 loss only (no boxes, no region head).

`aux` — the region term of the original scripts (see `region_loss`):

    r_{j,m} = norm(region_proj(ROIAlign(patch grid of E_t[j], box m of target j)))
    s_reg(i, j) = max_m ⟨q_i, r_{j,m}⟩            L_region = CE(s_reg / τ, diagonal) over the
                                                  rows/columns whose targets have ≥ 1 box (0 if none)

`tokens` — region-aware target tokens that retrieval itself uses (see `region_tokens`,
`union_scores`). With G the patch grid and patch (r, c) centred at ((c+½)·S/G, (r+½)·S/G):

    A_{j,m}  = {CLS} ∪ {patch (r, c) whose centre lies in box m: x1 ≤ x ≤ x2, y1 ≤ y ≤ y2}
               (a box holding no patch centre takes the patch under its own centre)
    R_{j,m}  = norm(vision_proj(mean_k QFormer(queries, cross-attending E_j only at A_{j,m})_k))
    C_j      = K_j ∪ {R_{j,m} : m a real box of image j}
    s(i, j)  = max_{c ∈ C_j} ⟨q_i, c⟩        in L_itc; L_rtc takes u_i; the reference images of
                                             batch_images negatives have their own C; evaluation
                                             and the submission score galleries the same way
    L_region = CE(max_m ⟨q_i, R_{t_j,m}⟩ / τ, diagonal) over the targets with ≥ 1 box (0 if none)

The cross-attention mask is the encoder attention mask of the Q-Former (LAVIS adds
finfo.min to the masked logits), so R_{j,m} depends on no patch outside A_{j,m}. An image
without boxes keeps C_j = K_j: its max over K is computed as in stage 1 and no region slot
(padding slots are -inf) can change it.

"No image" passes do not go through `BertModel.forward` (LAVIS asserts that cross-attention
layers get image tokens whenever query embeddings are given): the embeddings are composed here and
the encoder is called with ``query_length=0``, so every token — prompt tokens included — takes
the text feed-forward and no cross-attention, as SPRC does.

The ViT, `ln_vision`, `Qformer`, `query_tokens`, `vision_proj`, `text_proj`, `temp` and
`prompt_tokens` keep LAVIS/SPRC's attribute names, so published SPRC state dicts load as they are.
"""

from __future__ import annotations

import contextlib
import logging
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from cirflow.data.captions import blip_captions
from cirflow.errors import CirflowError
from cirflow.model.checkpoints import load_weights, summarise_keys
from cirflow.model.lavis_modules import (  # LAVIS's model modules only (see there)
    BertConfig,
    BertLMHeadModel,
    Blip2Base,
    LayerNorm,
    disabled_train,
)
from cirflow.model.lavis_modules import EvaVisionTransformer as VisionTransformer
from cirflow.model.presets import (
    TINY_VOCAB_FILE,
    VIT_WEIGHTS,
    ModelPreset,
    check_weights_available,
)

log = logging.getLogger(__name__)


def contrastive_loss(
    sim: torch.Tensor,
    temp: torch.Tensor,
    target_ids: torch.Tensor | None = None,
    reference_ids: torch.Tensor | None = None,
    column_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """CE(sim / τ, diagonal): row i's positive is column i (sim is (B, C), C ≥ B).

    With image ids, false negatives are masked out:

    * a column holding the same image as row i's target is the right answer too;
    * a column holding row i's reference image: the CIRR protocol removes the reference from
      the query's ranking, so it is not a negative either (it happens when a set's triplets
      share a batch, e.g. A→B and B→A);
    * a column repeating an earlier column's image (it would count twice).

    `column_ids` are the image ids of the columns (default: `target_ids`, the targets).
    """
    logits = sim / temp
    n, c = sim.shape
    labels = torch.arange(n, device=sim.device)
    if target_ids is not None:
        cols = target_ids if column_ids is None else column_ids
        same = cols[None, :] == cols[:, None]
        earlier = torch.ones(c, c, dtype=torch.bool, device=sim.device).tril(-1)
        repeated = (same & earlier).any(dim=1)  # column j repeats some column k < j
        mask = (cols[None, :] == target_ids[:, None]) | repeated[None, :]
        if reference_ids is not None:
            mask |= cols[None, :] == reference_ids[:, None]
        mask[labels, labels] = False
        if bool(mask.any()):
            logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, labels)


def patch_mask(boxes: torch.Tensor, grid: int, image_size: int) -> torch.Tensor:
    """A_{j,m} as a (N, 1 + G*G) bool mask over the ViT tokens (CLS first, patches row-major)
    for boxes (N, 4) in input pixels: CLS, and every patch (r, c) whose centre
    ((c + ½)·S/G, (r + ½)·S/G) lies in the box (edges included). A box holding no patch centre
    (smaller than a patch) takes the patch under its own centre."""
    step = image_size / grid
    centres = (torch.arange(grid, device=boxes.device, dtype=torch.float32) + 0.5) * step
    x1, y1, x2, y2 = boxes.float().unbind(-1)
    cols = (centres >= x1[:, None]) & (centres <= x2[:, None])  # (N, G)
    rows = (centres >= y1[:, None]) & (centres <= y2[:, None])
    inside = rows[:, :, None] & cols[:, None, :]  # (N, G rows, G cols)
    own_c = ((x1 + x2) / 2 / step).floor().clamp(0, grid - 1).long()
    own_r = ((y1 + y2) / 2 / step).floor().clamp(0, grid - 1).long()
    own = F.one_hot(own_r, grid).bool()[:, :, None] & F.one_hot(own_c, grid).bool()[:, None, :]
    empty = ~inside.flatten(1).any(dim=1)
    inside = torch.where(empty[:, None, None], own, inside)
    cls = torch.ones(len(boxes), 1, dtype=torch.bool, device=boxes.device)
    return torch.cat([cls, inside.flatten(1)], dim=1)


def union_scores(
    q: torch.Tensor,
    global_tokens: torch.Tensor,
    region: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """s(i, j) = max_{c ∈ C_j} ⟨q_i, c⟩ with C_j = K_j ∪ {R_{j,m} : m real}: (Q, C).

    `global_tokens` (C, nq, D) = K, `region` (C, M, D) = R, `valid` (C, M). The max over K is
    computed exactly as without region tokens, then raised by the region tokens' max where an
    image has boxes (padding slots are -inf): an image without boxes scores exactly as with
    its global tokens only.
    """
    sim = torch.einsum("id,jkd->ijk", q, global_tokens).amax(dim=-1)
    if region is None or region.shape[1] == 0 or not bool(valid.any()):
        return sim
    by_region = torch.einsum("id,jmd->ijm", q, region)
    by_region = by_region.masked_fill(~valid[None], float("-inf")).amax(dim=-1)
    return torch.maximum(sim, by_region)


def _pad_slots(x: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad dimension 1 of `x` (boxes, masks or tokens) to `width` slots."""
    if x.shape[1] >= width:
        return x[:, :width]
    pad = x.new_zeros((x.shape[0], width - x.shape[1], *x.shape[2:]))
    return torch.cat([x, pad], dim=1)


def load_vit_weights(vit: nn.Module, path: str) -> None:
    """A tiny ViT's weights from a BLIP-2-layout file ({"model": state_dict}, `visual_encoder.*`).

    Every ViT weight must be in the file and match: a frozen ViT is never trained afterwards, so
    a silently missing block would stay random for good.
    """
    obj = torch.load(path, map_location="cpu", weights_only=True)
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


def _local_file(url_or_path: str) -> str:
    """A LAVIS URL through LAVIS's download cache ($TORCH_HOME/hub/checkpoints), or a path."""
    from cirflow.model.lavis_modules import download_cached_file, is_url

    if is_url(url_or_path):
        return download_cached_file(url_or_path, check_hash=False, progress=True)
    return url_or_path


def load_vit_file(vit: nn.Module, url_or_path: str, preset: ModelPreset) -> None:
    """Load a LAVIS ViT file (eva_vit_g.pth, clip_vit_L.pth) into `vit`: every weight of the
    built ViT must be in the file (a CirflowError names the missing ones). The file's blocks
    beyond the built depth are not used (BLIP-2 drops the ViT's last layer) and are logged."""
    path = _local_file(url_or_path)
    state = torch.load(path, map_location="cpu", weights_only=False)  # LAVIS's own files
    if not isinstance(state, dict):
        raise CirflowError(f"{url_or_path}: expected a ViT state dict, got {type(state).__name__}")
    if preset.vit_model.startswith("eva"):
        from cirflow.model.lavis_modules import eva_interpolate_pos_embed as interpolate_pos_embed
    else:
        from cirflow.model.lavis_modules import clip_interpolate_pos_embed as interpolate_pos_embed
    interpolate_pos_embed(vit, state)
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


class SPRC(Blip2Base):
    """Blip2QformerCirAlignPrompt, written from the equations above.

    Args:
        preset: the backbone (see `cirflow.model.presets`).
        with_region: add `region_proj` (stage 2, mode `aux`: the region loss).
        load_pretrained: load the preset's BLIP-2 weights (pretrain presets). Pass False when a
            checkpoint holding every trainable weight is loaded next (evaluation).
        region_tokens: stage 2, mode `tokens`: boxes given to `forward` / `gallery_features`
            add region tokens to the candidate sets (no new weights).
        max_region_tokens: the cap on boxes per image the boxes were loaded with (kept here so
            that an evaluation loads the gallery's boxes the way training did).
    """

    def __init__(
        self,
        preset: ModelPreset,
        with_region: bool = False,
        load_pretrained: bool = True,
        region_tokens: bool = False,
        max_region_tokens: int | None = None,
    ):
        super().__init__()
        check_weights_available(preset)
        self.preset = preset
        self.with_region = with_region
        self.use_region_tokens = region_tokens
        self.max_region_tokens = max_region_tokens
        self.use_amp = False  # set by the trainer/evaluator (CUDA only)

        self.tokenizer = self.build_tokenizer(preset)
        self.visual_encoder, self.ln_vision = self.build_vision_encoder(preset)
        self.freeze_vit = preset.freeze_vit
        if preset.freeze_vit:
            for param in self.visual_encoder.parameters():
                param.requires_grad = False
            self.visual_encoder = self.visual_encoder.eval()
            self.visual_encoder.train = disabled_train
        self.Qformer, self.query_tokens = self.build_qformer(
            preset, self.visual_encoder.num_features, len(self.tokenizer)
        )
        hidden = self.Qformer.config.hidden_size
        self.vision_proj = nn.Linear(hidden, preset.embed_dim)
        self.text_proj = nn.Linear(hidden, preset.embed_dim)
        self.temp = nn.Parameter(0.07 * torch.ones([]))
        self.prompt_tokens = nn.Parameter(torch.zeros(1, preset.num_query_token, hidden))
        self.prompt_tokens.data.normal_(mean=0.0, std=self.Qformer.config.initializer_range)
        self.max_txt_len = preset.max_txt_len
        if with_region:
            # Drawn from a fork of the RNG: the stream training continues with (dropout) is the
            # same whatever the region mode, so stage 2 and its control start alike.
            with torch.random.fork_rng(devices=[]):
                self.region_proj = nn.Linear(self.visual_encoder.num_features, preset.embed_dim)
        if load_pretrained and preset.pretrained:
            self.load_blip2_weights(preset.pretrained)

    # ------------------------------------------------------------------ construction (LAVIS parts)
    @staticmethod
    def build_tokenizer(preset: ModelPreset):
        if preset.vocab == "bert-base-uncased":
            return Blip2Base.init_tokenizer()  # bert-base-uncased + [DEC] as bos token
        from transformers import BertTokenizer

        vocab = TINY_VOCAB_FILE if preset.vocab == "tiny" else preset.vocab
        tokenizer = BertTokenizer(vocab_file=str(vocab), do_lower_case=True)
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
        return tokenizer

    @staticmethod
    def build_vit(preset: ModelPreset) -> nn.Module:
        """The preset's ViT architecture with random weights (LAVIS classes at the preset's sizes).

        eva_*: lavis.models.eva_vit.VisionTransformer, as LAVIS's create_eva_vit_g builds it.
        clip_L: lavis.models.clip_vit.VisionTransformer with `vit_depth` residual blocks. That
        class builds one block fewer than its `layers` argument in LAVIS 1.0.2 (not in SPRC's
        bundled copy), so the count is measured on a small probe, and checked after building.
        """
        if preset.vit_model.startswith("eva"):
            return VisionTransformer(
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
        from cirflow.model.lavis_modules import ClipVisionTransformer

        def clip_vit(layers: int, width: int, heads: int, size: int, checkpointing: bool):
            return ClipVisionTransformer(
                input_resolution=size,
                patch_size=preset.vit_patch_size,
                width=width,
                layers=layers,
                heads=heads,
                use_grad_checkpointing=checkpointing,
            )

        probe = clip_vit(3, 8, 1, preset.vit_patch_size, False)
        dropped = 3 - len(probe.transformer.resblocks)  # 1 in LAVIS 1.0.2, 0 in SPRC's copy
        vit = clip_vit(
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

    @classmethod
    def build_vision_encoder(cls, preset: ModelPreset):
        """(ViT, ln_vision): the architecture, the preset's ViT file (unless random), fp16 if asked."""
        from cirflow.model.lavis_modules import convert_weights_to_fp16

        vit = cls.build_vit(preset)
        if preset.vit_model in VIT_WEIGHTS and not preset.random_init:
            load_vit_file(vit, VIT_WEIGHTS[preset.vit_model], preset)
        elif preset.vit_weights:  # tiny: the demo's first stage
            load_vit_weights(vit, preset.vit_weights)
        if preset.vit_precision == "fp16" and preset.vit_model != "eva_tiny":
            # LAVIS's conversion (Linear/Conv weights; they run under autocast). The tiny ViT
            # stays fp32 whatever vit_precision says, as it always has.
            convert_weights_to_fp16(vit)
        return vit, LayerNorm(vit.num_features)

    @staticmethod
    def build_qformer(preset: ModelPreset, vision_width: int, vocab_size: int):
        if not preset.qformer:  # LAVIS's BLIP-2 Q-Former: bert-base-uncased weights
            qformer, query_tokens = Blip2Base.init_Qformer(
                preset.num_query_token, vision_width, preset.cross_attention_freq
            )
            qformer.resize_token_embeddings(vocab_size)
        else:
            cfg = {
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
            config = BertConfig.from_dict(cfg)
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

    def load_blip2_weights(self, url_or_path: str) -> None:
        """Load a BLIP-2 file (``{"model": state_dict}``), checking its keys against this model:
        only the prompt tokens, the region head and the ViT (it has its own file) may be absent;
        itm_head / Qformer.cls are known and ignored; anything else is an error
        (`cirflow.model.checkpoints.load_weights`)."""
        path = _local_file(url_or_path)
        # The official BLIP-2 files are trusted pickles (they hold more than tensors).
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
            raise CirflowError(f"{url_or_path}: not a BLIP-2 checkpoint ({{'model': state_dict}})")
        load_weights(self, checkpoint["model"], str(url_or_path), kind="blip2")
        log.info("loaded BLIP-2 weights from %s", url_or_path)

    def prepare_for_device(self, device: torch.device) -> None:
        """fp16 ViT weights only run on CUDA: on CPU they are turned back into fp32."""
        if device.type != "cuda" and self.vit_is_fp16():
            log.info("CPU: running the ViT in fp32 instead of the preset's fp16")
            self.visual_encoder.float()

    # ------------------------------------------------------------------------------- helpers
    def autocast(self):
        if self.use_amp and self.query_tokens.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def tokenize(self, captions: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of `captions` after SPRC's blip_caption preprocessing."""
        tok = self.tokenizer(
            blip_captions(captions),
            padding="longest",
            truncation=True,
            max_length=self.max_txt_len,
            return_tensors="pt",
        )
        device = device or self.query_tokens.device
        return tok.input_ids.to(device), tok.attention_mask.to(device)

    def trainable_named_parameters(self):
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    # ------------------------------------------------------------------------------ features
    def vit_is_fp16(self) -> bool:
        return any(p.dtype == torch.float16 for p in self.visual_encoder.parameters())

    def vit_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """ViT(images) before `ln_vision` (what the image-features stage stores), fp32."""
        return self._vit(images).float()

    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """E = ln_vision(ViT(images)): (B, 1 + G*G, D_vision), CLS first, patches row-major.

        `images` are either normalised pixels (B, 3, S, S) or cached ViT tokens (B, T, D) from
        the image-features stage, which only need `ln_vision` (it trains; the ViT is frozen).
        A frozen ViT runs without autograd; fp16 ViT weights (LAVIS converts its Linear/Conv
        layers) always run under CUDA autocast, as in LAVIS.
        """
        if images.dim() == 3:
            with self.autocast():
                return self.ln_vision(images.float()).float()
        with self._vit_autocast(images):
            return self.ln_vision(self._vit(images)).float()

    def _vit_autocast(self, images: torch.Tensor):
        if images.device.type == "cuda" and (self.use_amp or self.vit_is_fp16()):
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _vit(self, images: torch.Tensor) -> torch.Tensor:
        with self._vit_autocast(images):
            if self.freeze_vit:
                with torch.no_grad():
                    return self.visual_encoder(images)
            return self.visual_encoder(images)

    def target_features(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """K_t: (B, nq, embed_dim), normalised."""
        with self.autocast():
            query_tokens = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
            atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
            out = self.Qformer.bert(
                query_embeds=query_tokens,
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=atts,
                return_dict=True,
            )
            return F.normalize(self.vision_proj(out.last_hidden_state).float(), dim=-1)

    def multimodal_hidden(self, image_embeds, input_ids, attention_mask) -> torch.Tensor:
        """QFormer(queries ⊕ T, the queries cross-attending E): (B, nq + L, H), the query
        outputs first. Text reaches the image only through the queries."""
        with self.autocast():
            bsz = input_ids.shape[0]
            query_tokens = self.query_tokens.expand(bsz, -1, -1)
            query_atts = torch.ones(
                query_tokens.shape[:-1], dtype=attention_mask.dtype, device=input_ids.device
            )
            img_atts = torch.ones(
                image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device
            )
            return self.Qformer.bert(
                input_ids,
                query_embeds=query_tokens,
                attention_mask=torch.cat([query_atts, attention_mask], dim=1),
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=img_atts,
                return_dict=True,
            ).last_hidden_state

    def fusion_prompt(self, ref_embeds, input_ids, attention_mask) -> torch.Tensor:
        """P: the query outputs of QFormer(queries ⊕ T, cross-attending E_r): (B, nq, H)."""
        return self.multimodal_hidden(ref_embeds, input_ids, attention_mask)[
            :, : self.query_tokens.shape[1], :
        ]

    def _text_only(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The Q-Former encoder without image (query_length=0: text FFN for every token)."""
        bert = self.Qformer.bert
        ext = bert.get_extended_attention_mask(
            attention_mask, embeddings.shape[:-1], embeddings.device, is_decoder=False
        )
        return bert.encoder(
            embeddings, attention_mask=ext, query_length=0, return_dict=True
        ).last_hidden_state

    def compose(self, prompt: torch.Tensor, input_ids, attention_mask) -> torch.Tensor:
        """q = norm(text_proj(QFormer(P ⊕ T, no image)[:, nq])): (B, embed_dim)."""
        with self.autocast():
            nq = prompt.shape[1]
            emb = self.Qformer.bert.embeddings(input_ids=input_ids, query_embeds=prompt)
            prompt_atts = torch.ones(
                prompt.shape[:-1], dtype=attention_mask.dtype, device=prompt.device
            )
            hidden = self._text_only(emb, torch.cat([prompt_atts, attention_mask], dim=1))
            return F.normalize(self.text_proj(hidden[:, nq, :]).float(), dim=-1)

    def prompt_text_query(self, input_ids, attention_mask) -> torch.Tensor:
        """u = norm(text_proj(QFormer([CLS] ⊕ prompt_tokens ⊕ T[1:], no image)[:, 0])).

        As in SPRC's Q-Former (`no_img`), position embeddings run over the whole interleaved
        sequence of nq + L tokens: [CLS] takes position 0, the prompt tokens 1..nq and the words
        T[1:] positions nq+1..nq+L-1 (docs/design.md §5).
        """
        with self.autocast():
            emb = self.Qformer.bert.embeddings
            bsz, length = input_ids.shape
            nq = self.prompt_tokens.shape[1]
            n = nq + length
            if n > emb.position_embeddings.num_embeddings:
                raise CirflowError(
                    f"{nq} prompt tokens + {length} text tokens exceed the Q-Former's "
                    f"{emb.position_embeddings.num_embeddings} position embeddings"
                )
            words = emb.word_embeddings(input_ids)
            prompt = self.prompt_tokens.expand(bsz, -1, -1).to(words.dtype)
            x = torch.cat([words[:, :1], prompt, words[:, 1:]], dim=1)
            x = x + emb.position_embeddings(emb.position_ids[:, :n])
            x = emb.dropout(emb.LayerNorm(x))
            prompt_atts = torch.ones(prompt.shape[:-1], dtype=attention_mask.dtype, device=x.device)
            mask = torch.cat([attention_mask[:, :1], prompt_atts, attention_mask[:, 1:]], dim=1)
            hidden = self._text_only(x, mask)
            return F.normalize(self.text_proj(hidden[:, 0, :]).float(), dim=-1)

    def query_features(self, ref_images, input_ids, attention_mask) -> torch.Tensor:
        """Composed query q for a batch of (reference image, caption)."""
        prompt = self.fusion_prompt(self.image_tokens(ref_images), input_ids, attention_mask)
        return self.compose(prompt, input_ids, attention_mask)

    @property
    def region_mode(self) -> str:
        """`tokens`, `aux` or `none`: what boxes do in this model (docs/design.md §6)."""
        if self.use_region_tokens:
            return "tokens"
        return "aux" if self.with_region else "none"

    def gallery_features(self, images) -> torch.Tensor:
        return self.target_features(self.image_tokens(images))

    def gallery_tokens(self, images, boxes, box_valid) -> tuple[torch.Tensor, torch.Tensor]:
        """(K (B, nq, D), R (B, M, D)) of gallery images from one ViT/`ln_vision` pass: their
        global and region tokens (mode `tokens`; rows of padding boxes are zero)."""
        embeds = self.image_tokens(images)
        return self.target_features(embeds), self.region_tokens(embeds, boxes, box_valid)

    # ------------------------------------------------------------------------------- region
    def region_features(
        self, target_embeds: torch.Tensor, boxes: torch.Tensor, box_valid: torch.Tensor
    ):
        """r_{j,m}: ROI-aligned target patch features inside each box, projected and normalised.

        `boxes` (B, M, 4) are in input pixels (x1, y1, x2, y2) of the S×S model input, `box_valid`
        (B, M) marks the real ones. Patch tokens (CLS dropped) form the G×G grid, so a pixel x
        lies at grid coordinate x * G / S (`spatial_scale`); `aligned=True` puts pixel centres at
        half-integers, matching how the patch embedding tiles the image. Returns (B, M, embed_dim)
        (rows of padding boxes are zero).
        """
        from torchvision.ops import roi_align

        bsz, n_tokens, dim = target_embeds.shape
        grid = self.preset.vit_grid
        if n_tokens != 1 + grid * grid:
            raise CirflowError(f"ViT gave {n_tokens} tokens, expected 1 + {grid}x{grid}")
        patches = target_embeds[:, 1:, :].reshape(bsz, grid, grid, dim).permute(0, 3, 1, 2)
        m = boxes.shape[1]
        out = target_embeds.new_zeros(bsz, m, self.preset.embed_dim)
        if m == 0 or not bool(box_valid.any()):
            return out
        idx = box_valid.nonzero(as_tuple=False)  # (N, 2): batch index, box slot
        rois = torch.cat(
            [idx[:, :1].to(patches.dtype), boxes[idx[:, 0], idx[:, 1]].to(patches.dtype)], dim=1
        )
        pooled = roi_align(
            patches.float(),
            rois.float(),
            output_size=1,
            spatial_scale=grid / self.preset.image_size,
            sampling_ratio=-1,
            aligned=True,
        ).flatten(1)
        with self.autocast():
            feats = F.normalize(self.region_proj(pooled).float(), dim=-1)
        out = out.index_put((idx[:, 0], idx[:, 1]), feats)
        return out

    def region_loss(
        self, q, target_embeds, boxes, box_valid, target_ids=None, reference_ids=None
    ) -> torch.Tensor:
        """L_region = CE(s_reg / τ, diagonal) over the batch entries whose targets have boxes."""
        if not bool(box_valid.any()):
            return q.new_zeros(())
        r = self.region_features(target_embeds, boxes, box_valid)  # (B, M, D)
        return self.region_contrast(q, r, box_valid, target_ids, reference_ids)

    def region_tokens(
        self,
        image_embeds: torch.Tensor,
        boxes: torch.Tensor,
        box_valid: torch.Tensor,
        image_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """R_{j,m}: the query tokens cross-attend only to CLS and the patches inside box m.

        `image_embeds` (B, 1 + G*G, D_vision) = E (after `ln_vision`), `boxes` (B, M, 4) in
        input pixels, `box_valid` (B, M). Every real box is one more Q-Former pass (all of them
        in one batch); the query outputs are averaged, projected by `vision_proj` and
        normalised. Returns (B, M, embed_dim), zero rows for padding boxes.

        Cost (the Q-Former runs once per box): the cross-attention is given only the tokens of
        A_{j,m} (gathered, padded to the largest A of the batch, padding masked) — the same
        attention as the full token set under the mask, where the other tokens get weight 0 —
        and with `image_ids` (B,) a box of an image that occurs twice (a target that is also
        a reference) is computed once.
        """
        bsz, n_tokens, _ = image_embeds.shape
        grid = self.preset.vit_grid
        if n_tokens != 1 + grid * grid:
            raise CirflowError(f"ViT gave {n_tokens} tokens, expected 1 + {grid}x{grid}")
        m = boxes.shape[1]
        out = image_embeds.new_zeros(bsz, m, self.preset.embed_dim)
        if m == 0 or not bool(box_valid.any()):
            return out
        idx = box_valid.nonzero(as_tuple=False)  # (N, 2): image, box slot
        run, inverse = idx, None
        if image_ids is not None:  # one pass per distinct (image, box slot)
            key = image_ids[idx[:, 0]].long() * m + idx[:, 1]
            uniq, inverse = torch.unique(key, return_inverse=True)
            pos = torch.arange(len(key), device=key.device)
            first = torch.full((len(uniq),), len(key), dtype=torch.long, device=key.device)
            first = first.scatter_reduce(0, inverse, pos, reduce="amin")
            run = idx[first]
        mask = patch_mask(boxes[run[:, 0], run[:, 1]], grid, self.preset.image_size)  # (n, T)
        counts = mask.sum(dim=1)
        width = int(counts.max())
        # The tokens of A first (in token order), then the rest: keep the first `width`.
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :width]
        encoder = image_embeds[run[:, 0, None], order]  # (n, width, D_vision)
        encoder_mask = torch.arange(width, device=mask.device)[None, :] < counts[:, None]
        with self.autocast():
            queries = self.query_tokens.expand(len(run), -1, -1)
            hidden = self.Qformer.bert(
                query_embeds=queries,
                encoder_hidden_states=encoder,
                encoder_attention_mask=encoder_mask.long(),
                return_dict=True,
            ).last_hidden_state
            feats = F.normalize(self.vision_proj(hidden.mean(dim=1)).float(), dim=-1)
        if inverse is not None:
            feats = feats[inverse]
        return out.index_put((idx[:, 0], idx[:, 1]), feats)

    def region_contrast(self, q, r, box_valid, target_ids=None, reference_ids=None) -> torch.Tensor:
        """CE(max_m ⟨q_i, r_{j,m}⟩ / τ, diagonal) over the entries whose targets have boxes
        (`r` (B, M, D): aux's r or the region tokens R); 0 when no target has a box."""
        has_box = box_valid.any(dim=1)
        if not bool(has_box.any()):
            return q.new_zeros(())
        sim = torch.einsum("id,jmd->ijm", q, r)
        sim = sim.masked_fill(~box_valid[None, :, :], float("-inf")).amax(dim=-1)  # (B, B)
        keep = has_box.nonzero(as_tuple=True)[0]
        kept_t = target_ids[keep] if target_ids is not None else None
        kept_r = reference_ids[keep] if reference_ids is not None else None
        return contrastive_loss(sim[keep][:, keep], self.temperature(), kept_t, kept_r)

    # ------------------------------------------------------------------------------ losses
    def temperature(self) -> torch.Tensor:
        return self.temp.clamp(min=1e-3, max=0.5)

    def forward(
        self,
        *,
        ref_images: torch.Tensor,
        target_images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        boxes: torch.Tensor | None = None,
        box_valid: torch.Tensor | None = None,
        target_ids: torch.Tensor | None = None,
        reference_ids: torch.Tensor | None = None,
        reference_negatives: bool = False,
        ref_boxes: torch.Tensor | None = None,
        ref_box_valid: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The unweighted losses of one batch: loss_itc, loss_rtc, loss_align[, loss_region].

        Keywords only (the tensors/flags are too many to pass by position). `target_ids`,
        `reference_ids` (optional image ids): false negatives are masked out of the softmax
        (see `contrastive_loss`). `boxes` / `box_valid`: the targets' boxes (input pixels) —
        the region loss (`aux`) or the region tokens (`tokens`); `ref_boxes` /
        `ref_box_valid`: the references' boxes, for their region tokens as candidates
        (`tokens` with `reference_negatives`).
        """
        bsz = ref_images.shape[0]
        temp = self.temperature()
        if boxes is not None and not (self.with_region or self.use_region_tokens):
            raise CirflowError(
                "boxes given to a model built without region_proj or region tokens "
                "(region mode none)"
            )
        tokens = self.use_region_tokens and boxes is not None

        ref_embeds = self.image_tokens(ref_images)
        target_embeds = self.image_tokens(target_images)
        target_feats = self.target_features(target_embeds)  # (B, nq, D)

        prompt = self.fusion_prompt(ref_embeds, input_ids, attention_mask)  # P
        q = self.compose(prompt, input_ids, attention_mask)
        candidates, column_ids = target_feats, target_ids
        region = region_valid = None
        if tokens:
            with_refs = reference_negatives and ref_boxes is not None
            region_t, region_r = self._region_tokens_of_batch(
                target_embeds,
                boxes,
                box_valid,
                ref_embeds if with_refs else None,
                ref_boxes,
                ref_box_valid,
                target_ids,
                reference_ids,
            )
            region, region_valid = region_t, box_valid
        if reference_negatives:
            # The batch's reference images join the candidates (their K from the same ViT
            # pass that gave P): with img_set batching, more of a set's images are negatives.
            candidates = torch.cat([target_feats, self.target_features(ref_embeds)])
            column_ids = torch.cat([target_ids, reference_ids])
            if tokens:
                # Their region tokens too (none without their boxes: global tokens only).
                width = max(boxes.shape[1], ref_boxes.shape[1] if with_refs else 0)
                ref_region = region_r if with_refs else region_t[:, :0]
                ref_valid = ref_box_valid if with_refs else box_valid[:, :0]
                region = torch.cat([_pad_slots(region_t, width), _pad_slots(ref_region, width)])
                region_valid = torch.cat(
                    [_pad_slots(box_valid, width), _pad_slots(ref_valid, width)]
                )
        sim = union_scores(q, candidates, region, region_valid)
        losses = {"loss_itc": contrastive_loss(sim, temp, target_ids, reference_ids, column_ids)}

        u = self.prompt_text_query(input_ids, attention_mask)
        sim_u = union_scores(u, candidates, region, region_valid)
        losses["loss_rtc"] = contrastive_loss(sim_u, temp, target_ids, reference_ids, column_ids)

        losses["loss_align"] = F.mse_loss(
            prompt.float().mean(dim=1),
            self.prompt_tokens.detach().float().mean(dim=1).expand(bsz, -1),
        )
        if tokens:
            losses["loss_region"] = self.region_contrast(
                q, region_t, box_valid, target_ids, reference_ids
            )
        elif boxes is not None:
            losses["loss_region"] = self.region_loss(
                q, target_embeds, boxes, box_valid, target_ids, reference_ids
            )
        return losses

    def _region_tokens_of_batch(
        self,
        target_embeds,
        boxes,
        box_valid,
        ref_embeds=None,
        ref_boxes=None,
        ref_valid=None,
        target_ids=None,
        reference_ids=None,
    ):
        """(R of the targets, R of the references or None), in one Q-Former call (an image
        that is both a target and a reference computed once, where the ids are known)."""
        if ref_embeds is None:
            return self.region_tokens(target_embeds, boxes, box_valid, target_ids), None
        bsz, width = target_embeds.shape[0], max(boxes.shape[1], ref_boxes.shape[1])
        ids = None
        if target_ids is not None and reference_ids is not None:
            ids = torch.cat([target_ids, reference_ids])
        both = self.region_tokens(
            torch.cat([target_embeds, ref_embeds]),
            torch.cat([_pad_slots(boxes, width), _pad_slots(ref_boxes, width)]),
            torch.cat([_pad_slots(box_valid, width), _pad_slots(ref_valid, width)]),
            ids,
        )
        return both[:bsz, : boxes.shape[1]], both[bsz:, : ref_boxes.shape[1]]
