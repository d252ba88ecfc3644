"""The CIRR recall protocol (as SPRC evaluates it) and the test-server files.

Given the score s(i, j) of every query i against every gallery image j (the gallery is every
image of the split file):

* the reference image of query i is removed from its ranking;
* R@K  (K = 1, 5, 10, 50): the target is among the K best of the remaining gallery;
* Rs@K (K = 1, 2, 3): the target is among the K best of `img_set.members` minus the reference
  (5 images in CIRR, so chance is K/5);
* means: (R@5 + Rs@1) / 2, and the arithmetic, harmonic and geometric means of the 7 recalls.

Ties are broken by gallery order (a stable descending sort), the same rule for ranks, top-K lists
and subset lists. All numbers are percentages.

Unreadable images (docs/design.md §7) are not in the gallery: a val query that needs one is left
out by the caller, a member that is not in the gallery is ignored for Rs@K (`member_matrix` pads
it with -1). In the test-server files every pairid stays: a query whose reference cannot be read
is ranked from its caption with a black reference image (the fallback), and members that are not
in the gallery come after the ranked ones, in their listed order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

RECALL_KS = (1, 5, 10, 50)
SUBSET_KS = (1, 2, 3)
RECALL_KEYS = tuple(f"recall_at{k}" for k in RECALL_KS)
SUBSET_KEYS = tuple(f"group_recall_at{k}" for k in SUBSET_KS)
MEAN_KEYS = ("mean(R@5+R_s@1)", "arithmetic_mean", "harmonic_mean", "geometric_mean")
# Column order of validation_metrics.csv and keys of val_metrics.json (SPRC's names).
METRIC_KEYS = (*SUBSET_KEYS, *RECALL_KEYS, *MEAN_KEYS)


def recall_ranks(
    scores: torch.Tensor,
    reference: torch.Tensor,
    target: torch.Tensor,
    members: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based ranks of the target in the full gallery (reference removed) and in its subset.

    scores (Q, N); reference, target (Q,) gallery indices; members (Q, M) gallery indices of
    `img_set.members` (the reference among them is ignored; pad with -1). A gallery image is
    ahead of the target when its score is higher, or equal with a lower gallery index.
    """
    n = scores.shape[1]
    t_score = scores.gather(1, target[:, None])
    col = torch.arange(n, device=scores.device)[None, :]
    ahead = scores > t_score
    ahead |= (scores == t_score) & (col < target[:, None])
    rank = ahead.sum(dim=1)
    # The reference is not part of the query's ranking: take it out if it was ahead.
    rank -= ahead.gather(1, reference[:, None]).squeeze(1).long()
    safe = members.clamp(min=0)
    m_scores = scores.gather(1, safe)
    m_ahead = (m_scores > t_score) | ((m_scores == t_score) & (safe < target[:, None]))
    m_ahead &= (members >= 0) & (members != reference[:, None])
    return rank, m_ahead.sum(dim=1)


def metrics_from_ranks(rank: torch.Tensor, subset_rank: torch.Tensor) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in SUBSET_KS:
        out[f"group_recall_at{k}"] = float((subset_rank < k).float().mean() * 100)
    for k in RECALL_KS:
        out[f"recall_at{k}"] = float((rank < k).float().mean() * 100)
    return add_means(out)


def per_edit_type_metrics(
    rank: torch.Tensor,
    subset_rank: torch.Tensor,
    edit_types: Sequence[str],
    order: Sequence[str] = (),
) -> dict[str, dict[str, float | int]]:
    """R@1, R@5 and Rs@1 (percent) and the number of queries of each edit type.

    `rank` and `subset_rank` are those of `recall_ranks` / `exact_ranks`; `edit_types[i]` is
    query i's type. Types are listed in `order` first, then any others sorted; a type in
    `order` that no query has is left out.
    """
    if len(edit_types) != len(rank) or len(rank) != len(subset_rank):
        raise ValueError(
            f"{len(edit_types)} edit types for {len(rank)} ranks and {len(subset_rank)} subset ranks"
        )
    rank, subset_rank = rank.cpu(), subset_rank.cpu()
    present = set(edit_types)
    names = [t for t in order if t in present] + sorted(present - set(order))
    out: dict[str, dict[str, float | int]] = {}
    for name in names:
        rows = torch.tensor([t == name for t in edit_types])
        r, s = rank[rows], subset_rank[rows]
        out[name] = {
            "recall_at1": float((r < 1).float().mean() * 100),
            "recall_at5": float((r < 5).float().mean() * 100),
            "group_recall_at1": float((s < 1).float().mean() * 100),
            "queries": int(rows.sum()),
        }
    return out


def add_means(m: dict[str, float]) -> dict[str, float]:
    seven = [m[k] for k in (*RECALL_KEYS, *SUBSET_KEYS)]
    m["mean(R@5+R_s@1)"] = (m["recall_at5"] + m["group_recall_at1"]) / 2
    m["arithmetic_mean"] = sum(seven) / 7
    m["harmonic_mean"] = 0.0 if min(seven) <= 0 else 7 / sum(1 / v for v in seven)
    m["geometric_mean"] = 0.0 if min(seven) <= 0 else math.exp(sum(math.log(v) for v in seven) / 7)
    return {k: m[k] for k in METRIC_KEYS}


def cirr_metrics(
    scores: torch.Tensor,
    gallery_names: Sequence[str],
    triplets: Sequence[dict],
) -> dict[str, float]:
    """The 7 recalls and 4 means (percent) of CIRR triplets (val) against the gallery scores."""
    index = {n: i for i, n in enumerate(gallery_names)}
    reference = torch.tensor([index[t["reference"]] for t in triplets], device=scores.device)
    target = torch.tensor([index[t["target_hard"]] for t in triplets], device=scores.device)
    members = member_matrix(triplets, index).to(scores.device)
    rank, subset_rank = recall_ranks(scores, reference, target, members)
    return metrics_from_ranks(rank, subset_rank)


def member_matrix(triplets: Sequence[dict], index: dict[str, int]) -> torch.Tensor:
    width = max((len(t["img_set"]["members"]) for t in triplets), default=0)
    out = torch.full((len(triplets), max(width, 1)), -1, dtype=torch.long)
    for i, t in enumerate(triplets):
        ids = [index.get(m, -1) for m in t["img_set"]["members"]]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def chance_levels(gallery_size: int, subset_size: int = 5) -> dict[str, float]:
    """Recall of a random ranking: K / (gallery − 1) and K / subset size, in percent."""
    out = {f"group_recall_at{k}": 100 * min(1.0, k / subset_size) for k in SUBSET_KS}
    out.update({f"recall_at{k}": 100 * min(1.0, k / max(gallery_size - 1, 1)) for k in RECALL_KS})
    return add_means(out)


def stable_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best columns per row, ties broken by column order."""
    k = min(k, scores.shape[1])
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]


def submission_files(
    scores: torch.Tensor,
    gallery_names: Sequence[str],
    triplets: Sequence[dict],
    top_k: int = 50,
    subset_k: int = 3,
) -> tuple[dict, dict]:
    """CIRR test-server files: {"version": "rc2", "metric": "recall", "<pairid>": [top-50 names]}
    and the same with "recall_subset" and the top-3 members (reference excluded in both).

    `gallery_names`: the readable images; a reference or member missing from it is handled as
    the module docstring says (every pairid keeps its lists)."""
    index = {n: i for i, n in enumerate(gallery_names)}
    scores = scores.clone()
    reference = torch.tensor(
        [index.get(t["reference"], -1) for t in triplets], dtype=torch.long, device=scores.device
    )
    rows = torch.arange(len(triplets), device=scores.device)
    known = reference >= 0
    scores[rows[known], reference[known]] = float("-inf")
    top = stable_topk(scores, top_k).cpu().tolist()
    recall: dict = {"version": "rc2", "metric": "recall"}
    subset: dict = {"version": "rc2", "metric": "recall_subset"}
    for i, t in enumerate(triplets):
        pid = str(t["pairid"])
        recall[pid] = [gallery_names[j] for j in top[i] if j != reference[i]][:top_k]
        others = [m for m in t["img_set"]["members"] if m != t["reference"]]
        # Gallery order first, so that ties fall the same way as in the full ranking.
        members = sorted((m for m in others if m in index), key=index.get)
        absent = [m for m in others if m not in index]
        order: list[int] = []
        if members:
            cols = torch.tensor([index[m] for m in members], device=scores.device)
            order = torch.sort(scores[i, cols], descending=True, stable=True).indices.cpu().tolist()
        subset[pid] = ([members[j] for j in order] + absent)[:subset_k]
    return recall, subset
