"""The per-query rankings of val (`val_rankings.json`, rule evaluate), for the results page.

Built from the ranks and top lists the recalls were computed from (no second scoring pass):

    {"split": "val", "top_k": 10, "rank_limit": 50, "gallery": N,
     "queries": [{"pairid": 12, "reference": "dev-…", "caption": "…", "target": "dev-…",
                  "rank": 3, "subset_rank": 1, "top": ["dev-…", …], "edit_type": "color"}, …]}

`rank` is 1-based among the gallery minus the reference, null beyond `rank_limit` (ranks past
50 are only lower bounds, `cirflow.evaluate.ranking`); `subset_rank` is 1-based among the
img_set members minus the reference; `top` the `top_k` best images, best first, in the order the
ranks count (a target of rank r ≤ top_k is top[r − 1]); `edit_type` only where the split has an
edit-type sidecar. Queries in the captions file's order, those left out (unreadable images)
excepted.

FashionIQ (`fashioniq_evaluator`): `rank` and `top` are within the query's `category` (an
extra key) gallery, where the reference is kept (SPRC's protocol), and `subset_rank` is null
(FashionIQ has no subsets); `gallery` is the number of distinct val images of all categories.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from cirflow.io import write_json_atomic

TOP_K = 10
RANK_LIMIT = 50


class Ranked(Protocol):
    """What the file is built from (`evaluator.Rankings`): per query, in `triplets` order, the
    0-based target rank in the gallery and in the subset, and the top list of positions in
    `gallery_names`, each a tensor (anything with `.tolist()`)."""

    rank: Any
    subset_rank: Any
    top: Any


def rankings_document(
    triplets: Sequence[dict],
    gallery_names: Sequence[str],
    ranked: Ranked,
    edit_types: Sequence[str] | None = None,
    split: str = "val",
) -> dict:
    """The file's content (module docstring)."""
    rank, top = ranked.rank.tolist(), ranked.top.tolist()
    subset_rank = None if ranked.subset_rank is None else ranked.subset_rank.tolist()
    queries = []
    for i, t in enumerate(triplets):
        r = int(rank[i])
        entry = {
            "pairid": t["pairid"],
            "reference": t["reference"],
            "caption": t["caption"],
            "target": t["target_hard"],
            "rank": r + 1 if r < RANK_LIMIT else None,
            "subset_rank": None if subset_rank is None else int(subset_rank[i]) + 1,
            "top": [gallery_names[int(j)] for j in top[i]],
        }
        if "category" in t:
            entry["category"] = t["category"]
        if edit_types is not None:
            entry["edit_type"] = edit_types[i]
        queries.append(entry)
    return {
        "split": split,
        "top_k": TOP_K,
        "rank_limit": RANK_LIMIT,
        "gallery": len(gallery_names),
        "queries": queries,
    }


def write_rankings(path: str | Path, document: dict) -> None:
    write_json_atomic(path, document)
