"""Scores of composed queries against gallery images: s(i, j) = max_k ⟨q_i, K_{j,k}⟩.

The gallery holds nq normalised tokens per image. The (Q, N·nq) product is never materialised
whole (4,181 × 2,297 × 32 floats would be 1.2 GB): it is computed in blocks of gallery images
sized to stay in cache, each reduced by a max over its tokens right away.
"""

from __future__ import annotations

import torch

# Gallery images per block: 64 images × 32 tokens = 2,048 columns; measured fastest on 2 CPU cores
# (benchmarks/bench_rank.py).
GALLERY_BLOCK = 64
QUERY_BLOCK = 2048


@torch.no_grad()
def max_token_scores(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    gallery_block: int = GALLERY_BLOCK,
    query_block: int = QUERY_BLOCK,
) -> torch.Tensor:
    """queries (Q, D), gallery (N, T, D) or (N, D) → scores (Q, N), float32, on queries' device."""
    if gallery.dim() == 2:
        gallery = gallery[:, None, :]
    n, t, d = gallery.shape
    q = queries.float()
    g = gallery.to(q.device).float()
    out = torch.empty((q.shape[0], n), dtype=torch.float32, device=q.device)
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
    return out
