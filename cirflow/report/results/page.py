"""The results page: one self-contained HTML file (jinja2 template, figures and thumbnails
embedded as data: URIs) from the files `cirflow.report.results.inputs` reads.

Sections: curves per stage (every loss and the val recalls per epoch, the best.pt epoch marked),
the measured comparison (stage 1 / control / stage 2 with deltas and chance levels; the
ablation's mean ± sd and paired deltas once it has run), per edit type (where val has an
edit-type sidecar), retrievals to look at (`retrievals`), run facts (config, seeds, wall time,
device, data counts). Every number shown is the file's own (cells carry it in `data-value`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cirflow.data.datasets import layout_of, root_of_annotation_file
from cirflow.data.result_files import CIRR_METRICS, METRIC_LABELS, NO_BOXES, MetricSet, metric_set
from cirflow.errors import CirflowError
from cirflow.io import write_text_atomic
from cirflow.report.html import data_uri, number_text, render, version, yaml_text
from cirflow.report.results import figures
from cirflow.report.results.inputs import (
    STAGE_LABELS,
    STAGES,
    Stage,
    StageFiles,
    check_comparison,
    read_ablation,
    read_comparison,
    read_stage,
)
from cirflow.report.results.retrievals import (
    Thumbnails,
    load_target_boxes,
    pick,
    rank_text,
)

log = logging.getLogger(__name__)

DEFAULTS = {"queries": 8, "changed": 4, "top": 5, "seed": 0, "thumb_size": 112}
# The stages whose retrievals are shown side by side.
RETRIEVAL_STAGES = ("stage1", "stage2")
EDIT_COLUMNS = (("R@1", "recall_at1"), ("Rs@1", "group_recall_at1"))


def _pm(mean: float, sd: float, signed: bool = False) -> str:
    return number_text(mean, signed) + ("" if math.isnan(sd) else f" ± {number_text(sd)}")


# ------------------------------------------------------------------------------- the sections
def curves_section(stages: dict[str, Stage], metrics: MetricSet = CIRR_METRICS) -> list[dict]:
    out = []
    for stage in stages.values():
        png = figures.curves_png(stage, METRIC_LABELS, metrics.curves)
        out.append(
            {
                "stage": stage.name,
                "label": stage.label,
                "uri": data_uri(png, "image/png"),
                "best_epoch": stage.best_epoch,
                "loss_columns": stage.loss_columns,
                "train_rows": stage.train_rows,
                "val_columns": stage.val_columns,
                "val_rows": stage.val_rows,
                "chance": stage.details.get("chance") or {},
            }
        )
    return out


def comparison_section(rows: list[dict], stages: dict[str, Stage]) -> list[dict]:
    chance = stages["stage1"].details.get("chance") or {}
    out = []
    for r in rows:
        out.append(
            {
                "metric": r["metric"],
                "label": METRIC_LABELS.get(r["metric"], r["metric"]),
                "cells": [
                    {
                        "stage": s,
                        "text": number_text(r[s]),
                        "value": stages[s].metrics.get(r["metric"]),
                    }
                    for s in STAGES
                ],
                "deltas": [
                    {"column": c, "text": number_text(r[c], signed=True), "value": r[c]}
                    for c in ("delta_vs_control", "delta_vs_stage1")
                ],
                "chance": chance.get(r["metric"]),
            }
        )
    return out


def ablation_section(
    path: str | Path | None, chance: dict[str, float], metrics: MetricSet = CIRR_METRICS
) -> dict | None:
    if path is None:
        return None
    rows = read_ablation(path)
    by = {(r["mode"], r["box_source"], r["metric"]): r for r in rows}
    kinds = list(dict.fromkeys((r["mode"], r["box_source"]) for r in rows))
    shown = [k for k in metrics.shown if any(key[2] == k for key in by)]

    def label(mode, source):
        return mode if source == NO_BOXES else f"{mode} / {source}"

    def cells(mode, source, value, spread, signed):
        return [
            {
                "metric": k,
                "text": _pm(by[(mode, source, k)][value], by[(mode, source, k)][spread], signed),
                "value": by[(mode, source, k)][value],
            }
            for k in shown
        ]

    means = [
        {
            "kind": label(m, s),
            "seeds": by[(m, s, shown[0])]["seeds"],
            "cells": cells(m, s, "mean", "sd", False),
        }
        for m, s in kinds
    ]
    deltas = [
        {
            "kind": label(m, s),
            "seeds": by[(m, s, shown[0])]["seeds"],
            "cells": cells(m, s, "delta_vs_none", "delta_vs_none_sd", True),
        }
        for m, s in kinds
        if s != NO_BOXES  # the controls (none, none@6): no delta of their own
    ]
    png = figures.ablation_png(rows, METRIC_LABELS, metrics.plotted)
    return {
        "path": str(path),
        "columns": [METRIC_LABELS.get(k, k) for k in shown],
        "chance": [number_text(chance.get(k)) for k in shown],
        "means": means,
        "deltas": deltas,
        "uri": data_uri(png, "image/png") if png else None,
    }


def edit_type_section(stages: dict[str, Stage]) -> dict | None:
    per_stage = {s: st.metrics.get("per_edit_type") for s, st in stages.items()}
    if not any(per_stage.values()):
        return None
    types = list(dict.fromkeys(t for v in per_stage.values() if v for t in v))
    chance = stages["stage1"].details.get("chance") or {}
    rows = []
    for edit in types:
        cells = []
        for s in STAGES:
            entry = (per_stage.get(s) or {}).get(edit) or {}
            cells += [
                {
                    "stage": s,
                    "metric": key,
                    "text": number_text(entry.get(key)),
                    "value": entry.get(key),
                }
                for _, key in EDIT_COLUMNS
            ]
        queries = next((v[edit]["queries"] for v in per_stage.values() if v and edit in v), 0)
        rows.append({"edit_type": edit, "queries": queries, "cells": cells})
    return {
        "stages": [STAGE_LABELS[s] for s in STAGES],
        "columns": [label for label, _ in EDIT_COLUMNS],
        "rows": rows,
        "chance": [number_text(chance.get(key)) for _, key in EDIT_COLUMNS],
        "source": stages["stage1"].details.get("edit_types"),
    }


def retrieval_section(stages: dict[str, Stage], thumbs: Thumbnails, settings: dict) -> dict | None:
    first, second = (stages[s].rankings for s in RETRIEVAL_STAGES)
    if first is None or second is None:
        return None
    limit = int(first.get("rank_limit", 50))
    top = int(settings["top"])
    groups = []
    for group in pick(first, second, settings["queries"], settings["changed"], settings["seed"]):
        rows = []
        for pair in group["pairs"]:
            q = pair[0]
            ref_uri, ref_problem = thumbs.uri(q["reference"])
            tgt_uri, tgt_problem = thumbs.uri(q["target"], target=True)
            per_stage = []
            for stage, entry in zip(RETRIEVAL_STAGES, pair, strict=True):
                items = []
                for name in entry["top"][:top]:
                    uri, problem = thumbs.uri(name, target=name == q["target"])
                    items.append(
                        {
                            "name": name,
                            "uri": uri,
                            "problem": problem,
                            "target": name == q["target"],
                        }
                    )
                per_stage.append(
                    {
                        "stage": stage,
                        "label": STAGE_LABELS[stage],
                        "rank": entry["rank"],
                        "rank_text": rank_text(entry["rank"], limit),
                        "subset_rank": entry["subset_rank"],
                        "items": items,
                    }
                )
            rows.append(
                {
                    "pairid": q["pairid"],
                    "caption": q["caption"],
                    "edit_type": q.get("edit_type"),
                    "reference": {"name": q["reference"], "uri": ref_uri, "problem": ref_problem},
                    "target": {"name": q["target"], "uri": tgt_uri, "problem": tgt_problem},
                    "stages": per_stage,
                }
            )
        groups.append({"key": group["key"], "title": group["title"], "rows": rows})
    return {
        "groups": groups,
        "top": top,
        "rank_limit": limit,
        "images_problem": thumbs.problem,
        "boxes": thumbs.boxes is not None,
        "max_boxes": thumbs.max_boxes,
    }


def _counts(stage: Stage) -> dict:
    hp, details = stage.hparams, stage.details
    unreadable = hp.get("unreadable") or {}
    train = unreadable.get("train") or {}
    val_left = details.get("queries_left_out") or []
    used = train.get("triplets_used", hp.get("train_triplets"))
    steps, batch = hp.get("steps_per_epoch"), (hp.get("settings") or {}).get("batch_size")
    return {
        "train_used": used,
        "train_left_out": train.get("triplets_left_out", 0),
        "train_unreadable": train.get("list") or [],
        "per_epoch": steps * batch if steps is not None and batch is not None else None,
        "val_used": details.get("queries"),
        "val_left_out": len(val_left),
        "val_left_out_list": val_left,
        "val_unreadable": details.get("unreadable_images") or [],
        "gallery": details.get("gallery"),
    }


def facts_section(stages: dict[str, Stage], config: dict | None, settings: dict) -> dict:
    rows = []
    for stage in stages.values():
        s = stage.hparams.get("settings") or {}
        rows.append(
            {
                "stage": stage.name,
                "label": stage.label,
                "region_mode": stage.hparams.get("region_mode", s.get("region_mode")),
                "seed": s.get("seed"),
                "epochs": s.get("num_epochs"),
                "best_epoch": stage.best_epoch,
                "device": stage.hparams.get("device"),
                "amp": stage.hparams.get("amp"),
                "train_seconds": stage.train_time["seconds"],
                "train_rss": stage.train_time["max_rss_mb"],
                "eval_seconds": stage.eval_time["seconds"],
                "counts": _counts(stage),
                "init": s.get("init_checkpoint"),
                "box_file": s.get("box_file"),
            }
        )
    seeds = [{"what": f"training, {r['label']}", "seed": r["seed"]} for r in rows]
    for key, what in (
        ("demo", "demo dataset"),
        ("demo_fashioniq", "FashionIQ demo dataset"),
        ("pretrain", "first stage (demo)"),
    ):
        seed = ((config or {}).get(key) or {}).get("seed")
        if seed is not None:
            seeds.append({"what": what, "seed": seed})
    seeds.append({"what": "retrieval sample (report.results.seed)", "seed": settings["seed"]})
    return {"rows": rows, "seeds": seeds}


# ---------------------------------------------------------------------------------- the page
@dataclass(frozen=True)
class ResultsInputs:
    """The files the page shows: per stage of STAGES its files (rankings for stage 1 and
    stage 2), comparison.csv, val's split file (the dataset root for the thumbnails), stage 2's
    val box file (tokens mode) and the ablation's summary.csv once it has run."""

    stage_files: Mapping[str, StageFiles]
    comparison: str | Path
    split_file: str | Path | None = None
    boxes: str | Path | None = None
    ablation: str | Path | None = None

    def named(self, stages: dict[str, Stage]) -> list[dict]:
        """Every input as the page lists it: stage, what, path."""
        named = [
            {"stage": st.label, "what": what, "path": path}
            for st in stages.values()
            for what, path in st.sources.items()
        ]
        named.append({"stage": "", "what": "comparison.csv", "path": str(self.comparison)})
        if self.boxes:
            named.append({"stage": "", "what": "val boxes", "path": str(self.boxes)})
        if self.ablation:
            named.append({"stage": "", "what": "ablation summary", "path": str(self.ablation)})
        return named


def _read_stages(inputs: ResultsInputs) -> tuple[dict[str, Stage], list[dict]]:
    """Every stage's files and comparison.csv, checked against each other."""
    missing = [s for s in STAGES if s not in inputs.stage_files]
    if missing:
        raise CirflowError(f"results page: no files for {', '.join(missing)}")
    stages = {s: read_stage(s, inputs.stage_files[s]) for s in STAGES}
    rows = read_comparison(inputs.comparison)
    check_comparison(
        rows,
        {s: st.metrics for s, st in stages.items()},
        inputs.comparison,
        {s: inputs.stage_files[s].metrics for s in STAGES},
    )
    return stages, rows


def _thumbnails(
    inputs: ResultsInputs, stages: dict[str, Stage], settings: dict, region_mode: str
) -> Thumbnails:
    root = root_of_annotation_file(inputs.split_file) if inputs.split_file else None
    max_boxes = (stages["stage2"].hparams.get("settings") or {}).get("max_region_tokens")
    return Thumbnails(
        root,
        "val",
        int(settings["thumb_size"]),
        boxes=load_target_boxes(inputs.boxes) if region_mode == "tokens" else None,
        max_boxes=max_boxes,
    )


def build_results_report(
    inputs: ResultsInputs,
    out_html: str | Path,
    settings: dict | None = None,
    config: dict | None = None,
    region_mode: str = "none",
) -> dict:
    """Write the page of `inputs`; `config`: the subtrees of the rules behind it, shown as
    they are (its `dataset`, CIRR's demo when absent, picks the metrics: `metric_set`);
    `region_mode`: stage 2's. Returns a small summary."""
    start = time.perf_counter()
    settings = {**DEFAULTS, **(settings or {})}
    metrics = metric_set(layout_of((config or {}).get("dataset", "demo")))
    stages, rows = _read_stages(inputs)
    thumbs = _thumbnails(inputs, stages, settings, region_mode)
    chance = stages["stage1"].details.get("chance") or {}
    html = render(
        "results.html",
        title=f"Results: stage 1, control and stage 2 on {metrics.dataset} val",
        dataset=metrics.dataset,
        headline=METRIC_LABELS[metrics.headline],
        version=version(),
        region_mode=region_mode,
        stage_labels=[STAGE_LABELS[s] for s in STAGES],
        curves=curves_section(stages, metrics),
        comparison=comparison_section(rows, stages),
        ablation=ablation_section(inputs.ablation, chance, metrics),
        edit_types=edit_type_section(stages),
        retrievals=retrieval_section(stages, thumbs, settings),
        facts=facts_section(stages, config, settings),
        config=yaml_text(config) if config else None,
        settings=settings,
        sources=inputs.named(stages),
    )
    write_text_atomic(out_html, html)
    seconds = time.perf_counter() - start
    log.info(
        "results page written to %s (%.0f KB, %d thumbnails) in %.2f s",
        out_html,
        len(html) / 1024,
        thumbs.drawn,
        seconds,
    )
    return {"html": str(out_html), "thumbnails": thumbs.drawn, "seconds": round(seconds, 3)}
