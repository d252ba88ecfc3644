"""Scores of composed queries against gallery images: s(i, j) = max_k ⟨q_i, K_{j,k}⟩.

The gallery holds nq normalised tokens per image. With region tokens (docs/design.md §6,
`regions` = (R (N, M, D), valid (N, M))) the candidate set is K_j ∪ {R_{j,m} : m real} and

    s(i, j) = max(max_k ⟨q_i, K_{j,k}⟩, max_{m real} ⟨q_i, R_{j,m}⟩)

where the first term is computed exactly as without region tokens and the second only for the
images that have boxes: an image without boxes scores exactly as with its global tokens only.
With a gate g ∈ [0, 1] (region mode gated) the region tokens only lift s_K that far
(`cirflow.model.scores`, shared with training); the bf16 error bound below holds for it too. The (Q, N·nq) product is never materialised
whole (4,181 × 2,297 × 32 floats would be 1.2 GB): it is computed in blocks of gallery images
sized to stay in cache, each reduced by a max over its tokens right away.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cirflow.model.scores import with_regions

# Gallery images per block: 64 images × 32 tokens = 2,048 columns; measured fastest on 2 CPU cores
# (benchmarks/bench_rank.py).
GALLERY_BLOCK = 64
QUERY_BLOCK = 2048


Regions = tuple[torch.Tensor, torch.Tensor]  # (R (N, M, D), valid (N, M) bool)


@dataclass(frozen=True)
class Gallery:
    """What the queries are ranked against: the gallery's tokens K (N, T, D) or (N, D) and,
    with region tokens, `regions` = (R (N, M, D), valid (N, M)) and their `gate` (mode gated;
    None: the plain union) (module docstring)."""

    tokens: torch.Tensor
    regions: Regions | None = None
    gate: float | None = None


def _with_boxes(regions: Regions | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(indices of the images with ≥ 1 box, their region tokens (n, M, D) with each padding
    slot repeating the image's first real token, so that a plain max over them is the max over
    the real ones), or None when no image has a box."""
    if regions is None:
        return None
    tokens, valid = regions
    if tokens.shape[1] == 0 or not bool(valid.any()):
        return None
    idx = valid.any(dim=1).nonzero(as_tuple=True)[0]
    t, v = tokens[idx], valid[idx]
    first = v.float().argmax(dim=1)  # the first real slot of each image
    filler = t[torch.arange(len(idx), device=t.device), first][:, None, :]
    return idx, torch.where(v[..., None], t, filler)


@torch.no_grad()
def max_token_scores(
    queries: torch.Tensor,
    gallery: torch.Tensor | Gallery,
    gallery_block: int = GALLERY_BLOCK,
    query_block: int = QUERY_BLOCK,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """queries (Q, D), gallery tokens (N, T, D) or (N, D), or a `Gallery` with region tokens
    → scores (Q, N), float32, on queries' device (module docstring).

    `dtype=torch.bfloat16` computes the products in bf16 (see `exact_ranks` for its use).
    """
    gallery = gallery if isinstance(gallery, Gallery) else Gallery(gallery)
    out = _max_over_tokens(queries, gallery.tokens, gallery_block, query_block, dtype)
    with_boxes = _with_boxes(gallery.regions)
    if with_boxes is not None:
        idx, tokens = with_boxes
        idx = idx.to(out.device)
        by_region = _max_over_tokens(queries, tokens, gallery_block, query_block, dtype)
        out[:, idx] = with_regions(out[:, idx], by_region, gallery.gate)
    return out


def _max_over_tokens(queries, gallery, gallery_block, query_block, dtype) -> torch.Tensor:
    """max_k ⟨q_i, G_{j,k}⟩ over every token of `gallery` (N, T, D) or (N, D): (Q, N) float32."""
    if gallery.dim() == 2:
        gallery = gallery[:, None, :]
    n, t, d = gallery.shape
    q = queries.to(dtype)
    g = gallery.to(q.device).to(dtype)
    out = torch.empty((q.shape[0], n), dtype=dtype, device=q.device)
    if dtype == torch.bfloat16 and q.device.type == "cpu":
        # bf16 on CPU: one (Q, D) x (D, N) product per token, max-accumulated in place — about
        # 2x faster than the blocked layout with oneDNN's bf16 kernels (benchmarks/bench_rank.py).
        by_token = g.permute(1, 2, 0).contiguous()  # (T, D, N)
        out = q @ by_token[0]
        for k in range(1, t):
            torch.maximum(out, q @ by_token[k], out=out)
        return out.float()
    if q.device.type == "cuda":  # one shot per query block: the GPU has the memory and bandwidth
        gallery_block = n
    for j in range(0, n, gallery_block):
        block = g[j : j + gallery_block]
        gt = block.reshape(-1, d).t().contiguous()  # (D, b·T)
        for i in range(0, q.shape[0], query_block):
            s = q[i : i + query_block] @ gt
            torch.amax(
                s.view(s.shape[0], block.shape[0], t),
                dim=-1,
                out=out[i : i + query_block, j : j + block.shape[0]],
            )
    return out.float()


# --------------------------------------------------------------------------------------------
# Exact CIRR ranks from a bf16 first pass (CPU)
#
# The recalls need, per query, only how many gallery images score above the target (and only up
# to 50) and the same among the 5 subset members. On a CPU with native bf16 dot products
# (AVX512-BF16 / AMX) the full (Q, N·T) product runs ~2x faster in bf16; its error is bounded,
# so it decides every pair whose score is further than that bound from the target's exact score,
# and only the few pairs inside the band are recomputed in fp32. The ranks are the same as from
# fp32 scores (up to fp32 rounding of near-exact ties, which the fp32 product itself does not
# order reliably).
# --------------------------------------------------------------------------------------------
_BF16_OK: bool | None = None


def bf16_is_fast() -> bool:
    """Whether this CPU has native bf16 matrix products (checked once)."""
    global _BF16_OK
    if _BF16_OK is None:
        try:
            _BF16_OK = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except Exception:  # older builds without the op
            _BF16_OK = False
    return _BF16_OK


def bf16_error_bound(
    queries: torch.Tensor, gallery: torch.Tensor, regions: Regions | None = None
) -> torch.Tensor:
    """|bf16 score − exact score| ≤ bound_i for query i: inputs rounded to bf16 (relative
    2^-8 each), fp32 accumulation, output rounded to bf16 (2^-8 of |score|), max over tokens
    (1-Lipschitz; the max of the global and region maxima too); by Cauchy–Schwarz every term
    is ≤ ‖q_i‖·max‖K‖ (max over region tokens as well)."""
    qn = queries.float().norm(dim=-1)
    kn = gallery.float().norm(dim=-1).max()
    if regions is not None and regions[0].numel():
        kn = torch.maximum(kn, regions[0].float().norm(dim=-1).max().to(kn.device))
    u = 2.0**-8
    return (2 * u + u * u + u + 1e-5) * qn * kn + 1e-6


def pair_scores(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    q_idx: torch.Tensor,
    g_idx: torch.Tensor,
    chunk: int = 2048,
    regions: Regions | None = None,
    gate: float | None = None,
) -> torch.Tensor:
    """Exact fp32 s(q_idx[p], g_idx[p]) for a list of pairs (with `regions`: over K ∪ R,
    `gate` their part)."""
    out = torch.empty(len(q_idx), dtype=torch.float32, device=queries.device)
    g3 = gallery if gallery.dim() == 3 else gallery[:, None, :]
    has_regions = regions is not None and regions[0].shape[1] > 0 and bool(regions[1].any())
    for s in range(0, len(q_idx), chunk):
        qi, gi = q_idx[s : s + chunk], g_idx[s : s + chunk]
        q = queries[qi].float()
        out[s : s + chunk] = torch.einsum("pd,pkd->pk", q, g3[gi].float()).amax(dim=-1)
        if has_regions:
            tokens, valid = regions[0][gi].float(), regions[1][gi]
            by_region = torch.einsum("pd,pmd->pm", q, tokens).masked_fill(~valid, float("-inf"))
            out[s : s + chunk] = with_regions(out[s : s + chunk], by_region.amax(dim=-1), gate)
    return out


@dataclass(frozen=True)
class QueryImages:
    """Each query's images as gallery indices: its reference (Q,), its target (Q,) and its
    img_set members (Q, k), −1 where a query has fewer."""

    reference: torch.Tensor
    target: torch.Tensor
    members: torch.Tensor


@torch.no_grad()
def exact_ranks(
    queries: torch.Tensor,
    gallery: Gallery,
    images: QueryImages,
    max_rank: int = 50,
    approx: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rank, subset_rank) as `recall.recall_ranks` computes them from fp32 scores.

    Full-gallery ranks ≥ `max_rank` are only lower bounds (R@K needs K ≤ max_rank); subset
    ranks are exact. `approx` None: use the bf16 pass when the CPU has native bf16.
    """
    rank, subset_rank, _ = ranks_and_top(queries, gallery, images, 0, max_rank, approx)
    return rank, subset_rank


@torch.no_grad()
def ranks_and_top(
    queries: torch.Tensor,
    gallery: Gallery,
    images: QueryImages,
    top_k: int,
    max_rank: int = 50,
    approx: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`exact_ranks` plus, for `top_k` > 0, each query's `top_k` best gallery indices (Q, k),
    reference excluded, from the same scores and in the order the ranks count (exact fp32
    score, ties by gallery order): a target of rank r < top_k sits at position r. None for
    `top_k` 0."""
    use_bf16 = approx if approx is not None else (queries.device.type == "cpu" and bf16_is_fast())
    if not use_bf16:
        return _fp32_ranks_and_top(queries, gallery, images, top_k)
    first = _Bf16Pass(queries, gallery, images.target)
    rank = first.gallery_ranks(images, max_rank)
    subset_rank = first.subset_ranks(images)
    # Last: it overwrites the references' bf16 scores, which the ranks above read.
    top = first.top(images.reference, top_k) if top_k else None
    return rank, subset_rank, top


def _fp32_ranks_and_top(
    queries: torch.Tensor, gallery: Gallery, images: QueryImages, top_k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`ranks_and_top` from the full fp32 score matrix."""
    from cirflow.evaluate.recall import recall_ranks, stable_topk

    scores = max_token_scores(queries, gallery)
    rank, subset_rank = recall_ranks(scores, images.reference, images.target, images.members)
    top = None
    if top_k > 0:
        rows = torch.arange(queries.shape[0], device=queries.device)
        scores[rows, images.reference] = float("-inf")  # the ranks above are already taken
        top = stable_topk(scores, min(top_k, scores.shape[1] - 1))
    return rank, subset_rank, top


class _Bf16Pass:
    """bf16 scores of every (query, gallery image) pair with their error bound `eps`, and the
    exact fp32 score of each query's target: a pair further than `eps` from the target's score
    is decided by its bf16 score, the few inside the band are rescored in fp32."""

    def __init__(self, queries: torch.Tensor, gallery: Gallery, target: torch.Tensor):
        self.q = queries.float()
        self.gallery, self.target = gallery, target
        self.rows = torch.arange(queries.shape[0], device=queries.device)
        tokens, regions = gallery.tokens, gallery.regions
        self.approx_scores = max_token_scores(self.q, gallery, dtype=torch.bfloat16)
        self.eps = bf16_error_bound(self.q, tokens, regions)[:, None]
        self.s_t = self._exact(self.rows, target)[:, None]

    def _exact(self, qi: torch.Tensor, gi: torch.Tensor) -> torch.Tensor:
        g = self.gallery
        return pair_scores(self.q, g.tokens, qi, gi, regions=g.regions, gate=g.gate)

    def _ahead_of_target(self, qi: torch.Tensor, gi: torch.Tensor) -> torch.Tensor:
        """Whether image gi[p] ranks before query qi[p]'s target by exact fp32 score (ties by
        gallery order)."""
        s = self._exact(qi, gi)
        st = self.s_t[qi, 0]
        return (s > st) | ((s == st) & (gi < self.target[qi]))

    def gallery_ranks(self, images: QueryImages, max_rank: int) -> torch.Tensor:
        """Images ahead of the target in the whole gallery, reference and target excluded;
        the band is only resolved below `max_rank`."""
        rows, reference, target = self.rows, images.reference, images.target
        ahead = self.approx_scores > self.s_t + self.eps
        maybe = self.approx_scores >= self.s_t - self.eps
        ahead[rows, reference] = False
        maybe[rows, reference] = False
        ahead[rows, target] = False
        maybe[rows, target] = False
        rank = ahead.sum(dim=1)
        band = maybe & ~ahead
        band &= (rank < max_rank)[:, None]
        qi, gi = band.nonzero(as_tuple=True)
        if len(qi):
            rank.index_add_(0, qi, self._ahead_of_target(qi, gi).long())
        return rank

    def subset_ranks(self, images: QueryImages) -> torch.Tensor:
        """Members ahead of the target in the query's img_set (reference, target and padding
        excluded): the same decision, on the members' columns."""
        members = images.members
        safe = members.clamp(min=0)
        valid = (
            (members >= 0)
            & (members != images.reference[:, None])
            & (members != images.target[:, None])
        )
        m_approx = self.approx_scores.gather(1, safe)
        m_ahead = (m_approx > self.s_t + self.eps) & valid
        m_band = (m_approx >= self.s_t - self.eps) & ~m_ahead & valid
        bi, bj = m_band.nonzero(as_tuple=True)
        if len(bi):
            m_ahead[bi, bj] = self._ahead_of_target(bi, safe[bi, bj])
        return m_ahead.sum(dim=1)

    def top(self, reference: torch.Tensor, top_k: int) -> torch.Tensor:
        """The `top_k` best by exact score: the k-th best bf16 score is within eps of the exact
        k-th best, so every exact top-k image scores ≥ (k-th bf16 score) − 2·eps in bf16; only
        those candidates are rescored in fp32. Overwrites the references' bf16 scores."""
        from cirflow.evaluate.recall import stable_topk

        approx_scores = self.approx_scores
        approx_scores[self.rows, reference] = float("-inf")
        k = min(top_k, approx_scores.shape[1] - 1)
        kth = approx_scores.topk(k, dim=1).values[:, -1:]
        qi, gi = (approx_scores >= kth - 2 * self.eps).nonzero(as_tuple=True)
        exact = torch.full_like(approx_scores, float("-inf"))
        exact[qi, gi] = self._exact(qi, gi)
        return stable_topk(exact, k)
