"""The FashionIQ recall protocol, as SPRC validates (docs/fashioniq.md).

Per category (dress, shirt, toptee), with s(i, j) the score of val query i against image j:

* the gallery is every image of the category's val image split (`fashioniq.val_gallery`,
  "protocol 1"), not only the images its val captions name;
* the query's reference image stays in the gallery, as in SPRC's and CLIP4Cir's FashionIQ
  validation (unlike their CIRR validation, which removes it): `EXCLUDE_REFERENCE`. With
  `exclude_reference=True` it is taken out of the query's ranking, as for CIRR;
* R@K (K = 10, 50): the target is among the K best;
* the means of R@10 and of R@50 over the categories, and their mean (R@10 + R@50) / 2,
  `SELECTION_METRIC`, the number SPRC keeps its best checkpoint by.

Ties are broken by gallery order (an image is ahead of the target when its score is higher, or
equal with a lower gallery index), as in `cirflow.evaluate.recall`. Percentages throughout; the
key names are SPRC's (`metric_keys`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import mean

import torch

from cirflow.data.fashioniq import CATEGORIES
from cirflow.errors import CirflowError

RECALL_KS = (10, 50)
AVERAGE_KEYS = tuple(f"average_recall_at{k}" for k in RECALL_KS)
# (mean R@10 + mean R@50) / 2 over the categories: the best epoch has the highest.
SELECTION_METRIC = "average_recall"
# SPRC's FashionIQ protocol ranks the reference image like any other gallery image.
EXCLUDE_REFERENCE = False


def metric_keys(categories: Sequence[str] = CATEGORIES) -> tuple[str, ...]:
    """The keys of `fashioniq_metrics`: per category (in CATEGORIES order; SPRC's CSV lists
    dress, toptee, shirt) R@10 and R@50, then the averages and SELECTION_METRIC."""
    per_category = [f"{c}_recall_at{k}" for c in categories for k in RECALL_KS]
    return (*per_category, *AVERAGE_KEYS, SELECTION_METRIC)


@dataclass
class CategoryQueries:
    """One category's val queries: scores (Q, N) against the gallery's N images (in the order of
    `gallery`), and each query's reference and target image names."""

    scores: torch.Tensor
    gallery: Sequence[str]
    references: Sequence[str]
    targets: Sequence[str]

    @classmethod
    def from_triplets(
        cls, scores: torch.Tensor, gallery: Sequence[str], triplets: Sequence[dict]
    ) -> CategoryQueries:
        """From normalised triplets (`fashioniq.category_triplets`): reference, target_hard."""
        references = [t["reference"] for t in triplets]
        return cls(scores, gallery, references, [t["target_hard"] for t in triplets])


def fashioniq_ranks(
    scores: torch.Tensor,
    reference: torch.Tensor,
    target: torch.Tensor,
    exclude_reference: bool = EXCLUDE_REFERENCE,
) -> torch.Tensor:
    """0-based rank of each query's target among the gallery: the number of images ahead of it.

    scores (Q, N); reference, target (Q,) gallery indices (a reference of -1: not in the
    gallery, nothing to exclude). `exclude_reference`: the reference is not counted ahead.
    """
    n = scores.shape[1]
    t_score = scores.gather(1, target[:, None])
    col = torch.arange(n, device=scores.device)[None, :]
    ahead = (scores > t_score) | ((scores == t_score) & (col < target[:, None]))
    if exclude_reference:
        rows = torch.arange(len(reference), device=scores.device)
        known = reference >= 0
        ahead[rows[known], reference[known]] = False
    return ahead.sum(dim=1)


def _indices(queries: CategoryQueries, category: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The gallery indices of the references (-1 where absent) and of the targets."""
    q, n = queries.scores.shape
    if n != len(queries.gallery) or not q == len(queries.references) == len(queries.targets):
        raise ValueError(
            f"{category}: scores {tuple(queries.scores.shape)} for {len(queries.references)} "
            f"references, {len(queries.targets)} targets and {len(queries.gallery)} gallery images"
        )
    if q == 0:
        raise ValueError(f"{category}: no queries")
    index = {name: j for j, name in enumerate(queries.gallery)}
    absent = [(i, t) for i, t in enumerate(queries.targets) if t not in index]
    if absent:
        i, name = absent[0]
        raise CirflowError(
            f"FashionIQ {category} val: the target {name!r} of query #{i} is not in the "
            f"gallery of {n:,} images ({len(absent)} such queries): the gallery must be the "
            f"category's val image split, image_splits/split.{category}.val.json"
        )
    device = queries.scores.device
    reference = torch.tensor([index.get(r, -1) for r in queries.references], device=device)
    target = torch.tensor([index[t] for t in queries.targets], device=device)
    return reference, target


def recalls_from_ranks(rank: torch.Tensor) -> dict[str, float]:
    """R@10 and R@50 (percent) of 0-based ranks."""
    return {f"recall_at{k}": float((rank < k).double().mean() * 100) for k in RECALL_KS}


def category_ranks(
    queries: CategoryQueries, category: str, exclude_reference: bool = EXCLUDE_REFERENCE
) -> torch.Tensor:
    """0-based rank of each of one category's val queries' target in its gallery."""
    reference, target = _indices(queries, category)
    return fashioniq_ranks(queries.scores, reference, target, exclude_reference)


def category_recalls(
    queries: CategoryQueries, category: str, exclude_reference: bool = EXCLUDE_REFERENCE
) -> dict[str, float]:
    """{"recall_at10": …, "recall_at50": …} of one category's val queries."""
    return recalls_from_ranks(category_ranks(queries, category, exclude_reference))


def _in_order(categories: Sequence[str]) -> list[str]:
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown or not categories:
        raise ValueError(f"categories {list(categories)}: expected some of {', '.join(CATEGORIES)}")
    return [c for c in CATEGORIES if c in categories]


def combine_categories(recalls: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The metrics (`metric_keys`) from each category's R@10 and R@50: means over the
    categories given (SPRC averages over the categories it validates), then their mean."""
    categories = _in_order(list(recalls))
    out = {
        f"{c}_recall_at{k}": float(recalls[c][f"recall_at{k}"])
        for c in categories
        for k in RECALL_KS
    }
    for key, k in zip(AVERAGE_KEYS, RECALL_KS, strict=True):
        out[key] = mean(out[f"{c}_recall_at{k}"] for c in categories)
    out[SELECTION_METRIC] = mean(out[key] for key in AVERAGE_KEYS)
    return out


def fashioniq_metrics(
    by_category: Mapping[str, CategoryQueries], exclude_reference: bool = EXCLUDE_REFERENCE
) -> dict[str, float]:
    """Every metric of `metric_keys(categories given)`, in that order."""
    return combine_categories(
        {c: category_recalls(q, c, exclude_reference) for c, q in by_category.items()}
    )


def chance_levels(
    gallery_sizes: Mapping[str, int], exclude_reference: bool = EXCLUDE_REFERENCE
) -> dict[str, float]:
    """The metrics of a random ranking: K / N per category (K / (N − 1) with the reference
    excluded), at most 100 %, averaged as `combine_categories` does."""
    per_category = {}
    for category, size in gallery_sizes.items():
        ranked = max(size - 1 if exclude_reference else size, 1)
        per_category[category] = {f"recall_at{k}": 100 * min(1.0, k / ranked) for k in RECALL_KS}
    return combine_categories(per_category)
