"""Box quality of saliency, (trained) yolo and hybrid on a dataset split with ground truth.

    .venv/bin/python benchmarks/bench_detect_quality.py --dataset results/demo/dataset \
        --weights results/demo/detector/detector.pt [--split val] [--conf 0.25] [--config config.yaml]

Runs each method through the real shard code (`run_shard`, one shard, the config's post-filter)
and prints recall@0.5, precision and mean best IoU per ground-truth box against
<dataset>/boxes_gt.json, plus images/s and hybrid's fallback share.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from cirflow.boxes.detectors import method_config
from cirflow.boxes.quality import box_quality, load_gt
from cirflow.boxes.shards import BoxMethod, ShardSpec, run_shard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="results/demo/dataset")
    parser.add_argument("--split", default="val")
    parser.add_argument("--weights", default="results/demo/detector/detector.pt")
    parser.add_argument("--conf", type=float, default=None, help="override boxes.yolo.conf")
    parser.add_argument("--imgsz", type=int, default=None, help="override boxes.yolo.imgsz")
    parser.add_argument("--config", default="config.yaml", help="take boxes: settings from here")
    parser.add_argument("--preset", default=None, help="a config preset merged over --config")
    parser.add_argument("--methods", default="saliency,yolo,hybrid")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    boxes_cfg = yaml.safe_load(Path(args.config).read_text())["boxes"]
    if args.preset:
        preset = yaml.safe_load(Path(args.preset).read_text()).get("boxes", {})
        for key, value in preset.items():
            if isinstance(value, dict):
                boxes_cfg[key] = {**boxes_cfg.get(key, {}), **value}
            else:
                boxes_cfg[key] = value
    boxes_cfg.setdefault("yolo", {})["weights"] = args.weights
    if args.conf is not None:
        boxes_cfg["yolo"]["conf"] = args.conf
    if args.imgsz is not None:
        boxes_cfg["yolo"]["imgsz"] = args.imgsz
    gt = load_gt(Path(args.dataset) / "boxes_gt.json")
    figures = {}
    for method in args.methods.split(","):
        start = time.perf_counter()
        result = run_shard(
            args.dataset,
            ShardSpec(args.split, 0, 1, args.max_images),
            BoxMethod(method, method_config(boxes_cfg, method), boxes_cfg["postfilter"]),
            out_path=None,
            decode_workers=1,
            progress=False,
        )
        seconds = time.perf_counter() - start
        q = box_quality(result["boxes"], gt)
        sources = [m.get("source") for m in result["meta"].values()]
        q["images_per_s"] = round(len(result["boxes"]) / seconds, 1)
        if method == "hybrid":
            q["fallback_share"] = round(sources.count("saliency") / max(1, len(sources)), 4)
        figures[method] = q
        extra = (
            f", saliency fallback on {100 * q['fallback_share']:.1f}%"
            if "fallback_share" in q
            else ""
        )
        print(
            f"{method:9s} {args.split}: recall@0.5 {100 * q['recall']:5.1f}%  "
            f"precision {100 * q['precision']:5.1f}%  mean best IoU {q['mean_best_iou']:.3f}  "
            f"({q['images']} images, {q['gt_boxes']} gt boxes, {q['pred_boxes']} predicted, "
            f"{q['images_per_s']} img/s{extra})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
