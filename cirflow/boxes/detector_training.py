"""Train a small ultralytics detector on the demo's ground-truth boxes (real YOLO weights offline).

There is no yolov8n.pt without internet, so the demo trains its own detector: the yolov8n
architecture from ultralytics' `yolov8n.yaml` (random init, nothing downloaded), one class
("object"), on the ground-truth boxes of the demo's *train* split, on the CPU, in a few minutes,
with ultralytics' own training API and dataset format:

    <out>/yolo_dataset/data.yaml                 path/train/val/names (ultralytics dataset yaml)
    <out>/yolo_dataset/images/{train,val}/*.png  symlinks to the demo images (copies where links fail)
    <out>/yolo_dataset/labels/{train,val}/*.txt  "0 cx cy w h" per box, normalised
    <out>/run/                                   ultralytics' run folder (args.yaml, results.csv, weights/)
    <weights_out>                                the final weights (last epoch), for boxes.yolo.weights
    <summary_out>                                settings, timing and the losses of the last epoch

The val split is only used for ultralytics' end-of-training validation printout (a small subset);
the weights are the last epoch's, never chosen on val. Box quality on val is measured separately
(`cirflow boxes quality`, the stats JSON).
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import time
from pathlib import Path

from cirflow.data.box_format import box_problem
from cirflow.data.cirr import CirrDataset
from cirflow.errors import CirflowError
from cirflow.io import (
    atomic_path,
    failed_writes_named,
    read_json,
    write_json_atomic,
    write_text_atomic,
)

log = logging.getLogger(__name__)

CLASS_NAME = "object"
DEFAULTS = {
    "model": "yolov8n.yaml",
    "epochs": 8,
    "imgsz": 160,
    "batch": 16,
    "max_images": 600,
    "val_images": 100,
    "lr0": 0.002,
    "seed": 0,
    "device": "cpu",
}


def _label_lines(boxes: list) -> list[str]:
    lines = []
    for box in boxes:
        if box_problem(box) is not None:
            continue
        x1, y1, x2, y2 = box
        lines.append(f"0 {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}")
    return lines


def _link(src: Path, dst: Path) -> None:
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    try:
        os.symlink(os.path.relpath(src.resolve(), dst.parent.resolve()), dst)
    except OSError:
        shutil.copyfile(src, dst)


def _spread(names: list[str], k: int | None) -> list[str]:
    """k names spread evenly over the sorted list (all families, not the first few)."""
    names = sorted(names)
    if k is None or k >= len(names):
        return names
    step = len(names) / k
    return [names[int(i * step)] for i in range(k)]


def write_yolo_dataset(
    dataset_root: str | Path,
    gt_path: str | Path,
    out_dir: str | Path,
    max_images: int | None = None,
    val_images: int = 100,
) -> Path:
    """Write an ultralytics detection dataset (train from the train split, val from val)."""
    gt = read_json(gt_path, what="ground-truth box file")
    if not isinstance(gt, dict):
        raise CirflowError(f"{gt_path}: expected a box file (image name -> boxes)")
    out = Path(out_dir)
    counts = {}
    for part, split, k in (("train", "train", max_images), ("val", "val", val_images)):
        dataset = CirrDataset(dataset_root, split, with_captions=False)
        names = [n for n in _spread(list(dataset.images), k) if n in gt]
        if not names:
            raise CirflowError(f"{gt_path}: no ground-truth boxes for the {split} split")
        img_dir, lbl_dir = out / "images" / part, out / "labels" / part
        for d in (img_dir, lbl_dir):
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
        (out / "labels" / f"{part}.cache").unlink(missing_ok=True)  # ultralytics' label cache
        rebuilt = f"{out} is rebuilt from the start when the job reruns"
        for name in names:
            src = dataset.image_path(name)
            image, label = img_dir / f"{name}{src.suffix.lower()}", lbl_dir / f"{name}.txt"
            with failed_writes_named(image, rebuilt):
                _link(src, image)
            with failed_writes_named(label, rebuilt):
                label.write_text("\n".join(_label_lines(gt[name])) + "\n")
        counts[part] = len(names)
    data_yaml = out / "data.yaml"
    write_text_atomic(
        data_yaml,
        f"# written by cirflow.boxes.detector_training: {counts['train']} train, "
        f"{counts['val']} val images\n"
        f"path: {out.resolve()}\ntrain: images/train\nval: images/val\n"
        f"names:\n  0: {CLASS_NAME}\n",
    )
    return data_yaml


def _last_row(results_csv: Path) -> dict:
    if not results_csv.exists():
        return {}
    with open(results_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k.strip(): float(v) for k, v in rows[-1].items() if v not in (None, "")}


def train_detector(
    dataset_root: str | Path,
    gt_path: str | Path,
    out_dir: str | Path,
    weights_out: str | Path,
    summary_out: str | Path | None = None,
    threads: int | None = None,
    **settings,
) -> dict:
    """Train the demo detector; write `weights_out` (atomically) and a summary JSON."""
    cfg = _detector_settings(settings)
    import torch
    from ultralytics import YOLO

    if threads:
        torch.set_num_threads(int(threads))
    out = Path(out_dir)
    start = time.time()
    data_yaml = write_yolo_dataset(
        dataset_root, gt_path, out / "yolo_dataset", cfg["max_images"], cfg["val_images"]
    )
    torch.manual_seed(int(cfg["seed"]))
    model = YOLO(cfg["model"], task="detect")
    run_dir = out / "run"
    model.train(**_ultralytics_train_args(cfg, data_yaml, run_dir))
    _copy_last_weights(run_dir, weights_out)
    summary = {
        "weights": str(weights_out),
        "settings": cfg,
        "threads": threads,
        "class": CLASS_NAME,
        "dataset": str(data_yaml),
        "seconds": round(time.time() - start, 1),
        "last_epoch": _last_row(run_dir / "results.csv"),
    }
    if summary_out is not None:
        write_json_atomic(summary_out, summary, indent=2)
    log.info("demo detector trained in %.0f s -> %s", summary["seconds"], weights_out)
    return summary


def _detector_settings(settings: dict) -> dict:
    """DEFAULTS overridden by config `boxes.detector` (its `train` and `threads` keys are the
    workflow's, not ultralytics')."""
    unknown = sorted(set(settings) - set(DEFAULTS) - {"train", "threads"})
    if unknown:
        raise CirflowError(f"boxes.detector: unknown key(s) {', '.join(unknown)}")
    return {**DEFAULTS, **{k: v for k, v in settings.items() if k in DEFAULTS}}


def _ultralytics_train_args(cfg: dict, data_yaml: Path, run_dir: Path) -> dict:
    """ultralytics' `YOLO.train` arguments: a seeded, deterministic CPU-friendly run from
    scratch into `run_dir`."""
    return dict(
        data=str(data_yaml),
        epochs=int(cfg["epochs"]),
        imgsz=int(cfg["imgsz"]),
        batch=int(cfg["batch"]),
        device=cfg["device"],
        workers=0,
        seed=int(cfg["seed"]),
        deterministic=True,
        project=str(run_dir.parent.resolve()),
        name=run_dir.name,
        exist_ok=True,
        pretrained=False,
        optimizer="AdamW",
        lr0=float(cfg["lr0"]),
        warmup_epochs=1.0,
        cos_lr=True,
        mosaic=0.0,  # whole demo scenes: objects keep their size, nothing to stitch
        fliplr=0.5,
        amp=False,
        plots=False,  # plotting would fetch a font from the internet
        val=True,
        cache=False,
        verbose=False,
    )


def _copy_last_weights(run_dir: Path, weights_out: str | Path) -> None:
    """The last epoch's weights (never chosen on val) → `weights_out`, atomically."""
    last = run_dir / "weights" / "last.pt"
    if not last.exists():
        raise CirflowError(f"ultralytics training finished without writing {last}")
    with atomic_path(weights_out, suffix=".tmp.pt") as tmp:
        shutil.copyfile(last, tmp)
