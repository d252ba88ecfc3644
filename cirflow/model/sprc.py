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

`token_loss` — region supervision that never changes what retrieval scores: L_itc and L_rtc over
K only, as the control, + loss_region · L_region over the target boxes' region tokens R (as in
`tokens`). Its gradients reach the Q-Former, `vision_proj` and the query path q; evaluation and
the submission score global tokens only, so no box file is read there and no gallery image gets
more ways to outscore the target.

`gated` — `tokens` with a learned gate g = clamp(region_gate, 0, 1) on the region tokens' part (a
straight-through clamp, see `gate`):

    s(i, j)  = s_K + g · τ · softplus((s_R − s_K) / τ)        (`cirflow.model.scores`, τ = 0.05)
               s_K = max_k ⟨q_i, K_{j,k}⟩, s_R = max_{m real} ⟨q_i, R_{j,m}⟩

region_gate starts at 0, so the model scores exactly as the control at step 0; at g = 1 the
score is `tokens`' union, smoothed. L_region as in `tokens`; the evaluation scores galleries
with the same g.

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
This module holds the model and its equations; building it from a config and loading weight
files is `cirflow.model.factory`'s job, building the LAVIS parts `cirflow.model.lavis_parts`'.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cirflow.data.captions import blip_captions
from cirflow.data.tables import Batch
from cirflow.errors import CirflowError
from cirflow.model.config import ModelConfig, RegionMode
from cirflow.model.lavis_modules import Blip2Base, disabled_train
from cirflow.model.lavis_parts import build_qformer, build_tokenizer, build_vision_encoder
from cirflow.model.presets import ModelPreset
from cirflow.model.scores import with_regions

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
    gate: torch.Tensor | None = None,
) -> torch.Tensor:
    """s(i, j) = max_{c ∈ C_j} ⟨q_i, c⟩ with C_j = K_j ∪ {R_{j,m} : m real}: (Q, C).

    `global_tokens` (C, nq, D) = K, `region` (C, M, D) = R, `valid` (C, M). The max over K is
    computed exactly as without region tokens, then raised by the region tokens' max where an
    image has boxes (padding slots are -inf): an image without boxes scores exactly as with
    its global tokens only. With `gate` g ∈ [0, 1] (mode gated) the region tokens lift the
    score only that far (`cirflow.model.scores`): g = 0 is s_K exactly.
    """
    sim = torch.einsum("id,jkd->ijk", q, global_tokens).amax(dim=-1)
    if region is None or region.shape[1] == 0 or not bool(valid.any()):
        return sim
    by_region = torch.einsum("id,jmd->ijm", q, region)
    by_region = by_region.masked_fill(~valid[None], float("-inf")).amax(dim=-1)
    return with_regions(sim, by_region, gate)


def _pad_slots(x: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad dimension 1 of `x` (boxes, masks or tokens) to `width` slots."""
    if x.shape[1] >= width:
        return x[:, :width]
    pad = x.new_zeros((x.shape[0], width - x.shape[1], *x.shape[2:]))
    return torch.cat([x, pad], dim=1)


class SPRC(Blip2Base):
    """Blip2QformerCirAlignPrompt, written from the equations above, with random weights
    (`cirflow.model.factory.build_model` loads the preset's files).

    Args:
        preset: the backbone (see `cirflow.model.presets`).
        region_mode: what boxes do (docs/design.md §6). `aux` adds `region_proj` (the region
            loss); `token_loss` trains on the target boxes' region tokens and scores global
            tokens only; `tokens` makes boxes given to `forward` / `gallery_tokens` add region
            tokens to the candidate sets (no new weights); `gated` does so through a learned
            gate `region_gate`, 0 at init (the scores are then exactly the control's).
        max_region_tokens: the modes with region tokens: the cap on boxes per image the boxes
            were loaded with (kept here so that an evaluation loads the gallery's boxes the way
            training did).
    """

    def __init__(
        self,
        preset: ModelPreset,
        region_mode: str | RegionMode = RegionMode.NONE,
        max_region_tokens: int | None = None,
    ):
        super().__init__()
        self.preset = preset
        self.region_mode = RegionMode(region_mode)
        tokens = self.region_mode.has_region_tokens
        self.max_region_tokens = max_region_tokens if tokens else None
        self.use_amp = False  # set by the trainer/evaluator (CUDA only)

        self.tokenizer = build_tokenizer(preset)
        self.visual_encoder, self.ln_vision = build_vision_encoder(preset)
        self.freeze_vit = preset.freeze_vit
        if preset.freeze_vit:
            for param in self.visual_encoder.parameters():
                param.requires_grad = False
            self.visual_encoder = self.visual_encoder.eval()
            self.visual_encoder.train = disabled_train
        self.Qformer, self.query_tokens = build_qformer(
            preset, self.visual_encoder.num_features, len(self.tokenizer)
        )
        hidden = self.Qformer.config.hidden_size
        self.vision_proj = nn.Linear(hidden, preset.embed_dim)
        self.text_proj = nn.Linear(hidden, preset.embed_dim)
        self.temp = nn.Parameter(0.07 * torch.ones([]))
        self.prompt_tokens = nn.Parameter(torch.zeros(1, preset.num_query_token, hidden))
        self.prompt_tokens.data.normal_(mean=0.0, std=self.Qformer.config.initializer_range)
        self.max_txt_len = preset.max_txt_len
        if self.region_mode is RegionMode.AUX:
            # Drawn from a fork of the RNG: the stream training continues with (dropout) is the
            # same whatever the region mode, so stage 2 and its control start alike.
            with torch.random.fork_rng(devices=[]):
                self.region_proj = nn.Linear(self.visual_encoder.num_features, preset.embed_dim)
        if self.region_mode is RegionMode.GATED:
            # 0: the scores start exactly as the control's (no random draw either).
            self.region_gate = nn.Parameter(torch.zeros(()))
        if self.region_mode.uses_boxes:
            # L_region's own temperature, at BLIP-2's initial 0.07: at stage 1's τ (≈ 0.006 on
            # the demo) its first, misaligned region scores gave a cross-entropy of ≈ 12 whose
            # gradients swamped L_itc in the shared Q-Former (docs/design.md §6).
            self.region_temp = nn.Parameter(0.07 * torch.ones([]))

    @property
    def config(self) -> ModelConfig:
        """What this model is (what a checkpoint stores to rebuild it)."""
        return ModelConfig(
            preset=self.preset.name,
            freeze_vit=self.preset.freeze_vit,
            vit_precision=self.preset.vit_precision,
            weights=self.preset.vit_weights,
            region_mode=self.region_mode,
            max_region_tokens=self.max_region_tokens,
        )

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
            hidden = self._text_only(*self._compose_inputs(prompt, input_ids, attention_mask))
            return self._text_readout(hidden[:, prompt.shape[1], :])

    def prompt_text_query(self, input_ids, attention_mask) -> torch.Tensor:
        """u = norm(text_proj(QFormer([CLS] ⊕ prompt_tokens ⊕ T[1:], no image)[:, 0])).

        As in SPRC's Q-Former (`no_img`), position embeddings run over the whole interleaved
        sequence of nq + L tokens: [CLS] takes position 0, the prompt tokens 1..nq and the words
        T[1:] positions nq+1..nq+L-1 (docs/design.md §5).
        """
        with self.autocast():
            hidden = self._text_only(*self._prompt_text_inputs(input_ids, attention_mask))
            return self._text_readout(hidden[:, 0, :])

    def compose_and_prompt_query(
        self, prompt: torch.Tensor, input_ids, attention_mask
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, u) of `compose` and `prompt_text_query` from one text-only Q-Former pass: both
        sequences are nq + L tokens long, so they stack into one batch of 2B (training runs
        half as many encoder layers; the rows do not interact)."""
        with self.autocast():
            q_emb, q_mask = self._compose_inputs(prompt, input_ids, attention_mask)
            u_emb, u_mask = self._prompt_text_inputs(input_ids, attention_mask)
            hidden = self._text_only(torch.cat([q_emb, u_emb]), torch.cat([q_mask, u_mask]))
            bsz, nq = prompt.shape[0], prompt.shape[1]
            return self._text_readout(hidden[:bsz, nq, :]), self._text_readout(hidden[bsz:, 0, :])

    def _text_readout(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(hidden).float(), dim=-1)

    def _compose_inputs(self, prompt, input_ids, attention_mask):
        """The embeddings and mask of P ⊕ T (P without position embeddings, LAVIS's way)."""
        emb = self.Qformer.bert.embeddings(input_ids=input_ids, query_embeds=prompt)
        prompt_atts = torch.ones(
            prompt.shape[:-1], dtype=attention_mask.dtype, device=prompt.device
        )
        return emb, torch.cat([prompt_atts, attention_mask], dim=1)

    def _prompt_text_inputs(self, input_ids, attention_mask):
        """The embeddings and mask of [CLS] ⊕ prompt_tokens ⊕ T[1:], positions 0..nq+L-1."""
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
        return x, mask

    def query_features(self, ref_images, input_ids, attention_mask) -> torch.Tensor:
        """Composed query q for a batch of (reference image, caption)."""
        prompt = self.fusion_prompt(self.image_tokens(ref_images), input_ids, attention_mask)
        return self.compose(prompt, input_ids, attention_mask)

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
        return contrastive_loss(sim[keep][:, keep], self.region_temperature(), kept_t, kept_r)

    # ------------------------------------------------------------------------------ losses
    def temperature(self) -> torch.Tensor:
        return self.temp.clamp(min=1e-3, max=0.5)

    def region_temperature(self) -> torch.Tensor:
        """L_region's τ, apart from the retrieval losses' (same clamp)."""
        return self.region_temp.clamp(min=1e-3, max=0.5)

    def gate(self) -> torch.Tensor | None:
        """Mode gated: the region tokens' part in every score, `region_gate` clamped to [0, 1];
        else None. The clamp is straight-through (its gradient is 1 everywhere): torch's own
        gives 0 at the bounds, and the gate starts at 0, where it could then never open."""
        if self.region_mode is not RegionMode.GATED:
            return None
        raw = self.region_gate
        return raw + (raw.clamp(0.0, 1.0) - raw).detach()

    def forward(
        self, batch: Batch | None = None, *, reference_negatives: bool = False, **tensors
    ) -> dict[str, torch.Tensor]:
        """The unweighted losses of one batch: loss_itc, loss_rtc, loss_align[, loss_region].

        `batch`: a `cirflow.data.tables.Batch` on the model's device (`Batch.to`), or its
        tensors as keywords (`Batch.of_tensors`: ref_images, target_images, input_ids,
        attention_mask, and optionally target_ids, reference_ids, boxes, box_valid, ref_boxes,
        ref_box_valid). Image ids mask false negatives out of the softmax (`contrastive_loss`);
        the targets' boxes (input pixels) feed the region loss (`aux`) or the region tokens
        (`token_loss`, `tokens`, `gated`). `reference_negatives`: the batch's reference images
        join the candidates (with their region tokens where the batch has their boxes, in the
        modes that score them).
        """
        b = batch if batch is not None else Batch.of_tensors(**tensors)
        if b.boxes is not None and not self.region_mode.uses_boxes:
            raise CirflowError(
                "boxes given to a model built without region_proj or region tokens "
                "(region mode none)"
            )
        bsz = len(b.input_ids)
        # Stacked passes (one call each where rows do not interact): fewer, larger operations.
        # Targets first, so that with batch_images negatives E is already the candidates' order.
        embeds = self.image_tokens(torch.cat([b.target, b.ref]))
        target_embeds, ref_embeds = embeds.split(bsz)
        # K of the targets (+ the references'): (B or 2B, nq, D).
        k_all = self.target_features(embeds if reference_negatives else target_embeds)
        prompt = self.fusion_prompt(ref_embeds, b.input_ids, b.attention_mask)  # P
        q, u = self.compose_and_prompt_query(prompt, b.input_ids, b.attention_mask)
        cands = self._candidates(b, target_embeds, k_all, ref_embeds, reference_negatives)
        temp = self.temperature()
        sim = union_scores(q, cands.tokens, cands.region, cands.region_valid, self.gate())
        losses = {"loss_itc": contrastive_loss(sim, temp, b.target_ids, b.reference_ids, cands.ids)}
        sim_u = union_scores(u, cands.tokens, cands.region, cands.region_valid, self.gate())
        losses["loss_rtc"] = contrastive_loss(sim_u, temp, b.target_ids, b.reference_ids, cands.ids)
        losses["loss_align"] = F.mse_loss(
            prompt.float().mean(dim=1),
            self.prompt_tokens.detach().float().mean(dim=1).expand(len(q), -1),
        )
        if cands.target_regions is not None:  # L_region over the target boxes' region tokens
            losses["loss_region"] = self.region_contrast(
                q, cands.target_regions, b.box_valid, b.target_ids, b.reference_ids
            )
        elif b.boxes is not None:  # aux
            losses["loss_region"] = self.region_loss(
                q, target_embeds, b.boxes, b.box_valid, b.target_ids, b.reference_ids
            )
        return losses

    def _candidates(
        self, b: Batch, target_embeds, k_all, ref_embeds, reference_negatives: bool
    ) -> Candidates:
        """The columns of L_itc / L_rtc: the targets' K (+ the references' with
        `reference_negatives`: `k_all` holds both, targets first), their image ids, and in mode
        tokens their region tokens."""
        target_feats = k_all[: len(target_embeds)]
        target_regions = ref_regions = None
        with_refs = False
        mode = self.region_mode
        if mode.has_region_tokens and b.boxes is not None:
            with_refs = mode.scores_regions and reference_negatives and b.ref_boxes is not None
            target_regions, ref_regions = self._region_tokens_of_batch(
                target_embeds, b, ref_embeds if with_refs else None
            )
        # token_loss: the region tokens enter L_region only, never a score.
        scored = target_regions if mode.scores_regions else None
        valid = b.box_valid if scored is not None else None
        cands = Candidates(target_feats, b.target_ids, scored, valid, target_regions)
        if not reference_negatives:
            return cands
        # The batch's reference images join the candidates (their K from the same ViT pass that
        # gave P): with img_set batching, more of a set's images are negatives.
        cands.tokens = k_all
        cands.ids = torch.cat([b.target_ids, b.reference_ids])
        if scored is not None:
            # Their region tokens too (none without their boxes: global tokens only).
            width = max(b.boxes.shape[1], b.ref_boxes.shape[1] if with_refs else 0)
            ref_region = ref_regions if with_refs else target_regions[:, :0]
            ref_valid = b.ref_box_valid if with_refs else b.box_valid[:, :0]
            cands.region = torch.cat(
                [_pad_slots(target_regions, width), _pad_slots(ref_region, width)]
            )
            cands.region_valid = torch.cat(
                [_pad_slots(b.box_valid, width), _pad_slots(ref_valid, width)]
            )
        return cands

    def _region_tokens_of_batch(self, target_embeds, b: Batch, ref_embeds=None):
        """(R of the targets, R of the references or None), in one Q-Former call (an image
        that is both a target and a reference computed once, where the ids are known)."""
        if ref_embeds is None:
            return self.region_tokens(target_embeds, b.boxes, b.box_valid, b.target_ids), None
        bsz, width = target_embeds.shape[0], max(b.boxes.shape[1], b.ref_boxes.shape[1])
        ids = None
        if b.target_ids is not None and b.reference_ids is not None:
            ids = torch.cat([b.target_ids, b.reference_ids])
        both = self.region_tokens(
            torch.cat([target_embeds, ref_embeds]),
            torch.cat([_pad_slots(b.boxes, width), _pad_slots(b.ref_boxes, width)]),
            torch.cat([_pad_slots(b.box_valid, width), _pad_slots(b.ref_box_valid, width)]),
            ids,
        )
        return both[:bsz, : b.boxes.shape[1]], both[bsz:, : b.ref_boxes.shape[1]]


@dataclass
class Candidates:
    """The columns a batch's queries are scored against: global tokens K (C, nq, D), their
    image ids (C,) or None, region tokens R (C, M, D) and their validity (C, M) in mode tokens
    (else None), and the targets' own R (for L_region)."""

    tokens: torch.Tensor
    ids: torch.Tensor | None
    region: torch.Tensor | None
    region_valid: torch.Tensor | None
    target_regions: torch.Tensor | None
