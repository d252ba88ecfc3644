"""The results page (rule results_report): its numbers are the files', the retrievals it picks,
the stale-comparison check, and what the two pages wait for."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
from conftest import make_workflow_copy, planned_jobs, write_mini_cirr
from test_report import parse

from cirflow.errors import CirflowError
from cirflow.evaluate.recall import METRIC_KEYS
from cirflow.report.results.inputs import STAGES, StageFiles
from cirflow.report.results.page import ResultsInputs, build_results_report
from cirflow.report.results.retrievals import pick

LOSSES = {
    "stage1": ["loss_itc", "loss_rtc", "loss_align", "loss_total"],
    "stage2_control": ["loss_itc", "loss_rtc", "loss_align", "loss_total"],
    "stage2": ["loss_itc", "loss_rtc", "loss_align", "loss_region", "loss_total"],
}
EPOCHS = {"stage1": 3, "stage2_control": 2, "stage2": 2}
EDITS = ("color", "shape", "count")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _csv(rows: list[dict], columns: list[str]) -> str:
    from cirflow.io import csv_text

    return csv_text(rows, ["epoch", *columns])


def _rankings(val_triplets, gallery, rng) -> dict:
    """A val_rankings.json: random ranks (some beyond the limit), top lists without the
    reference and with the target at its rank."""
    queries = []
    for t in val_triplets:
        rank = rng.choice([1, 2, 3, 5, 8, None])
        others = [n for n in gallery if n not in (t["reference"], t["target_hard"])]
        rng.shuffle(others)
        top = others[:10]
        if rank is not None and rank <= 10:
            top.insert(rank - 1, t["target_hard"])
        queries.append(
            {
                "pairid": t["pairid"],
                "reference": t["reference"],
                "caption": t["caption"],
                "target": t["target_hard"],
                "rank": rank,
                "subset_rank": rng.randint(1, 2),
                "top": top[:10],
                "edit_type": EDITS[t["pairid"] % 3],
            }
        )
    return {
        "split": "val",
        "top_k": 10,
        "rank_limit": 50,
        "gallery": len(gallery),
        "queries": queries,
    }


def make_results_inputs(dest: Path, with_ablation: bool = True) -> dict:
    """A small CIRR-layout dataset and, per stage, workflow-style training, evaluation and
    benchmark files (numbers with many digits, so that rounding shows), the comparison (as
    compare_stages writes it), val boxes and, optionally, the ablation's summary.csv.
    Returns the files and the page's settings (`build_page` writes the page from them)."""
    from cirflow.evaluate.ablation import Run, summary_csv, summary_rows
    from cirflow.evaluate.comparison import compare_stages

    root = dest / "dataset"
    names = write_mini_cirr(root, n_images=21)
    val = json.loads((root / "cirr/captions/cap.rc2.val.json").read_text())
    rng = random.Random(1)
    stage_files = {}
    for s_i, stage in enumerate(STAGES):
        model, ev = dest / "models" / stage, dest / "eval" / stage
        train_rows = [
            {"epoch": e, **{c: rng.uniform(0.5, 3.0) for c in LOSSES[stage]}}
            for e in range(1, EPOCHS[stage] + 1)
        ]
        val_rows = [
            {"epoch": e, **{k: rng.uniform(0, 100) for k in METRIC_KEYS}}
            for e in range(1, EPOCHS[stage] + 1)
        ]
        best = max(val_rows, key=lambda r: r["arithmetic_mean"])
        metrics = {k: best[k] + 1e-7 * (s_i + 1) for k in METRIC_KEYS}
        metrics["per_edit_type"] = {
            e: {
                "recall_at1": rng.uniform(0, 100),
                "recall_at5": rng.uniform(0, 100),
                "group_recall_at1": rng.uniform(0, 100),
                "queries": 3 + i,
            }
            for i, e in enumerate(EDITS)
        }
        chance = {k: 100 / (len(names["val"]) - 1) for k in METRIC_KEYS}
        details = {
            "epoch": best["epoch"],
            "queries": len(val) - 1,
            "gallery": len(names["val"]) - 1,
            "chance": chance,
            "unreadable_images": [{"image": names["val"][-1], "error": "truncated file"}],
            "queries_left_out": [{"pairid": val[-1]["pairid"], "images": [names["val"][-1]]}],
            "edit_types": "dataset/cirr/captions/edits.rc2.val.json",
        }
        hparams = {
            "settings": {
                "seed": 7 + s_i,
                "num_epochs": EPOCHS[stage],
                "batch_size": 4,
                "max_region_tokens": 2,
                "init_checkpoint": None if stage == "stage1" else "models/stage1/best.pt",
            },
            "device": "cpu",
            "amp": False,
            "train_triplets": 9 - s_i,
            "steps_per_epoch": 2,
            "region_mode": "tokens" if stage == "stage2" else "none",
            "unreadable": {
                "train": {
                    "images": 1,
                    "triplets_left_out": 1,
                    "triplets_used": 9,
                    "list": [{"image": names["train"][0], "error": "cannot identify image"}],
                },
                "val": {"images": 0, "triplets_left_out": 0, "triplets_used": 9, "list": []},
            },
        }
        files = {
            "train_csv": _write(model / "train_metrics.csv", _csv(train_rows, LOSSES[stage])),
            "val_csv": _write(model / "validation_metrics.csv", _csv(val_rows, list(METRIC_KEYS))),
            "hparams": _write(model / "hparams.json", json.dumps(hparams)),
            "metrics": _write(ev / "val_metrics.json", json.dumps(metrics)),
            "details": _write(ev / "val_details.json", json.dumps(details)),
        }
        for kind, seconds in (("train", 12.25 + s_i), ("evaluate", 3.5 + s_i)):
            files[f"{'train' if kind == 'train' else 'eval'}_time"] = _write(
                dest / f"benchmarks/{kind}_{stage}.tsv",
                "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                f"{seconds}\t0:00:12\t950.5\t4000\t500\t700\t0\t1\t90\t11.0\n",
            )
        if stage in ("stage1", "stage2"):
            files["rankings"] = _write(
                ev / "val_rankings.json",
                json.dumps(_rankings(val[:-1], names["val"][:-1], rng)),
            )
        stage_files[stage] = files
    comparison = dest / "eval/comparison.csv"
    compare_stages(
        stage_files["stage1"]["metrics"],
        stage_files["stage2"]["metrics"],
        comparison,
        control_json=stage_files["stage2_control"]["metrics"],
    )
    boxes = _write(
        dest / "boxes/val.json",
        json.dumps({n: [[0.1, 0.1, 0.6, 0.5], [0.5, 0.5, 0.9, 0.8]] for n in names["val"]}),
    )
    ablation = None
    if with_ablation:
        runs = [
            Run(mode, source, seed, {k: rng.uniform(0, 100) for k in METRIC_KEYS})
            for mode, source in (("none", None), ("tokens", "saliency"), ("aux", "saliency"))
            for seed in (0, 1, 2)
        ]
        ablation = _write(dest / "ablation/summary.csv", summary_csv(summary_rows(runs)))
    return {
        "stage_files": stage_files,
        "comparison": comparison,
        "split_file": root / "cirr/image_splits/split.rc2.val.json",
        "settings": {"queries": 3, "changed": 2, "top": 4, "seed": 0, "thumb_size": 64},
        "config": {"model": {"preset": "tiny"}, "demo": {"seed": 3}},
        "region_mode": "tokens",
        "boxes": boxes,
        "ablation": ablation,
    }


def build_page(out: Path, inputs: dict) -> dict:
    """build_results_report on `make_results_inputs`' files and settings."""
    page_inputs = ResultsInputs(
        stage_files={s: StageFiles(**files) for s, files in inputs["stage_files"].items()},
        comparison=inputs["comparison"],
        split_file=inputs["split_file"],
        boxes=inputs["boxes"],
        ablation=inputs["ablation"],
    )
    return build_results_report(
        page_inputs,
        out,
        settings=inputs["settings"],
        config=inputs["config"],
        region_mode=inputs["region_mode"],
    )


def expected_image_count(inputs: dict) -> int:
    """Curves (one per stage), the ablation plot, and per retrieval row the reference, the
    target and the top images of both stages."""
    rankings = [
        json.loads(Path(inputs["stage_files"][s]["rankings"]).read_text())
        for s in ("stage1", "stage2")
    ]
    s = inputs["settings"]
    rows = sum(len(g["pairs"]) for g in pick(*rankings, s["queries"], s["changed"], s["seed"]))
    return len(STAGES) + (1 if inputs["ablation"] else 0) + rows * (2 + 2 * s["top"])


@pytest.fixture
def inputs(tmp_path):
    return make_results_inputs(tmp_path / "results")


def _cells(page, **match) -> list[tuple[dict, str]]:
    return [
        (a, text)
        for a, text in page.cells
        if all(a.get(f"data-{k.replace('_', '-')}") == v for k, v in match.items())
    ]


def _csv_rows(path) -> tuple[list[str], list[list[str]]]:
    header, *rows = [line.split(",") for line in Path(path).read_text().splitlines()]
    return header, rows


def check_page_numbers(html: Path, inputs: dict) -> None:
    """Every number the page shows equals the file it comes from (shared with the slow test on
    a real run)."""
    page = parse(html)
    files = inputs["stage_files"]
    metrics = {s: json.loads(Path(f["metrics"]).read_text()) for s, f in files.items()}
    details = {s: json.loads(Path(f["details"]).read_text()) for s, f in files.items()}
    # The comparison: exact values from val_metrics.json, text and deltas as comparison.csv.
    header, rows = _csv_rows(inputs["comparison"])
    table = _table_cells(html, "stages")
    assert len(rows) == len(METRIC_KEYS) == len(table)
    for row in rows:
        csv_row = dict(zip(header, row, strict=True))
        cells = table[csv_row["metric"]]
        for stage in STAGES:
            value, text = cells[stage]
            assert float(value) == metrics[stage][csv_row["metric"]], (row, stage)
            assert text == csv_row[stage], (row, stage)
        for delta in ("delta_vs_control", "delta_vs_stage1"):
            assert cells[delta][1] == csv_row[delta], (row, delta)
        assert float(cells["chance"][0]) == details["stage1"]["chance"][csv_row["metric"]]
    # Curves: every CSV cell, per stage and epoch.
    for stage, f in files.items():
        for kind, path in (("train", f["train_csv"]), ("val", f["val_csv"])):
            header, rows = _csv_rows(path)
            shown = _epoch_cells(html, stage, kind)
            assert len(shown) == len(rows) * (len(header) - 1), (stage, kind)
            for row in rows:
                for column, value in zip(header[1:], row[1:], strict=True):
                    assert float(shown[(int(row[0]), column)]) == float(value), (stage, column)
        ((figure, _),) = [
            c
            for c in page.cells
            if c[0].get("id") == f"curves-{stage}" and "data-best-epoch" in c[0]
        ]
        assert int(figure["data-best-epoch"]) == details[stage]["epoch"]
    # Per edit type: R@1 and Rs@1 of each stage.
    edits = _edit_cells(html)
    for stage in STAGES:
        for edit, m in (metrics[stage].get("per_edit_type") or {}).items():
            for key in ("recall_at1", "group_recall_at1"):
                assert float(edits[(edit, stage, key)]) == m[key], (stage, edit, key)
    # Run facts: benchmark seconds, best epochs, triplets used.
    for stage, f in files.items():
        facts = {
            a["data-fact"]: a
            for a, _ in page.cells
            if a.get("data-stage") == stage and "data-fact" in a
        }
        train_s = Path(f["train_time"]).read_text().splitlines()[1].split("\t")[0]
        eval_s = Path(f["eval_time"]).read_text().splitlines()[1].split("\t")[0]
        assert float(facts["train_seconds"]["data-value"]) == float(train_s)
        assert float(facts["eval_seconds"]["data-value"]) == float(eval_s)
        assert int(facts["best_epoch"]["data-value"]) == details[stage]["epoch"]
        hparams = json.loads(Path(f["hparams"]).read_text())
        assert (
            int(facts["train_used"]["data-value"])
            == hparams["unreadable"]["train"]["triplets_used"]
        )
        assert int(facts["val_used"]["data-value"]) == details[stage]["queries"]
    # Retrievals: the ranks shown are the rankings files'.
    for stage in ("stage1", "stage2"):
        ranks = {
            q["pairid"]: q
            for q in json.loads(Path(files[stage]["rankings"]).read_text())["queries"]
        }
        for pairid, rank, subset in _retrieval_ranks(html, stage):
            expected = ranks[pairid]["rank"]
            assert rank == ("" if expected is None else str(expected)), (stage, pairid)
            assert int(subset) == ranks[pairid]["subset_rank"]
    # The ablation: means and paired deltas as summary.csv says.
    if inputs.get("ablation"):
        header, rows = _csv_rows(inputs["ablation"])
        shown = _ablation_cells(html)
        for row in rows:
            r = dict(zip(header, row, strict=True))
            kind = r["mode"] if r["box_source"] == "-" else f"{r['mode']} / {r['box_source']}"
            if (("ablation-means", kind, r["metric"])) not in shown:
                continue  # a metric the tables leave out (every one is in the CSV)
            assert float(shown[("ablation-means", kind, r["metric"])]) == float(r["mean"])
            if r["mode"] != "none":
                assert float(shown[("ablation-deltas", kind, r["metric"])]) == float(
                    r["delta_vs_none"]
                )


# Small targeted readers of the page (the generic PageParser flattens rows).
def _table_cells(html: Path, table_id: str) -> dict[str, dict[str, tuple[str, str]]]:
    text = html.read_text()
    body = text.split(f'<table id="{table_id}">', 1)[1].split("</table>", 1)[0]
    out = {}
    for metric, row in re.findall(r'<tr data-metric="([^"]+)">(.*?)</tr>', body, re.S):
        cells = {}
        for attrs, value in re.findall(r"<td ([^>]*)>([^<]*)</td>", row):
            a = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', attrs))
            key = (
                a.get("data-stage")
                or a.get("data-delta")
                or ("chance" if "data-chance" in a else None)
            )
            if key:
                cells[key] = (a.get("data-value", a.get("data-chance")), value.strip())
        out[metric.replace("&#34;", '"').replace("&amp;", "&")] = cells
    return out


def _epoch_cells(html: Path, stage: str, kind: str) -> dict[tuple[int, str], str]:
    text = html.read_text()
    body = text.split(f'<table class="epochs" data-stage="{stage}" data-kind="{kind}">', 1)[1]
    body = body.split("</table>", 1)[0]
    out = {}
    for epoch, row in re.findall(r'<tr data-epoch="(\d+)"[^>]*>(.*?)</tr>', body, re.S):
        for column, value in re.findall(r'data-column="([^"]+)" data-value="([^"]*)"', row):
            out[(int(epoch), column.replace("&#34;", '"').replace("&amp;", "&"))] = value
    return out


def _edit_cells(html: Path) -> dict[tuple[str, str, str], str]:
    out = {}
    for edit, row in re.findall(r'<tr data-edit-type="([^"]+)">(.*?)</tr>', html.read_text(), re.S):
        cells = re.findall(r'data-stage="([^"]+)" data-metric="([^"]+)" data-value="([^"]*)"', row)
        for stage, key, value in cells:
            out[(edit, stage, key)] = value
    return out


def _retrieval_ranks(html: Path, stage: str) -> list[tuple[int, str, str]]:
    text = html.read_text()
    out = []
    for pairid, row in re.findall(r'<tr data-pairid="(\d+)">(.*?)</tr>', text, re.S):
        rank = re.search(rf'data-stage="{stage}" data-rank="([^"]*)"', row).group(1)
        subset = re.search(rf'data-stage="{stage}" data-subset-rank="([^"]*)"', row).group(1)
        out.append((int(pairid), rank, subset))
    return out


def _ablation_cells(html: Path) -> dict[tuple[str, str, str], str]:
    text = html.read_text()
    out = {}
    for table_id in ("ablation-means", "ablation-deltas"):
        body = text.split(f'<table id="{table_id}">', 1)[1].split("</table>", 1)[0]
        for kind, row in re.findall(r'<tr data-kind="([^"]+)">(.*?)</tr>', body, re.S):
            for metric, value in re.findall(r'data-metric="([^"]+)" data-value="([^"]*)"', row):
                out[(table_id, kind, metric)] = value
    return out


# ------------------------------------------------------------------------------------ tests
def test_the_page_shows_the_numbers_of_its_files(inputs, tmp_path):
    out = tmp_path / "report/results.html"
    result = build_page(out, inputs)
    check_page_numbers(out, inputs)
    html = out.read_text()
    for section in ("curves", "comparison", "ablation", "edit-types", "retrievals", "facts"):
        assert f'id="{section}"' in html, section
    assert "sanity check" in html and "docs/design.md §11" in html
    # Self-contained: nothing to fetch; every image embedded.
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)
    images = parse(out).images
    assert len(images) == expected_image_count(inputs)
    assert all(i["src"].startswith("data:image/") for i in images)
    assert result["thumbnails"] > 0
    # What was left out and why.
    assert "truncated file" in html and "cannot identify image" in html


def test_a_page_without_the_ablation_or_the_images_still_renders(tmp_path):
    inputs = make_results_inputs(tmp_path / "results", with_ablation=False)
    out = tmp_path / "results.html"
    build_page(out, {**inputs, "split_file": None})
    html = out.read_text()
    assert 'id="ablation-missing"' in html and "snakemake ablation" in html
    assert "The images cannot be shown" in html
    assert len(parse(out).images) == len(STAGES)  # the curves only
    check_page_numbers(out, {**inputs, "split_file": None})


def test_a_stale_or_broken_comparison_is_an_error(inputs, tmp_path):
    out = tmp_path / "results.html"
    path = Path(inputs["stage_files"]["stage2"]["metrics"])
    metrics = json.loads(path.read_text())
    metrics["recall_at1"] += 1.0
    path.write_text(json.dumps(metrics))
    with pytest.raises(CirflowError, match="stale comparison"):
        build_page(out, inputs)
    Path(inputs["comparison"]).write_text("")
    with pytest.raises(CirflowError, match="empty"):
        build_page(out, inputs)
    assert not out.exists()


def test_the_retrievals_are_a_seeded_sample_and_the_largest_rank_changes():
    def doc(ranks):
        return {
            "rank_limit": 50,
            "queries": [
                {"pairid": p, "rank": r, "subset_rank": 1, "top": []} for p, r in ranks.items()
            ],
        }

    first = doc({1: 3, 2: None, 3: 10, 4: 1, 5: 7, 6: 2})
    second = doc({1: 3, 2: 4, 3: 1, 4: 9, 5: None, 6: 1})
    groups = {g["key"]: g for g in pick(first, second, queries=3, changed=2, seed=0)}
    # Gains: 2 (>50 -> 4: 47), then 3 (10 -> 1: 9); losses: 5 (7 -> >50: -44), then 4 (-8).
    assert [p[0]["pairid"] for p in groups["better"]["pairs"]] == [2, 3]
    assert [p[0]["pairid"] for p in groups["worse"]["pairs"]] == [5, 4]
    sample = [p[0]["pairid"] for p in groups["sample"]["pairs"]]
    assert len(sample) == 3 and sample == sorted(sample)
    # The same queries whatever the files' order; another seed, another sample.
    shuffled = {**first, "queries": first["queries"][::-1]}
    again = pick(shuffled, second, queries=3, changed=2, seed=0)[0]
    assert [p[0]["pairid"] for p in again["pairs"]] == sample
    others = {
        tuple(p[0]["pairid"] for p in pick(first, second, 3, 2, seed)[0]["pairs"])
        for seed in range(1, 6)
    }
    assert others - {tuple(sample)}


def test_the_page_reads_the_tables_with_the_model_sides_own_names():
    from cirflow.data import result_files
    from cirflow.evaluate import ablation, comparison
    from cirflow.report.results import figures, inputs, page
    from cirflow.train.runs import STAGES as TRAIN_STAGES

    # One home for the tables' columns and metric names (cirflow.data.result_files).
    assert inputs.COMPARISON_COLUMNS is comparison.COMPARISON_COLUMNS
    assert inputs.ABLATION_COLUMNS is ablation.ABLATION_COLUMNS
    assert inputs.STAGES == TRAIN_STAGES
    assert page.METRIC_LABELS is ablation.METRIC_LABELS
    # Which metrics are shown and plotted: the dataset's metric set, one object for both sides.
    assert figures.ABLATION_PLOTTED is result_files.CIRR_METRICS.plotted
    assert page.metric_set is result_files.metric_set
    assert ablation.CIRR_METRICS is page.CIRR_METRICS is result_files.CIRR_METRICS


def test_the_page_imports_no_model_code(repo):
    """The page's job needs no torch (its closure holds no model-side module either)."""
    import subprocess
    import sys

    code = "import sys, cirflow.report.results.page; print('torch' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_the_removed_report_key_says_what_replaced_it(repo):
    import yaml

    from cirflow.config import config_errors

    config = yaml.safe_load((repo / "config.yaml").read_text())
    config["report"]["training_comparison"] = True
    (error,) = config_errors(config, repo / "schemas/config.schema.yaml")
    assert error.startswith("report.training_comparison: removed") and "results.html" in error


def test_each_page_waits_only_for_what_it_shows(tmp_path):
    """The box page never waits for training; the results page waits for training and
    evaluation but never for the ablation, not even once its summary exists."""
    workdir = make_workflow_copy(tmp_path / "wf")
    jobs = planned_jobs(workdir, "results/demo/report/boxes_saliency.html")
    assert "box_report" in jobs
    assert not {"train:stage1", "train:stage2", "evaluate", "compare_stages"} & set(jobs)
    _write(workdir / "results/demo/ablation/summary.csv", "mode,box_source\n")
    everything = planned_jobs(workdir)
    assert everything["results_report"] == 1 and everything["box_report"] == 1
    assert everything["evaluate"] == 3 and everything["train:stage2_control"] == 1
    assert not {r for r in everything if r.startswith(("ablation", "gt_boxes"))}
    assert "stage_report" not in everything


@pytest.mark.slow
def test_the_workflow_page_equals_its_files(finished_demo_run):
    """On a real small run: the page's numbers are the files', and val_rankings.json's ranks
    are the ones the recalls came from."""
    results = finished_demo_run / "results/demo"
    bench = finished_demo_run / "benchmarks/runs/demo"
    stage_files = {
        s: {
            "train_csv": results / f"models/{s}/train_metrics.csv",
            "val_csv": results / f"models/{s}/validation_metrics.csv",
            "hparams": results / f"models/{s}/hparams.json",
            "metrics": results / f"eval/{s}/val_metrics.json",
            "details": results / f"eval/{s}/val_details.json",
            "train_time": bench / f"train_{s}.tsv",
            "eval_time": bench / f"evaluate_{s}.tsv",
            **(
                {"rankings": results / f"eval/{s}/val_rankings.json"}
                if s != "stage2_control"
                else {}
            ),
        }
        for s in STAGES
    }
    inputs = {"stage_files": stage_files, "comparison": results / "eval/comparison.csv"}
    html = results / "report/results.html"
    check_page_numbers(html, inputs)
    assert "tokens" in html.read_text()  # the demo's region mode, boxes drawn
    for stage in STAGES:
        metrics = json.loads((results / f"eval/{stage}/val_metrics.json").read_text())
        doc = json.loads((results / f"eval/{stage}/val_rankings.json").read_text())
        queries = doc["queries"]
        for k in (1, 5, 10, 50):
            share = 100 * sum(q["rank"] is not None and q["rank"] <= k for q in queries)
            assert math.isclose(share / len(queries), metrics[f"recall_at{k}"], rel_tol=1e-5)
        for k in (1, 2, 3):
            share = 100 * sum(q["subset_rank"] <= k for q in queries) / len(queries)
            assert math.isclose(share, metrics[f"group_recall_at{k}"], rel_tol=1e-5)
        for q in queries:
            assert q["reference"] not in q["top"]
            if q["rank"] is not None and q["rank"] <= len(q["top"]):
                assert q["top"][q["rank"] - 1] == q["target"]


@pytest.mark.slow
def test_snakemake_report_wraps_the_results_page(finished_demo_run):
    from conftest import run_snakemake

    run_snakemake(
        finished_demo_run, "results/demo/report/results.html", "--report", "training_report.html"
    )
    html = (finished_demo_run / "training_report.html").read_text()
    assert "results.html" in html and "Training" in html
    assert "The results page of dataset" in html  # rules/report/results_report.rst
