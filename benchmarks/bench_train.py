"""Training step speed of the tiny preset on CPU, one stage-1 epoch from cached features vs
from pixels, and checkpoint size vs the full state dict.

    .venv/bin/python benchmarks/bench_train.py [--batch-sizes 32 64] [--steps 10] [--threads 2]
        [--epoch-triplets 1000]

epoch:       one stage-1 epoch (no validation) of the frozen-ViT tiny preset on a generated demo
             of --epoch-triplets train triplets, batch 32, once reading the cached ViT tokens
             (rule image_features) and once decoding nothing but running the ViT on in-memory
             pixels, alternately in the same process; the ratio is features / pixels (goal <= 0.3).

step:        forward (3 losses) + backward + AdamW + OneCycle step on random 64-px batches,
             median of --steps after 2 warm-up steps; samples/s = batch / step time.
checkpoint:  bytes of what best.pt / last.pt hold (trainable weights; + AdamW moments in last.pt)
             against the model's full state dict, for tiny, tiny with a frozen ViT and — counted
             on the meta device, no weights needed — the pretrain (EVA ViT-g, fp16) backbone.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import torch

from cirflow.model.checkpoints import saved_state_dict
from cirflow.model.presets import get_preset
from cirflow.model.sprc import SPRC

CAPTIONS = [
    "make the red circle blue and move it to the top left corner",
    "remove the small star",
    "add two green squares",
]


def step_time(model, batch_size: int, steps: int) -> float:
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(batch_size, 3, 64, 64, generator=g)
    tgt = torch.randn(batch_size, 3, 64, 64, generator=g)
    ids, mask = model.tokenize([CAPTIONS[i % 3] for i in range(batch_size)])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.98), eps=1e-7, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-4, total_steps=steps + 10)
    model.train()
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        losses = model(ref_images=ref, target_images=tgt, input_ids=ids, attention_mask=mask)
        loss = losses["loss_itc"] + 0.4 * losses["loss_rtc"] + 0.4 * losses["loss_align"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def epoch_times(triplets: int, threads: int, repeat: int = 2) -> tuple[float, float]:
    """Median seconds of one stage-1 epoch from features and from pixels (same batches)."""
    import tempfile
    from pathlib import Path

    from cirflow.data.demo import DemoSpec, generate_demo
    from cirflow.model.checkpoints import save_atomic
    from cirflow.model.features import FeatureSettings, FeatureShard, extract_shard
    from cirflow.train.config import TrainSettings
    from cirflow.train.loop import Trainer
    from cirflow.train.pretrain import backbone_state

    with tempfile.TemporaryDirectory(prefix="cirflow-bench-train-") as tmp:
        root = Path(tmp) / "demo"
        generate_demo(root, DemoSpec(0, triplets, 40, 8), workers=threads, progress=False)
        weights = Path(tmp) / "backbone.pth"
        save_atomic({"model": backbone_state(SPRC(get_preset("tiny_scratch")))}, weights)
        preset = get_preset("tiny", weights=str(weights))
        features = {}
        for split in ("train", "val"):
            out = Path(tmp) / f"features/{split}.npy"
            settings = FeatureSettings(batch_size=128, progress=False)
            extract_shard(preset, root, FeatureShard(split, 0, 1), out, settings)
            features[split] = [str(out)]
        common = dict(
            cirr_root=str(root),
            preset="tiny",
            weights=str(weights),
            num_epochs=3,
            batch_size=32,
            learning_rate=5e-4,
            batching="img_set",
            negatives="batch_images",
            image_cache="memory",
            num_workers=0,
            threads=threads,
            progress=False,
        )
        trainers = {}
        for label, feats in (("features", features), ("pixels", None)):
            trainer = Trainer(TrainSettings(out=str(Path(tmp) / label), features=feats, **common))
            trainer.build()
            trainers[label] = trainer
        times: dict[str, list[float]] = {"features": [], "pixels": []}
        for epoch in range(repeat):
            for label, trainer in trainers.items():
                t = time.perf_counter()
                trainer.train_epoch(epoch)
                times[label].append(time.perf_counter() - t)
    return statistics.median(times["features"]), statistics.median(times["pixels"])


def nbytes(sd: dict) -> int:
    return sum(v.numel() * v.element_size() for v in sd.values())


def serialized(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


def pretrain_counts() -> tuple[int, int]:
    """(full state-dict bytes, checkpoint bytes) of the pretrain preset, on the meta device."""
    from functools import partial
    from unittest import mock

    from cirflow.model.lavis_modules import EvaVisionTransformer as VisionTransformer
    from cirflow.model.lavis_modules import convert_weights_to_fp16

    preset = get_preset("pretrain")
    linspace = torch.linspace
    cpu_linspace = mock.patch(
        "torch.linspace", lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
    )
    with torch.device("meta"), cpu_linspace:
        vit = VisionTransformer(
            img_size=224,
            patch_size=14,
            use_mean_pooling=False,
            embed_dim=1408,
            depth=39,
            num_heads=1408 // 88,
            mlp_ratio=4.3637,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        )
        convert_weights_to_fp16(vit)
        from cirflow.model.lavis_modules import BertConfig, BertLMHeadModel

        cfg = BertConfig(vocab_size=30523)  # bert-base-uncased + [DEC]
        cfg.encoder_width, cfg.add_cross_attention, cfg.cross_attention_freq, cfg.query_length = (
            1408,
            True,
            2,
            32,
        )
        qformer = BertLMHeadModel(cfg)
        qformer.cls = None
    vit_bytes = nbytes(vit.state_dict())
    rest = nbytes(qformer.state_dict())
    rest += 4 * (
        2 * 32 * 768 + 2 * (768 * 256 + 256) + 1 + 2 * 1408
    )  # tokens, projections, temp, ln_vision
    assert preset.freeze_vit
    return vit_bytes + rest, rest


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epoch-triplets", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SPRC(get_preset("tiny_scratch"))
    n = sum(p.numel() for p in model.parameters())
    print(f"tiny preset: {n / 1e6:.2f} M parameters, {args.threads} CPU threads")
    for bs in args.batch_sizes:
        t = step_time(model, bs, args.steps)
        print(f"  batch {bs:3d}: {t * 1000:7.1f} ms/step, {bs / t:7.1f} samples/s")

    feats, pixels = epoch_times(args.epoch_triplets, args.threads)
    print(
        f"stage-1 epoch, {args.epoch_triplets} triplets, batch 32, frozen ViT: from cached "
        f"features {feats:.2f} s, from pixels {pixels:.2f} s; ratio {feats / pixels:.2f} "
        f"({'within' if feats / pixels <= 0.3 else 'OVER'} the 0.3 goal)"
    )

    print("checkpoint size vs full state dict:")
    for label, m in (
        ("tiny (ViT trained)", model),
        ("tiny, frozen ViT", SPRC(get_preset("tiny_scratch", freeze_vit=True))),
    ):
        full = nbytes(m.state_dict())
        ck = saved_state_dict(m)
        params = [p for p in m.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params)
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
        last = serialized({"state_dict": ck, "optimizer": opt.state_dict()})
        print(
            f"  {label:22s} full {full / 1e6:8.2f} MB | best.pt weights {nbytes(ck) / 1e6:8.2f} MB "
            f"({100 * nbytes(ck) / full:5.1f} %) | last.pt (+AdamW) {last / 1e6:8.2f} MB"
        )
    full, ck = pretrain_counts()
    print(
        f"  {'pretrain (EVA ViT-g)':22s} full {full / 1e6:8.1f} MB | best.pt weights {ck / 1e6:8.1f} MB "
        f"({100 * ck / full:5.1f} %) | last.pt (+AdamW) ~{3 * ck / 1e6:8.1f} MB"
    )


if __name__ == "__main__":
    main()
