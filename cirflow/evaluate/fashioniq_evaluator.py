"""FashionIQ val scored as SPRC validates it (`cirflow.evaluate.fashioniq_recall`).

The split's images are encoded once (the union of the three categories' val image splits, as
`SplitEvaluator` builds its gallery); then per category its queries are scored against that
category's own gallery only (its val image split, in file order, unreadable images left out),
the reference kept in it (`EXCLUDE_REFERENCE`), and R@10 / R@50 come from those ranks. What
training validates with and keeps its best epoch by is `average_recall` (`SELECTION_METRIC`).

FashionIQ has no test server: only val is scored, and there are no submission files.
"""

from __future__ import annotations

import torch

from cirflow.data.fashioniq import CATEGORIES
from cirflow.errors import CirflowError
from cirflow.evaluate.evaluator import PIXELS_ONLY, Rankings, SplitEvaluator, SplitSources
from cirflow.evaluate.fashioniq_recall import (
    SELECTION_METRIC,
    CategoryQueries,
    category_ranks,
    chance_levels,
    combine_categories,
    metric_keys,
    recalls_from_ranks,
)
from cirflow.evaluate.ranking import Gallery, max_token_scores
from cirflow.evaluate.recall import stable_topk

SCORED_SPLIT = "val"


class FashionIQEvaluator(SplitEvaluator):
    """`SplitEvaluator`'s interface on FashionIQ val: per-category galleries and recalls."""

    selection_metric = SELECTION_METRIC
    metric_keys = metric_keys()

    def __init__(
        self, root, split, model, settings, device=None, sources: SplitSources = PIXELS_ONLY
    ):
        if split != SCORED_SPLIT:
            raise CirflowError(
                f"FashionIQ split {split!r} cannot be scored: only val has targets to rank "
                "(FashionIQ has no test server)"
            )
        super().__init__(root, split, model, settings, device, sources)
        # Per category: its gallery (positions in gallery_names) and its queries' rows.
        self.galleries = {c: self._gallery_positions(c) for c in CATEGORIES}
        self.rows = {
            c: [i for i, t in enumerate(self.data.triplets) if t["category"] == c]
            for c in CATEGORIES
        }

    def _gallery_positions(self, category: str) -> list[int]:
        """The category's val image split in file order, as positions in `gallery_names`
        (unreadable images are in no gallery)."""
        names = self.dataset.category_names(category)
        return [self.gallery_index[n] for n in names if n in self.gallery_index]

    def scored_categories(self) -> list[str]:
        """The categories with val queries (each needs a gallery)."""
        return [c for c in CATEGORIES if self.rows[c]]

    def chance(self) -> dict[str, float]:
        return chance_levels({c: len(self.galleries[c]) for c in self.scored_categories()})

    @torch.no_grad()
    def category_scores(self, model) -> dict[str, torch.Tensor]:
        """Per category: scores (its queries, its gallery), images encoded once for all."""
        queries, gallery, regions = self.features(model)
        gate, out = self.gate(model), {}
        for c in self.scored_categories():
            cols = torch.tensor(self.galleries[c], dtype=torch.long, device=gallery.device)
            own = None if regions is None else (regions[0][cols], regions[1][cols])
            rows = torch.tensor(self.rows[c], dtype=torch.long, device=queries.device)
            out[c] = max_token_scores(queries[rows], Gallery(gallery[cols], own, gate))
        return out

    @torch.no_grad()
    def ranks(self, model, top_k: int = 0):
        """Each query's 0-based target rank in its category's gallery (reference kept), no
        subset rank (None), and with `top_k` its best images as `gallery_names` positions."""
        rank = torch.zeros(len(self.data), dtype=torch.long)
        top = torch.zeros((len(self.data), top_k), dtype=torch.long) if top_k else None
        for c, scores in self.category_scores(model).items():
            names = [self.gallery_names[j] for j in self.galleries[c]]
            triplets = [self.data.triplets[i] for i in self.rows[c]]
            queries = CategoryQueries.from_triplets(scores, names, triplets)
            rank[self.rows[c]] = category_ranks(queries, c).cpu()
            if top is not None:
                local = stable_topk(scores, top_k).cpu()
                top[self.rows[c], : local.shape[1]] = torch.tensor(self.galleries[c])[local]
        return rank, None, top

    def _metrics(self, rank: torch.Tensor) -> dict[str, float]:
        return combine_categories(
            {c: recalls_from_ranks(rank[self.rows[c]]) for c in self.scored_categories()}
        )

    @torch.no_grad()
    def metrics(self, model) -> dict[str, float]:
        """The FashionIQ metrics (`fashioniq_recall.metric_keys`, percent)."""
        rank, _, _ = self.ranks(model)
        return self._metrics(rank)

    @torch.no_grad()
    def metrics_and_edit_types(self, model, top_k: int = 0):
        """The metrics, no per-edit-type table (None), and the ranks for val_rankings.json."""
        rank, _, top = self.ranks(model, top_k)
        return self._metrics(rank), None, Rankings(rank, None, top)

    def edit_types(self) -> None:
        return None

    def protocol_details(self) -> dict:
        """val_details.json's per-category part: queries, gallery size and chance levels."""
        chance = self.chance()
        return {
            "protocol": "FashionIQ (SPRC): per-category gallery = its val image split, "
            "reference kept in the gallery",
            "categories": {
                c: {
                    "queries": len(self.rows[c]),
                    "gallery": len(self.galleries[c]),
                    "chance": {k: chance[f"{c}_{k}"] for k in ("recall_at10", "recall_at50")},
                }
                for c in self.scored_categories()
            },
        }

    def submission(self, model):
        raise CirflowError("FashionIQ has no test server: there are no submission files")
