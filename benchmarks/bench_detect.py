"""Detection throughput: our shard code against the bare libraries, and shard scaling.

    .venv/bin/python benchmarks/bench_detect.py [yolo|saliency|shards|all] [options]

  yolo      (a) bare ultralytics `predict` on the same images and batch size (ultralytics reads the
            files itself; and, for reference, on arrays already in memory) vs (b) our yolo shard
            (`run_shard`: background PIL decoder, EXIF, BGR arrays, batch-invariant letterbox,
            post-filter). Goal: b takes <= 1.15x the time of a.
  saliency  (c) bare decode of the same images (PIL open + load + RGB; and our read_image) vs
            (d) our saliency shard. Goal: d <= 1.5x c.
  shards    (e) 2 shards as 2 concurrent processes vs 1 shard (1 thread each, as the workflow
            runs them with boxes.threads: 1). Goal: >= 1.7x throughput.

Images: --dataset DIR [--split val] (a CIRR-layout dataset, e.g. results/demo/dataset), or by
default --synthetic N PNGs of about 500x400 (CIRR-like sizes) written to a temporary dataset.
Every figure is printed; --json FILE also writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cirflow.data.cirr import CirrDataset

POSTFILTER = {"min_area": 0.002, "max_boxes": 10}


def synthetic_dataset(root: Path, n: int, seed: int = 0) -> Path:
    """n PNGs of 440-560 x 340-460 px: textured background, a few coloured shapes."""
    rng = np.random.default_rng(seed)
    (root / "dev").mkdir(parents=True, exist_ok=True)
    split = {}
    yy, xx = np.mgrid[0:460, 0:560]
    for i in range(n):
        w, h = int(rng.integers(440, 561)), int(rng.integers(340, 461))
        base = rng.integers(60, 180, 3)
        grad = (xx[:h, :w, None] * rng.uniform(-0.1, 0.1, 3) + yy[:h, :w, None] * 0.05).astype(
            np.float32
        )
        arr = np.clip(base + grad + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            bw, bh = int(rng.integers(40, w // 3)), int(rng.integers(40, h // 3))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            arr[y : y + bh, x : x + bw] = rng.integers(0, 256, 3)
        name = f"dev-{i}-0-img0"
        Image.fromarray(arr).save(root / "dev" / f"{name}.png", compress_level=6)
        split[name] = f"./dev/{name}.png"
    (root / "cirr/image_splits").mkdir(parents=True, exist_ok=True)
    (root / "cirr/image_splits/split.rc2.val.json").write_text(json.dumps(split))
    return root


def image_paths(dataset: Path, split: str, max_images: int | None) -> list[Path]:
    ds = CirrDataset(dataset, split, with_captions=False)
    names = sorted(ds.images)[:max_images]
    return [ds.image_path(n) for n in names]


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def effective_cores(n: int = 3_000_000) -> float:
    """How many cores this process really gets now (2 on an idle 2-core machine): the same
    pure-Python work in 1 and in 2 processes. Printed beside the figures: other jobs on the
    machine shrink it, and every ratio below with it."""
    from multiprocessing import Pool

    with Pool(2) as pool:
        pool.map(_burn, [10, 10])
        start = time.perf_counter()
        _burn(n)
        one = time.perf_counter() - start
        start = time.perf_counter()
        pool.map(_burn, [n, n])
        two = time.perf_counter() - start
    return round(2 * one / two, 2)


CPU_SECONDS: dict[str, float] = {}  # CPU seconds (all threads) of the fastest run, by label


def best_of(repeat: int, fn, label: str = "") -> float:
    """Fastest wall time of `repeat` runs; its CPU time goes to CPU_SECONDS[label]."""
    runs = []
    for _ in range(repeat):
        cpu, start = time.process_time(), time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start, time.process_time() - cpu))
    wall, cpu = min(runs)
    CPU_SECONDS[label] = cpu
    return wall


def yolo_config(args) -> dict:
    return {
        "weights": args.weights,
        "conf": args.conf,
        "imgsz": args.imgsz,
        "batch_size": args.batch,
        "device": args.device,
    }


def bench_yolo(args, dataset: Path) -> dict:
    import cv2
    from ultralytics import YOLO

    from cirflow.boxes.shards import BoxMethod, ShardSpec, run_shard
    from cirflow.boxes.yolo import YoloDetector, resolve_weights

    paths = image_paths(dataset, args.split, args.max_images)
    n = len(paths)
    det = YoloDetector(**yolo_config(args))  # resolves device, half and the auto batch size
    batch, predict_args = det.batch_size, det.predict_args()
    weights = resolve_weights(args.weights)
    # Bare ultralytics, as a user would call it: one streamed predict over a .txt list of the
    # files (a Python list of paths would make ultralytics load them all as ONE batch), so that
    # ultralytics decodes (cv2.imread) and batches them itself with its own letterbox choice
    # (rect when a batch's shapes agree); same batch size / imgsz / conf / device / precision.
    bare_args = {k: v for k, v in predict_args.items() if k not in ("rect", "batch")}
    file_list = Path(tempfile.mkdtemp(prefix="cirflow-bench-")) / "images.txt"
    file_list.write_text("".join(f"{p.resolve()}\n" for p in paths))

    def bare_files():
        model = YOLO(weights, task="detect") if not weights.endswith(".yaml") else det.model
        for _ in model.predict(str(file_list), batch=batch, stream=True, **bare_args):
            pass

    arrays = [cv2.imread(str(p)) for p in paths]

    def bare_arrays():
        for start in range(0, n, batch):
            det.model.predict(arrays[start : start + batch], **bare_args)

    def ours():
        run_shard(
            dataset,
            ShardSpec(args.split, 0, 1, args.max_images),
            BoxMethod("yolo", {"yolo": yolo_config(args)}, POSTFILTER),
            None,
            decode_workers=args.workers,
            progress=False,
        )

    det.model.predict(arrays[:batch], **bare_args)  # warm-up: first-call setup
    a = best_of(args.repeat, bare_files)
    a_mem = best_of(args.repeat, bare_arrays)
    b = best_of(args.repeat, ours)
    out = {
        "images": n,
        "device": det.device,
        "half": det.half,
        "batch": batch,
        "imgsz": args.imgsz,
        "a_bare_predict_files_s": round(a, 3),
        "a_bare_predict_arrays_s": round(a_mem, 3),
        "b_our_shard_s": round(b, 3),
        "b_over_a": round(b / a, 3),
        "b_over_a_arrays": round(b / a_mem, 3),
    }
    print(
        f"yolo ({det.device}, {'fp16' if det.half else 'fp32'}, batch {batch}, imgsz {args.imgsz}, "
        f"{n} images):\n"
        f"  (a) bare ultralytics predict on the files:  {a:7.2f} s  {n / a:7.1f} img/s\n"
        f"      (same, arrays already in memory:        {a_mem:7.2f} s  {n / a_mem:7.1f} img/s)\n"
        f"  (b) our yolo shard (run_shard):             {b:7.2f} s  {n / b:7.1f} img/s\n"
        f"  b / a = {b / a:.3f}  (goal <= 1.15; against in-memory arrays {b / a_mem:.3f})"
    )
    return out


def bench_saliency(args, dataset: Path) -> dict:
    from cirflow.boxes.shards import BoxMethod, ShardSpec, run_shard
    from cirflow.data.images import read_image

    paths = image_paths(dataset, args.split, args.max_images)
    n = len(paths)

    def bare_decode():
        for p in paths:
            with Image.open(p) as img:
                img.convert("RGB")

    def our_decode():
        for p in paths:
            read_image(p)

    def ours():
        run_shard(
            dataset,
            ShardSpec(args.split, 0, 1, args.max_images),
            BoxMethod("saliency", {"saliency": {}}, POSTFILTER),
            None,
            decode_workers=args.workers,
            progress=False,
        )

    bare_decode()  # warm the page cache
    c = best_of(args.repeat, bare_decode, "c")
    c_ours = best_of(args.repeat, our_decode, "c_ours")
    d = best_of(args.repeat, ours, "d")
    print(
        f"saliency ({n} images, {args.workers} decode thread(s)):\n"
        f"  (c) bare decode (PIL open+load+RGB):        {c:7.2f} s  {n / c:7.1f} img/s\n"
        f"      (our read_image, EXIF + checks:         {c_ours:7.2f} s  {n / c_ours:7.1f} img/s)\n"
        f"  (d) our saliency shard (run_shard):         {d:7.2f} s  {n / d:7.1f} img/s\n"
        f"  d / c = {d / c:.3f}  (goal <= 1.5)\n"
        f"      CPU time (all threads): c {CPU_SECONDS['c']:.2f} s, d {CPU_SECONDS['d']:.2f} s; "
        f"d used {CPU_SECONDS['d'] / d:.2f} cores while it ran"
    )
    return {
        "images": n,
        "c_bare_decode_s": round(c, 3),
        "c_read_image_s": round(c_ours, 3),
        "d_our_shard_s": round(d, 3),
        "d_over_c": round(d / c, 3),
        "c_cpu_s": round(CPU_SECONDS["c"], 3),
        "d_cpu_s": round(CPU_SECONDS["d"], 3),
    }


CHILD = """
import json, os, sys, time
args = json.loads(sys.argv[1])
if args["pin"] is not None:
    os.sched_setaffinity(0, {args["pin"]})
from cirflow.boxes.shards import BoxMethod, ShardSpec, run_shard
start = time.perf_counter()
run_shard(args["dataset"], ShardSpec(args["split"], args["shard"], args["n"], args["max_images"]),
          BoxMethod(args["method"], args["cfg"], args["postfilter"]), None, decode_workers=1,
          progress=False)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def run_children(
    args, dataset: Path, method: str, n_shards: int, threads: int, pin: bool = False
) -> tuple:
    """Run n_shards shard processes at once; with `pin`, shard i is held to core i."""
    cfg = {"saliency": {}} if method == "saliency" else {"yolo": yolo_config(args)}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    import resource

    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    procs = []
    for shard in range(n_shards):
        payload = {
            "dataset": str(dataset),
            "split": args.split,
            "method": method,
            "cfg": cfg,
            "postfilter": POSTFILTER,
            "shard": shard,
            "n": n_shards,
            "max_images": args.max_images,
            "pin": shard % (os.cpu_count() or 1) if pin else None,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", CHILD, json.dumps(payload)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
    inner = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"shard child failed ({proc.returncode})")
        inner.append(json.loads(out.strip().splitlines()[-1])["seconds"])
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return wall, max(inner), cpu


def bench_shards(args, dataset: Path) -> dict:
    n = len(image_paths(dataset, args.split, args.max_images))
    out = {"images": n}
    for method in args.shard_methods.split(","):
        one_wall, one_inner, one_cpu = run_children(args, dataset, method, 1, 1)
        two_wall, two_inner, two_cpu = run_children(args, dataset, method, 2, 1)
        one_t2_wall, one_t2_inner, _ = run_children(args, dataset, method, 1, 2)
        # One core per shard (taskset-like pinning): a shard's background decoder and its
        # detector share that core, so this isolates how shards scale with cores.
        _, one_pin, _ = run_children(args, dataset, method, 1, 1, pin=True)
        _, two_pin, _ = run_children(args, dataset, method, 2, 1, pin=True)
        speedup, speedup_wall = one_inner / two_inner, one_wall / two_wall
        # Cores the 2 shards really got (CPU seconds / wall seconds of the processes), and the
        # CPU cost of an image in each setting: equal costs mean the shards do not slow each
        # other down, and 2 idle cores would then give ~2x (the machine may be shared).
        got_cores = two_cpu / two_wall
        print(
            f"shards, {method} ({n} images, 1 thread per shard; time inside run_shard / whole "
            f"process):\n"
            f"  1 shard:              {one_inner:7.2f} s  {n / one_inner:7.1f} img/s   "
            f"(process {one_wall:.2f} s)\n"
            f"  2 shards in parallel: {two_inner:7.2f} s  {n / two_inner:7.1f} img/s   "
            f"(processes {two_wall:.2f} s)\n"
            f"  (1 shard, 2 threads:  {one_t2_inner:7.2f} s  {n / one_t2_inner:7.1f} img/s)\n"
            f"  (e) throughput 2 vs 1 shard: {speedup:.2f}x (whole processes {speedup_wall:.2f}x)"
            f"  (goal >= 1.7)\n"
            f"      the 2 shards got {got_cores:.2f} cores; CPU per image: 1 shard "
            f"{1000 * one_cpu / n:.1f} ms, 2 shards {1000 * two_cpu / n:.1f} ms (whole processes)\n"
            f"  pinned, 1 core per shard: 1 shard {one_pin:.2f} s ({n / one_pin:.1f} img/s), "
            f"2 shards {two_pin:.2f} s ({n / two_pin:.1f} img/s): {one_pin / two_pin:.2f}x"
        )
        out[method] = {
            "one_shard_s": round(one_inner, 3),
            "two_shards_s": round(two_inner, 3),
            "one_shard_two_threads_s": round(one_t2_inner, 3),
            "one_shard_process_s": round(one_wall, 3),
            "two_shards_process_s": round(two_wall, 3),
            "speedup": round(speedup, 3),
            "speedup_process": round(speedup_wall, 3),
            "two_shards_cores_used": round(got_cores, 3),
            "pinned_one_shard_s": round(one_pin, 3),
            "pinned_two_shards_s": round(two_pin, 3),
            "pinned_speedup": round(one_pin / two_pin, 3),
            "cpu_ms_per_image_one_shard": round(1000 * one_cpu / n, 2),
            "cpu_ms_per_image_two_shards": round(1000 * two_cpu / n, 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", nargs="?", default="all", choices=["yolo", "saliency", "shards", "all"]
    )
    parser.add_argument("--dataset", default=None, help="CIRR-layout dataset (default: synthetic)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--synthetic", type=int, default=200, help="synthetic images (500x400)")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--weights", default="yolov8n.yaml", help="yaml = random yolov8n")
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", default="auto", help="yolo batch size (auto = per device)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=1, help="decode threads of our shard")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    parser.add_argument("--shard-methods", default="saliency,yolo")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.batch != "auto":
        args.batch = int(args.batch)

    with tempfile.TemporaryDirectory(prefix="cirflow-bench-detect-") as tmp:
        if args.dataset:
            dataset = Path(args.dataset)
        else:
            dataset = synthetic_dataset(Path(tmp), args.synthetic)
            args.split = "val"
        figures = {"effective_cores": effective_cores(), "cpus": os.cpu_count()}
        print(
            f"machine: {figures['cpus']} CPUs, effective cores now: {figures['effective_cores']} "
            "(2.0 = two idle cores; less = other jobs compete)"
        )
        if args.what in ("yolo", "all"):
            figures["yolo"] = bench_yolo(args, dataset)
        if args.what in ("saliency", "all"):
            figures["saliency"] = bench_saliency(args, dataset)
        if args.what in ("shards", "all"):
            figures["shards"] = bench_shards(args, dataset)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
