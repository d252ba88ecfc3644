"""Time the results page (rule results_report) on the demo.

    .venv/bin/python benchmarks/bench_results_report.py [--workdir .] [--repeat 3]

With a finished demo run in `--workdir` (`make demo`: results/demo/ and benchmarks/runs/demo/)
it times the page on those files. Without one it generates the demo dataset at config.yaml's
sizes in a temp dir and writes, beside it, the files the page reads at config.yaml's epochs
(every loss and val recall per epoch for stage 1, the control and stage 2, val_rankings.json for
every val query, the comparison, benchmark files, stage 2's val boxes): the page draws the same
number of images and reads the same number of rows whatever the model learned, so it costs the
same. Prints the seconds of each build and the median. The target (issue 15): under 30 s.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from cirflow.report.results.inputs import STAGES, StageFiles
from cirflow.report.results.page import ResultsInputs, build_results_report

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 30.0
METRICS = (
    "group_recall_at1",
    "group_recall_at2",
    "group_recall_at3",
    "recall_at1",
    "recall_at5",
    "recall_at10",
    "recall_at50",
    "mean(R@5+R_s@1)",
    "arithmetic_mean",
    "harmonic_mean",
    "geometric_mean",
)
LOSSES = ["loss_itc", "loss_rtc", "loss_align", "loss_total"]


def run_files(workdir: Path, ds: str = "demo") -> dict | None:
    """build_results_report's arguments from a finished run, or None."""
    results, bench = workdir / "results" / ds, workdir / "benchmarks/runs" / ds
    stage_files = {}
    for s in STAGES:
        files = {
            "train_csv": results / f"models/{s}/train_metrics.csv",
            "val_csv": results / f"models/{s}/validation_metrics.csv",
            "hparams": results / f"models/{s}/hparams.json",
            "metrics": results / f"eval/{s}/val_metrics.json",
            "details": results / f"eval/{s}/val_details.json",
            "train_time": bench / f"train_{s}.tsv",
            "eval_time": bench / f"evaluate_{s}.tsv",
        }
        if s != "stage2_control":
            files["rankings"] = results / f"eval/{s}/val_rankings.json"
        if not all(p.is_file() for p in files.values()):
            return None
        stage_files[s] = files
    hparams = json.loads(stage_files["stage2"]["hparams"].read_text())
    boxes = hparams["settings"].get("val_box_file")
    return {
        "stage_files": stage_files,
        "comparison": results / "eval/comparison.csv",
        "split_file": results / "dataset/cirr/image_splits/split.rc2.val.json",
        "region_mode": hparams.get("region_mode", "none"),
        "boxes": workdir / boxes if boxes else None,
    }


def _csv(rows: list[dict], columns: list[str]) -> str:
    lines = [",".join(["epoch", *columns])]
    lines += [",".join([str(r["epoch"]), *(f"{r[c]:.6g}" for c in columns)]) for r in rows]
    return "\n".join(lines) + "\n"


def synthetic_files(root: Path, config: dict) -> dict:
    """The demo dataset at config.yaml's sizes and the page's other inputs beside it."""
    from cirflow.data.demo import DemoSpec, generate_demo
    from cirflow.evaluate.comparison import compare_stages

    demo = config["demo"]
    t0 = time.perf_counter()
    dataset = root / "dataset"
    spec = DemoSpec(
        seed=demo["seed"],
        train_triplets=demo["train_triplets"],
        val_triplets=demo["val_triplets"],
        test1_triplets=demo["test1_triplets"],
    )
    generate_demo(dataset, spec, progress=False)
    print(f"demo dataset generated in {time.perf_counter() - t0:.1f} s (not timed below)")
    val = json.loads((dataset / "cirr/captions/cap.rc2.val.json").read_text())
    gallery = list(json.loads((dataset / "cirr/image_splits/split.rc2.val.json").read_text()))
    epochs = {
        "stage1": config["train"]["stage1"]["num_epochs"],
        "stage2_control": config["train"]["stage2"]["num_epochs"],
        "stage2": config["train"]["stage2"]["num_epochs"],
    }
    rng = random.Random(0)
    stage_files = {}
    for s in STAGES:
        model, ev = root / "models" / s, root / "eval" / s
        model.mkdir(parents=True)
        ev.mkdir(parents=True)
        losses = LOSSES if s != "stage2" else [*LOSSES[:3], "loss_region", "loss_total"]
        train_rows = [
            {"epoch": e, **{c: rng.uniform(0.5, 3) for c in losses}}
            for e in range(1, epochs[s] + 1)
        ]
        val_rows = [
            {"epoch": e, **{k: rng.uniform(0, 100) for k in METRICS}}
            for e in range(1, epochs[s] + 1)
        ]
        best = max(val_rows, key=lambda r: r["arithmetic_mean"])
        (model / "train_metrics.csv").write_text(_csv(train_rows, losses))
        (model / "validation_metrics.csv").write_text(_csv(val_rows, list(METRICS)))
        (model / "hparams.json").write_text(
            json.dumps({"settings": {"seed": 0, "max_region_tokens": 4}, "device": "cpu"})
        )
        (ev / "val_metrics.json").write_text(json.dumps({k: best[k] for k in METRICS}))
        chance = {k: 1.0 for k in METRICS}
        (ev / "val_details.json").write_text(
            json.dumps({"epoch": best["epoch"], "queries": len(val), "chance": chance})
        )
        bench = "s\tmax_rss\tcpu_time\n10.0\t900\t9.0\n"
        (root / f"train_{s}.tsv").write_text(bench)
        (root / f"evaluate_{s}.tsv").write_text(bench)
        stage_files[s] = {
            "train_csv": model / "train_metrics.csv",
            "val_csv": model / "validation_metrics.csv",
            "hparams": model / "hparams.json",
            "metrics": ev / "val_metrics.json",
            "details": ev / "val_details.json",
            "train_time": root / f"train_{s}.tsv",
            "eval_time": root / f"evaluate_{s}.tsv",
        }
        if s != "stage2_control":
            queries = []
            for t in val:
                top = rng.sample([n for n in gallery if n != t["reference"]], 10)
                rank = top.index(t["target_hard"]) + 1 if t["target_hard"] in top else None
                queries.append(
                    {
                        **{k: t[k] for k in ("pairid", "reference", "caption")},
                        "target": t["target_hard"],
                        "rank": rank or rng.choice([None, 12, 30]),
                        "subset_rank": rng.randint(1, 5),
                        "top": top,
                    }
                )
            doc = {"rank_limit": 50, "top_k": 10, "gallery": len(gallery), "queries": queries}
            (ev / "val_rankings.json").write_text(json.dumps(doc))
            stage_files[s]["rankings"] = ev / "val_rankings.json"
    compare_stages(
        stage_files["stage1"]["metrics"],
        stage_files["stage2"]["metrics"],
        root / "comparison.csv",
        control_json=stage_files["stage2_control"]["metrics"],
    )
    boxes = {n: [[0.1, 0.1, 0.6, 0.6], [0.5, 0.5, 0.9, 0.9]] for n in gallery}
    (root / "val_boxes.json").write_text(json.dumps(boxes))
    return {
        "stage_files": stage_files,
        "comparison": root / "comparison.csv",
        "split_file": dataset / "cirr/image_splits/split.rc2.val.json",
        "region_mode": "tokens",
        "boxes": root / "val_boxes.json",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO), help="where a finished demo run is")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    settings = config["report"]["results"]
    with tempfile.TemporaryDirectory(prefix="cirflow-bench-results-") as tmp:
        inputs = run_files(Path(args.workdir))
        if inputs is not None:
            print(f"finished demo run in {args.workdir}")
        else:
            print(f"no finished demo run in {args.workdir}: the demo's sizes, synthetic numbers")
            inputs = synthetic_files(Path(tmp), config)
        region_mode = inputs.pop("region_mode")
        stage_files = {s: StageFiles(**f) for s, f in inputs.pop("stage_files").items()}
        page_inputs = ResultsInputs(stage_files=stage_files, **inputs)
        times = []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            result = build_results_report(
                page_inputs,
                Path(tmp) / f"results-{i}.html",
                settings=settings,
                region_mode=region_mode,
            )
            times.append(time.perf_counter() - t0)
            size = Path(result["html"]).stat().st_size / 1e6
            print(
                f"build {i + 1}: {times[-1]:.2f} s ({result['thumbnails']} thumbnails, {size:.1f} MB)"
            )
    median = statistics.median(times)
    verdict = "OK" if median < TARGET_SECONDS else "TOO SLOW"
    print(
        f"results page: median {median:.2f} s over {len(times)} builds (target < {TARGET_SECONDS:.0f} s): {verdict}"
    )


if __name__ == "__main__":
    main()
