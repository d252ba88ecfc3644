"""Time the box validation report on a synthetic 20,000-image split.

    .venv/bin/python benchmarks/bench_report.py [--images 20000] [--samples 12] [--extra 6]

Builds, in a temp dir, a CIRR-layout split of N images (a few hundred distinct CIRR-sized PNGs,
hard-linked under N names, so every file exists and decodes for real), a yolo-like box file with
0-8 boxes per image, its sidecar (sizes, scores, 20 classes, unreadable images) and its stats,
then times the workflow's report (`build_method_report`) and the CLI path (stats computed on the
fly). The target (issue 4): drawing only the sample, under 60 s for 20,000 images.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cirflow.boxes.stats import compute_stats
from cirflow.data.box_format import box_area
from cirflow.report.boxes import (
    MethodFiles,
    PageOptions,
    build_boxes_report,
    build_method_report,
    load_source,
)

CLASSES = [f"class_{i}" for i in range(20)]
DISTINCT_IMAGES = 200
TARGET_SECONDS = 60.0


def make_inputs(root: Path, n_images: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    split_map, boxes, images_meta, errors = {}, {}, {}, []
    originals = []
    for i in range(DISTINCT_IMAGES):
        w, h = rng.choice([(500, 375), (640, 480), (375, 500), (800, 600)])
        arr = nprng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        path = root / "originals" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).resize((w, h), Image.Resampling.BILINEAR).save(path)
        originals.append((path, (w, h)))
    for i in range(n_images):
        name = f"train-{i}-{i % 4}-img{i % 2}"
        rel = f"./train/{i % 100}/{name}.png"
        src, size = originals[i % DISTINCT_IMAGES]
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dest)
        split_map[name] = rel
        if i % 997 == 0:
            boxes[name] = []
            errors.append({"image": name, "error": "cannot decode image: synthetic error"})
            continue
        image_boxes = []
        for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4, 5, 8])):
            x1, y1 = rng.random() * 0.7, rng.random() * 0.7
            image_boxes.append(
                [
                    round(x1, 6),
                    round(y1, 6),
                    round(x1 + 0.05 + rng.random() * 0.25, 6),
                    round(y1 + 0.05 + rng.random() * 0.25, 6),
                ]
            )
        image_boxes.sort(key=box_area, reverse=True)
        if i % 4999 == 1 and image_boxes:
            image_boxes[0] = [0.1, 0.1, 450.0, 300.0]  # pixel coordinates: invalid
        boxes[name] = image_boxes
        images_meta[name] = {
            "size": list(size),
            "scores": [round(rng.random(), 4) for _ in image_boxes],
            "labels": [rng.choice(CLASSES) for _ in image_boxes],
            "source": "yolo",
        }
    (root / "cirr/image_splits").mkdir(parents=True, exist_ok=True)
    split_file = root / "cirr/image_splits/split.rc2.train.json"
    split_file.write_text(json.dumps(split_map))
    out = root / "results/bench/boxes/yolo"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"method": "yolo", "split": "train", "images": images_meta, "errors": errors}
    (out / "train.json").write_text(json.dumps(boxes))
    (out / "train.meta.json").write_text(json.dumps(meta))
    return {"split_file": split_file, "boxes": out / "train.json", "meta": out / "train.meta.json"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--extra", type=int, default=6)
    parser.add_argument("--keep", default=None, help="write the inputs and pages here")
    args = parser.parse_args()
    settings = {"samples_per_split": args.samples, "extra_per_group": args.extra, "seed": 0}

    with tempfile.TemporaryDirectory(prefix="cirflow-bench-report-") as tmp:
        root = Path(args.keep or tmp)
        t0 = time.perf_counter()
        files = make_inputs(root, args.images)
        print(f"inputs: {args.images:,} images written in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        stats = compute_stats(
            json.loads(files["boxes"].read_text()), json.loads(files["meta"].read_text())
        )
        stats_path = files["boxes"].with_name("train.stats.json")
        stats_path.write_text(json.dumps(stats))
        print(f"stats (rule box_stats, not part of the report): {time.perf_counter() - t0:.2f} s")

        t0 = time.perf_counter()
        method_files = MethodFiles(
            boxes=[str(files["boxes"])],
            metas=[str(files["meta"])],
            stats=[str(stats_path)],
            split_files=[str(files["split_file"])],
        )
        result = build_method_report(
            method_files,
            root / "report/boxes_yolo.html",
            plots_dir=root / "report/boxes_yolo_plots",
            settings=settings,
            method="yolo",
        )
        workflow_s = time.perf_counter() - t0
        size_kb = Path(result["html"]).stat().st_size / 1024
        print(
            f"report (rule box_report): {workflow_s:.2f} s for {args.images:,} images, "
            f"{result['images_drawn']} drawn, page {size_kb:.0f} KB"
        )

        t0 = time.perf_counter()
        build_boxes_report(
            [load_source(files["boxes"])],
            root / "report/cli.html",
            PageOptions(cirr_root=root, settings=settings),
        )
        cli_s = time.perf_counter() - t0
        print(f"report (CLI, stats computed on the fly): {cli_s:.2f} s")

    worst = max(workflow_s, cli_s)
    verdict = "OK" if worst < TARGET_SECONDS else "TOO SLOW"
    print(f"{verdict}: {worst:.2f} s against the {TARGET_SECONDS:.0f} s target")
    return 0 if worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
