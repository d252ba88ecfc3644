"""One split of CIRR ready to be scored: gallery images, queries, and what to compute from them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from cirflow.data.cirr import EDIT_TYPES, edits_file, load_edit_types
from cirflow.data.datasets import DatasetRoot, as_dataset_root
from cirflow.data.feature_store import FeatureStore, FeatureTable
from cirflow.data.regions import BoxFile, load_image_boxes
from cirflow.data.tables import ImageTable, TripletData
from cirflow.device import resolve_device
from cirflow.errors import CirflowError, naming_keys
from cirflow.evaluate.features import gallery_features, gallery_region_features, query_features
from cirflow.evaluate.ranking import Gallery, QueryImages, max_token_scores, ranks_and_top
from cirflow.evaluate.recall import (
    METRIC_KEYS,
    chance_levels,
    member_matrix,
    metrics_from_ranks,
    per_edit_type_metrics,
    submission_files,
)
from cirflow.evaluate.settings import EvalSettings
from cirflow.model.config import RegionMode

log = logging.getLogger(__name__)


@dataclass
class Rankings:
    """A split's queries ranked: 0-based target ranks in the gallery (≥ 50 only a lower bound)
    and in the subset (None without subsets: FashionIQ), and the best gallery positions per
    query (None when not asked for)."""

    rank: torch.Tensor
    subset_rank: torch.Tensor | None
    top: torch.Tensor | None


@dataclass(frozen=True)
class SplitSources:
    """Where a split's images come from beside the dataset: cached ViT token shards (a frozen
    ViT; None: decode pixels) and the split's own box file (a model with region tokens)."""

    features: list[str] | None = None
    boxes: BoxFile | None = None


PIXELS_ONLY = SplitSources()  # decode the images; no boxes


class SplitEvaluator:
    """Gallery = every readable image of the split file; queries = the split's triplets.

    Unreadable images (found when the table is built) are left out of the gallery; more than
    `settings.max_unreadable_fraction` of the split is an error. On val, a query whose reference
    or target cannot be read is left out (`data.left_out`); on test1 every query stays, one with
    an unreadable reference ranked with a black reference image (`fallback_queries`).

    `model` gives the tokenizer, the preset's text length and image size, and its region mode;
    `device`, when given, overrides `settings.device` (training validates on its own device).
    `sources.features`, the split's cached ViT token shards, replace decoding the images.

    `sources.boxes`: the split's own box file (and sidecar), of the box method the model was
    trained with. A model with region tokens (docs/design.md §6) needs it: each gallery image's
    candidate tokens are its global tokens plus one region token per box (at most the model's
    `max_region_tokens`, largest first), mapped through that image's own geometry. A box file
    of another split is an error (`cirflow.data.regions`); other models ignore it.

    Errors of the data layer name the keys of `settings` (`EvalSettings.key`).

    `root`: a `DatasetRoot`, or a plain path (CIRR). This class scores CIRR; FashionIQ's
    protocol is `fashioniq_evaluator.FashionIQEvaluator` (`evaluators.split_evaluator` picks).
    """

    # What training keeps its best epoch by, and the metrics' keys (CSV columns).
    selection_metric = "arithmetic_mean"
    metric_keys = METRIC_KEYS

    def __init__(
        self,
        root: str | Path | DatasetRoot,
        split: str,
        model,
        settings: EvalSettings,
        device: torch.device | None = None,
        sources: SplitSources = PIXELS_ONLY,
    ):
        self.split = split
        self.settings = settings
        self.dataset = as_dataset_root(root).open(split)
        with naming_keys(settings.key):
            self.table = self._image_table(model, sources.features)
            self.table.check_unreadable(settings.max_unreadable_fraction)
            self.device = device or resolve_device(settings.device)
        self.gallery_idx = [i for i, n in enumerate(self.table.names) if self.table.is_readable(n)]
        self.gallery_names = [self.table.names[i] for i in self.gallery_idx]
        self.gallery_index = {n: j for j, n in enumerate(self.gallery_names)}
        self.data = TripletData(
            self.dataset,
            self.table,
            model.tokenizer,
            model.preset.max_txt_len,
            with_targets=split != "test1",
            skip_unreadable=split != "test1",
        )
        self.fallback_queries = self._fallback_queries()
        self.boxes, self.box_counts = self._gallery_boxes(model, sources.boxes)

    def _image_table(self, model, features: list[str] | None):
        if features:  # cached ViT tokens of the split (a frozen ViT)
            return FeatureTable(self.dataset, FeatureStore(features))
        s = self.settings
        size = model.preset.image_size
        return ImageTable(self.dataset, size, s.image_cache, s.num_workers, progress=s.progress)

    def _fallback_queries(self) -> list[dict]:
        """The queries whose reference cannot be read (ranked from their caption alone)."""
        fallback = [
            {"pairid": t["pairid"], "reference": t["reference"]}
            for t in self.data.triplets
            if not self.table.is_readable(t["reference"])
        ]
        if fallback:
            log.warning(
                "%s: %d queries have an unreadable reference and are ranked from their caption "
                "with a black reference image: pairids %s",
                self.split,
                len(fallback),
                ", ".join(str(q["pairid"]) for q in fallback),
            )
        return fallback

    def _gallery_boxes(self, model, boxes: BoxFile | None):
        """(boxes per gallery image, their counts) for a model with region tokens, else
        (None, None)."""
        split = self.split
        if not RegionMode(model.region_mode).scores_regions:
            if boxes is not None:
                log.info(
                    "%s: the model has no region tokens; box file %s not used", split, boxes.path
                )
            return None, None
        if boxes is None:
            raise CirflowError(
                f"{split}: this model scores images with region tokens "
                "(train.stage2.region.mode: tokens), so its evaluation needs the "
                f"{split} box file of its box method (results/{{ds}}/boxes/<method>/"
                f"{split}.json and its sidecar; --box-file on the command line)"
            )
        return load_image_boxes(
            boxes.path,
            self.table,
            model.preset.image_size,
            meta_file=boxes.meta,
            max_boxes=model.max_region_tokens,
        )

    def unreadable_report(self) -> dict:
        """What was left out, for the details JSON files; and the queries kept whose caption
        is empty (ranked from their reference image alone)."""
        return {
            "unreadable_images": [
                {"image": n, "error": e} for n, e in self.table.unreadable.items()
            ],
            "queries_left_out": self.data.left_out,
            "fallback_queries": self.fallback_queries,
            "empty_captions": len(self.data.empty_captions),
            "empty_caption_pairids": self.data.empty_captions,
        }

    def edit_types(self) -> list[str] | None:
        """Each query's edit type from the split's sidecar (the demo), or None without one."""
        if self.split == "test1":
            return None
        by_pairid = load_edit_types(self.dataset.root, self.split, self.dataset.triplets)
        if by_pairid is None:
            return None
        return [by_pairid[t["pairid"]] for t in self.data.triplets]

    def protocol_details(self) -> dict:
        """What val_details.json says about the protocol beyond CIRR's (nothing for CIRR)."""
        return {}

    def edits_source(self) -> Path:
        return edits_file(self.dataset.root, self.split)

    def chance(self) -> dict[str, float]:
        return chance_levels(len(self.gallery_names))

    @torch.no_grad()
    def features(self, model) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        """(query features (Q, D), gallery features (N, nq, D), the gallery's region tokens
        (R (N, M, D), valid (N, M)) or None): each image encoded once."""
        t0 = time.perf_counter()
        s = self.settings
        regions = None
        if self.boxes is not None:
            gallery, regions = gallery_region_features(
                model, self.table, self.boxes, self.device, s, indices=self.gallery_idx
            )
        else:
            gallery = gallery_features(model, self.table, self.device, s, indices=self.gallery_idx)
        queries = query_features(model, self.data, self.device, s)
        log.info(
            "%s: features of %d images and %d queries in %.1f s",
            self.split,
            len(self.gallery_idx),
            len(self.data),
            time.perf_counter() - t0,
        )
        return queries, gallery, regions

    @staticmethod
    def gate(model) -> float | None:
        """The region tokens' part in the scores (mode gated), else None (the plain union)."""
        gate = model.gate() if RegionMode(model.region_mode).scores_regions else None
        return None if gate is None else float(gate)

    @torch.no_grad()
    def scores(self, model) -> torch.Tensor:
        queries, gallery, regions = self.features(model)
        return max_token_scores(queries, Gallery(gallery, regions, self.gate(model)))

    @torch.no_grad()
    def ranks(
        self, model, top_k: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Exact 0-based ranks of every query's target, in the gallery and in its subset
        (bf16 first pass where the CPU has native bf16), and, for `top_k` > 0, each query's
        `top_k` best gallery positions (`gallery_names` indices, reference excluded) from the
        same scores (else None)."""
        queries, gallery, regions = self.features(model)
        t0 = time.perf_counter()
        index, triplets, dev = self.gallery_index, self.data.triplets, queries.device
        reference = torch.tensor([index[t["reference"]] for t in triplets], device=dev)
        target = torch.tensor([index[t["target_hard"]] for t in triplets], device=dev)
        members = member_matrix(triplets, index).to(dev)
        rank, subset_rank, top = ranks_and_top(
            queries,
            Gallery(gallery, regions, self.gate(model)),
            QueryImages(reference, target, members),
            top_k,
        )
        log.info("%s: ranking in %.2f s", self.split, time.perf_counter() - t0)
        return rank, subset_rank, top

    @torch.no_grad()
    def metrics(self, model) -> dict[str, float]:
        """The CIRR recalls (METRIC_KEYS, percent): what training validates with."""
        rank, subset_rank, _ = self.ranks(model)
        return metrics_from_ranks(rank, subset_rank)

    @torch.no_grad()
    def metrics_and_edit_types(
        self, model, top_k: int = 0
    ) -> tuple[dict[str, float], dict | None, Rankings]:
        """The CIRR recalls; where the split has an edit-type sidecar, the same ranks' R@1 /
        R@5 / Rs@1 per edit type (else None); and the ranks themselves, with each query's
        `top_k` best images, for the per-query file (`cirflow.evaluate.rankings`)."""
        edit_types = self.edit_types()  # a bad sidecar fails before the features are computed
        rank, subset_rank, top = self.ranks(model, top_k)
        metrics = metrics_from_ranks(rank, subset_rank)
        rankings = Rankings(rank.cpu(), subset_rank.cpu(), None if top is None else top.cpu())
        if edit_types is None:
            return metrics, None, rankings
        per_edit = per_edit_type_metrics(rank, subset_rank, edit_types, EDIT_TYPES)
        return metrics, per_edit, rankings

    def submission(self, model) -> tuple[dict, dict]:
        return submission_files(self.scores(model), self.gallery_names, self.data.triplets)


def format_metrics(metrics: dict[str, float], chance: dict[str, float] | None = None) -> str:
    """A small aligned table: metric, value[, chance]."""
    lines = []
    for k, v in metrics.items():
        extra = f"   (chance {chance[k]:6.2f})" if chance and k in chance else ""
        lines.append(f"  {k:<18} {v:7.2f}{extra}")
    return "\n".join(lines)
