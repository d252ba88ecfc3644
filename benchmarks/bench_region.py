"""Cost of the region loss: stage-2 step time against stage-1 step time at the same batch size.

    .venv/bin/python benchmarks/bench_region.py [--batch-size 32] [--boxes 4] [--steps 20] [--threads 2]

The same tiny model (with region_proj) does full training steps (forward, backward, AdamW)
on the same random batch, alternating stage 1 (no boxes) and stage 2 (up to --boxes boxes per
target, one target in eight without any) so that machine noise hits both alike; the medians are
compared. Goal: stage 2 ≤ 1.10 × stage 1. The region term reuses the target's ViT tokens of
the K_t pass (no second ViT pass): its cost is one ROI Align on the 8×8 patch grid, one Linear
and a (B, B, M) similarity.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cirflow.model.presets import get_preset
from cirflow.model.sprc import SPRC


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--boxes", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SPRC(get_preset("tiny_scratch"), "aux")
    b = args.batch_size
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(b, 3, 64, 64, generator=g)
    tgt = torch.randn(b, 3, 64, 64, generator=g)
    ids, mask = model.tokenize(["make the red circle blue and move it to the top left corner"] * b)
    xy = torch.rand(b, args.boxes, 2, generator=g) * 40
    wh = 8 + torch.rand(b, args.boxes, 2, generator=g) * 16
    boxes = torch.cat([xy, xy + wh], dim=-1)
    valid = torch.rand(b, args.boxes, generator=g) < 0.8
    valid[:, 0] = True
    valid[::8] = False  # some targets without boxes
    target_ids = torch.arange(b)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step(with_boxes: bool) -> float:
        t = time.perf_counter()
        losses = model(
            ref_images=ref,
            target_images=tgt,
            input_ids=ids,
            attention_mask=mask,
            boxes=boxes if with_boxes else None,
            box_valid=valid if with_boxes else None,
            target_ids=target_ids,
        )
        loss = losses["loss_itc"] + 0.4 * losses["loss_rtc"] + 0.4 * losses["loss_align"]
        if with_boxes:
            loss = loss + 0.5 * losses["loss_region"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    model.train()
    for _ in range(3):
        step(False)
        step(True)
    s1, s2 = [], []
    for _ in range(args.steps):
        s1.append(step(False))
        s2.append(step(True))
    m1, m2 = statistics.median(s1), statistics.median(s2)
    print(
        f"tiny, batch {b}, <= {args.boxes} boxes per target, {args.threads} threads, median of {args.steps}:"
    )
    print(f"  stage 1 step: {m1 * 1000:7.1f} ms")
    print(f"  stage 2 step: {m2 * 1000:7.1f} ms   ratio {m2 / m1:.3f}  (goal <= 1.10)")


if __name__ == "__main__":
    main()
