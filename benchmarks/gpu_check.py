"""The CUDA paths measured in one run, with random weights only (nothing is downloaded).

    python benchmarks/gpu_check.py [--tiny] [--device auto|cpu|cuda] [--json FILE]
    (benchmarks/gpu_check.sh runs it with the offline variables set)

Figures (each printed as one line, all of them also in --json):

  sprc_stage1 / sprc_stage2  SPRC with the EVA ViT-g/14 + BERT-base Q-Former architecture
                 (preset pretrain_random: random weights, ViT frozen in fp16), batch 128, one
                 training step as the trainer does it (AdamW, OneCycle, fp16 autocast +
                 GradScaler on CUDA): median step time and peak CUDA memory; stage 2 adds the
                 aux region loss (3 boxes per target image).
  vit_features   ViT-g tokens (`SPRC.image_tokens`, fp16 weights under autocast) at 224 px:
                 images/s at batch 128.
  tiny_devices   the tiny demo model trained for a few steps from the same weights on the same
                 batch: on the CPU, on CUDA in fp32 and on CUDA with AMP (the trainer's default);
                 the largest relative difference of each loss against the CPU run.
  yolo           ultralytics yolov8n built from yolov8n.yaml (random weights) through cirflow's
                 YoloDetector at 640 px: images/s at batch 32 and at batch 1 with fp16 (the
                 `half: auto` default on CUDA), and at batch 1 in fp32.

--tiny (and any run without CUDA) takes the same code paths at toy sizes — a shrunken
pretrain_random, batch 4, a handful of small images — in seconds on a CPU
(tests/test_gpu_check.py). Sizes that do not fit print an "out of memory" line and the run goes on.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cirflow.model.presets import BERT_BASE, get_preset
from cirflow.model.sprc import SPRC
from cirflow.train.config import TrainSettings
from cirflow.train.optimizer import adamw
from cirflow.train.schedule import one_cycle

CAPTIONS = [
    "make the red circle blue and move it to the top left corner",
    "remove the small star",
    "add two green squares on the right",
    "the same dog but lying on the grass",
]
LOSS_WEIGHTS = {"loss_itc": 1.0, "loss_rtc": 0.4, "loss_align": 0.4, "loss_region": 0.5}


@dataclasses.dataclass
class Sizes:
    preset: object  # ModelPreset of the big model
    batch: int
    steps: int
    feature_images: int
    tiny_steps: int
    yolo_images: int
    yolo_imgsz: int
    yolo_batch: int


def sizes(tiny: bool) -> Sizes:
    if not tiny:
        return Sizes(get_preset("pretrain_random"), 128, 5, 1024, 5, 256, 640, 32)
    small = dataclasses.replace(
        get_preset("pretrain_random"),
        name="pretrain_random_small",
        image_size=56,
        vit_width=64,
        vit_depth=2,
        vit_heads=2,
        vit_mlp_ratio=4.0,
        num_query_token=4,
        embed_dim=32,
        max_txt_len=16,
        qformer={
            **BERT_BASE,
            "vocab_size": 512,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 128,
            "max_position_embeddings": 64,
        },
    )
    return Sizes(small, 4, 2, 8, 3, 4, 128, 4)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def make_batch(model: SPRC, batch: int, device: torch.device, boxes: bool, seed: int = 0) -> dict:
    size = model.preset.image_size
    g = torch.Generator().manual_seed(seed)
    out = {
        "ref_images": torch.randn(batch, 3, size, size, generator=g),
        "target_images": torch.randn(batch, 3, size, size, generator=g),
        "target_ids": torch.arange(batch),
        "reference_ids": torch.arange(batch, 2 * batch),
    }
    out["input_ids"], out["attention_mask"] = model.tokenize(
        [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)], device="cpu"
    )
    if boxes:  # three boxes per target image, in input pixels
        corners = torch.rand(batch, 3, 2, 2, generator=g).sort(dim=2).values * size
        xyxy = torch.stack(
            [
                corners[..., 0, 0],
                corners[..., 0, 1],
                corners[..., 1, 0] + 1,
                corners[..., 1, 1] + 1,
            ],
            dim=-1,
        )
        out["boxes"], out["box_valid"] = (
            xyxy.clamp(max=size),
            torch.ones(batch, 3, dtype=torch.bool),
        )
    return {k: v.to(device) for k, v in out.items()}


class Steps:
    """Training steps as `cirflow.train.loop.Trainer.train_epoch` takes them."""

    def __init__(self, model: SPRC, device: torch.device, amp: bool, lr: float = 1e-5):
        self.model, self.device = model, device
        self.use_amp = amp and device.type == "cuda"
        model.use_amp = self.use_amp
        self.params = [p for _, p in model.trainable_named_parameters()]
        self.optimizer = adamw(self.params, lr, 0.05)  # the trainer's (fused on CUDA)
        settings = TrainSettings(cirr_root="-", out="-", num_epochs=2, learning_rate=lr)
        total = 100 * settings.schedule_length
        self.scheduler = one_cycle(
            self.optimizer, lr, total, settings.pct_start, settings.div_factor
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

    def __call__(self, batch: dict) -> dict[str, float]:
        self.model.train()
        losses = self.model(**batch)
        total = sum(LOSS_WEIGHTS[k] * v for k, v in losses.items())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {k: float(v.detach()) for k, v in losses.items()}


def bench_sprc(model: SPRC, s: Sizes, device: torch.device, stage: str) -> dict:
    batch = make_batch(model, s.batch, device, boxes=stage == "stage2")
    steps = Steps(model, device, amp=True)
    reset_peak(device)
    times = []
    try:
        for i in range(s.steps + 2):  # 2 warm-up steps
            sync(device)
            start = time.perf_counter()
            losses = steps(batch)
            sync(device)
            if i >= 2:
                times.append(time.perf_counter() - start)
    except torch.cuda.OutOfMemoryError as exc:
        return {"error": f"out of memory at batch {s.batch}: {exc}".splitlines()[0]}
    finally:
        del steps
        model.zero_grad(set_to_none=True)
    step = statistics.median(times)
    return {
        "batch": s.batch,
        "amp": device.type == "cuda",
        "step_s": round(step, 4),
        "triplets_per_s": round(s.batch / step, 1),
        "peak_memory_gb": peak_memory_gb(device),
        "losses": {k: round(v, 4) for k, v in losses.items()},
    }


@torch.no_grad()
def bench_vit(model: SPRC, s: Sizes, device: torch.device) -> dict:
    model.eval()
    size = model.preset.image_size
    images = torch.randn(s.batch, 3, size, size, device=device)
    reset_peak(device)
    try:
        model.image_tokens(images)  # warm-up
        sync(device)
        start = time.perf_counter()
        n = 0
        while n < s.feature_images:
            model.image_tokens(images)
            n += s.batch
        sync(device)
    except torch.cuda.OutOfMemoryError as exc:
        return {"error": f"out of memory at batch {s.batch}: {exc}".splitlines()[0]}
    took = time.perf_counter() - start
    return {
        "batch": s.batch,
        "image_size": size,
        "vit_fp16": model.vit_is_fp16(),
        "images": n,
        "images_per_s": round(n / took, 1),
        "peak_memory_gb": peak_memory_gb(device),
    }


def bench_tiny_devices(s: Sizes, device: torch.device) -> dict:
    """Same init, same batch, s.tiny_steps steps: CPU vs `device` in fp32 and with AMP."""
    torch.manual_seed(0)
    start_model = SPRC(get_preset("tiny_scratch"))  # no first-stage file needed
    runs = {}
    for label, dev, amp in (
        ("cpu", torch.device("cpu"), False),
        (f"{device.type}_fp32", device, False),
        (f"{device.type}_amp", device, True),
    ):
        model = copy.deepcopy(start_model).to(dev)
        steps = Steps(model, dev, amp=amp, lr=5e-4)
        batch = make_batch(model, 16, dev, boxes=False, seed=1)
        runs[label] = [steps(batch) for _ in range(s.tiny_steps)]
    cpu = runs["cpu"]

    def max_rel(other):
        return max(
            abs(o[k] - c[k]) / max(abs(c[k]), 1e-8)
            for o, c in zip(other, cpu, strict=True)
            for k in c
        )

    out = {"steps": s.tiny_steps, "cpu_losses": [round(r["loss_itc"], 5) for r in cpu]}
    for label, rows in runs.items():
        if label != "cpu":
            out[f"{label}_losses"] = [round(r["loss_itc"], 5) for r in rows]
            out[f"{label}_max_rel_diff"] = float(f"{max_rel(rows):.3g}")
    return out


def bench_yolo(s: Sizes, device: torch.device) -> dict:
    from cirflow.boxes.yolo import YoloDetector

    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(
            0, 256, (int(rng.integers(340, 461)), int(rng.integers(440, 561)), 3), dtype=np.uint8
        )
        for _ in range(s.yolo_images)
    ]
    dev = "cuda:0" if device.type == "cuda" else "cpu"
    out = {"images": s.yolo_images, "imgsz": s.yolo_imgsz}
    for label, batch, half in (
        ("batch_big", s.yolo_batch, "auto"),  # boxes.yolo defaults on CUDA: batch 32, fp16
        ("batch_1", 1, "auto"),
        ("batch_1_fp32", 1, False),
    ):
        det = YoloDetector(
            weights="yolov8n.yaml", batch_size=batch, half=half, device=dev, imgsz=s.yolo_imgsz
        )
        det.detect_arrays(arrays[:batch])  # warm-up
        sync(device)
        start = time.perf_counter()
        for i in range(0, len(arrays), batch):
            det.detect_arrays(arrays[i : i + batch])
        sync(device)
        took = time.perf_counter() - start
        out[label] = {
            "batch": batch,
            "fp16": bool(det.half),
            "images_per_s": round(len(arrays) / took, 1),
        }
    return out


def run(tiny: bool, device_name: str = "auto") -> dict:
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    s = sizes(tiny or device.type != "cuda")
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "tiny": tiny or device.type != "cuda",
        "preset": s.preset.name,
    }
    print(f"device {report['device']}, torch {report['torch']} (CUDA {report['cuda']})", flush=True)

    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.device(device):  # random init directly on the device (ViT-g: ~1 B weights)
        model = SPRC(s.preset, "aux")
    model.prepare_for_device(device)
    model = model.to(device)
    n = sum(p.numel() for p in model.parameters())
    report["build"] = {
        "seconds": round(time.perf_counter() - start, 1),
        "parameters_M": round(n / 1e6, 1),
    }
    print(
        f"built {s.preset.name}: {n / 1e6:.1f} M parameters in {report['build']['seconds']} s",
        flush=True,
    )

    for stage in ("stage1", "stage2"):
        report[f"sprc_{stage}"] = r = bench_sprc(model, s, device, stage)
        print(
            f"sprc {stage} ({'aux region loss' if stage == 'stage2' else 'global'}): {r}",
            flush=True,
        )
    report["vit_features"] = r = bench_vit(model, s, device)
    print(f"vit features: {r}", flush=True)
    del model
    reset_peak(device)

    report["tiny_devices"] = r = bench_tiny_devices(s, device)
    print(f"tiny model, CPU vs {device.type}: {r}", flush=True)
    report["yolo"] = r = bench_yolo(s, device)
    print(f"yolo predict: {r}", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tiny", action="store_true", help="toy sizes (CPU, seconds)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = ap.parse_args(argv)
    report = run(args.tiny, args.device)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
