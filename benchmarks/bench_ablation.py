"""The region ablation's cost on the demo: its wall time, and the stage-2 step time with region
tokens against stage 1's.

    .venv/bin/python benchmarks/bench_ablation.py [--cores 2] [--workdir DIR]
    .venv/bin/python benchmarks/bench_ablation.py --step-time-only [--steps 20] [--threads 2]

Whole ablation (goal: `snakemake ablation` ≤ 30 min on 2 cores with config.yaml's runs). In a
copy of the workflow (`--workdir`, default a temporary folder; the default config.yaml, i.e. the
full demo) it first
brings everything the ablation starts from up to date — demo data, first stage, cached features,
boxes, stage 1 (`snakemake ablation --omit-from ablation_train`), timed apart — and then times
`snakemake --cores N ablation` alone: every stage-2 run of ablation.runs (by name) ×
ablation.seeds and its evaluation, and the summary. It prints both wall times, the per-run
training times from the rules' benchmark files, and the summary table. Run without
profiles/local: its gpu=1 would run the ablation's jobs one at a time.

Step time (goal: tokens ≤ 1.5 × stage 1), measured side by side in one process: a small demo is
generated in a temporary folder, the frozen tiny ViT's tokens are cached for its train split
(as the image_features stage does), and its boxes come from saliency (the demo's configured
method, with config.yaml's settings) and from the ground truth. Two models with the same
weights — stage 1's losses (region mode none) and region tokens (config.yaml's
max_region_tokens, references' tokens with batch_images) — do full training steps (forward,
backward, AdamW) alternately on the same img_set batches of config.yaml's stage-2 batch size, so
that machine noise hits both alike; the medians are compared. `--step-time-only` runs only
this part (about a minute).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = (
    "Snakefile",
    "config.yaml",
    "rules",
    "schemas",
    "workflow_scripts",
    "profiles",
    "config",
    "envs",
)
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "false",
    "MPLBACKEND": "Agg",
}


# ------------------------------------------------------------------------------ whole ablation
def copy_workflow(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, dest / name)
    if not (dest / "cirflow").exists():
        shutil.copytree(
            REPO / "cirflow", dest / "cirflow", ignore=shutil.ignore_patterns("__pycache__")
        )


def snakemake(workdir: Path, cores: int, *args: str) -> float:
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--cores", str(cores), *args]
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(workdir)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return time.perf_counter() - t0


def run_times(workdir: Path) -> dict[str, list[float]]:
    """Seconds of each ablation training job, by run name (the rules' benchmark files)."""
    out: dict[str, list[float]] = {}
    for tsv in sorted((workdir / "benchmarks/runs/demo/ablation").glob("*/seed*/train.tsv")):
        with open(tsv) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        out.setdefault(tsv.parent.parent.name, []).append(float(row["s"]))
    return out


def whole_ablation(args) -> None:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ablation-"))
    copy_workflow(workdir)
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    print(f"workflow copy: {workdir} (demo: {cfg['demo']['train_triplets']} train triplets)")
    prep = snakemake(workdir, args.cores, "ablation", "--omit-from", "ablation_train")
    print(f"prerequisites (demo, first stage, features, boxes, stage 1): {prep / 60:.1f} min")
    wall = snakemake(workdir, args.cores, "ablation")
    print(f"snakemake --cores {args.cores} ablation: {wall / 60:.1f} min (goal <= 30 min)")
    for run, secs in run_times(workdir).items():
        print(f"  {run:<18} {len(secs)} runs, {statistics.fmean(secs):6.1f} s each")
    print((workdir / "results/demo/ablation/summary.md").read_text())


# ----------------------------------------------------------------------------------- step time
def train_step(model, opt, batch, with_boxes: bool, loss_region: float) -> float:
    """Seconds of one full training step (forward, backward, AdamW) on `batch`."""
    import torch

    from cirflow.data.tables import model_input

    kw = {}
    if with_boxes:
        kw = dict(
            boxes=batch.boxes,
            box_valid=batch.box_valid,
            ref_boxes=batch.ref_boxes,
            ref_box_valid=batch.ref_box_valid,
        )
    cpu = torch.device("cpu")
    t = time.perf_counter()
    losses = model(
        ref_images=model_input(batch.ref, cpu),
        target_images=model_input(batch.target, cpu),
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        target_ids=batch.target_ids,
        reference_ids=batch.reference_ids,
        reference_negatives=True,
        **kw,
    )
    loss = losses["loss_itc"] + 0.4 * losses["loss_rtc"] + 0.4 * losses["loss_align"]
    if with_boxes:
        loss = loss + loss_region * losses["loss_region"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t


def step_time_only(args) -> None:
    import torch

    from cirflow.boxes.shards import BoxMethod, ShardSpec, merge_results, run_shard
    from cirflow.data.cirr import CirrDataset
    from cirflow.data.demo import DemoSpec, generate_demo
    from cirflow.data.feature_store import FeatureStore, FeatureTable
    from cirflow.data.gt_boxes import split_ground_truth
    from cirflow.data.regions import BoxFile
    from cirflow.data.tables import TripletData
    from cirflow.model.config import RegionMode
    from cirflow.model.factory import added_by_region_mode
    from cirflow.model.features import FeatureSettings, FeatureShard, extract_shard
    from cirflow.model.presets import get_preset
    from cirflow.model.sprc import SPRC
    from cirflow.model.state_dicts import load_state

    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    stage2 = cfg["train"]["stage2"]
    cap = int(stage2["region"]["max_region_tokens"])
    batch_size = int(args.batch_size or stage2["batch_size"])
    tmp = Path(tempfile.mkdtemp(prefix="steptime-"))
    root = tmp / "demo"
    spec = DemoSpec(seed=0, train_triplets=args.triplets, val_triplets=8, test1_triplets=8)
    generate_demo(root, spec, workers=1, progress=False)
    preset = get_preset("tiny_scratch", freeze_vit=True)
    extract_shard(
        preset,
        root,
        FeatureShard("train", 0, 1),
        tmp / "train.npy",
        FeatureSettings(progress=False),
    )
    dataset = CirrDataset(root, "train")
    table = FeatureTable(dataset, FeatureStore([tmp / "train.npy"]))
    boxes_cfg = cfg["boxes"]
    shard = run_shard(
        root,
        ShardSpec("train", 0, 1),
        BoxMethod("saliency", boxes_cfg["saliency"], boxes_cfg["postfilter"]),
        None,
        progress=False,
    )
    merge_results([shard], tmp / "saliency/train.json", tmp / "saliency/train.meta.json")
    split_ground_truth(root, root / "boxes_gt.json", tmp / "gt", splits=("train",))

    loss_region = float(stage2["loss_region"])
    torch.manual_seed(0)
    base = SPRC(preset)
    tokens = SPRC(preset, "tokens", cap)
    # The same weights, loaded as stage 2 loads stage 1's: what the region mode adds starts anew.
    load_state(
        tokens,
        base.state_dict(),
        "stage 1 twin",
        allow_missing=added_by_region_mode(RegionMode.TOKENS),
    )
    data = TripletData(dataset, table, base.tokenizer, preset.max_txt_len)
    names = {t["target_hard"] for t in dataset.triplets} | {
        t["reference"] for t in dataset.triplets
    }
    print(
        f"tiny (frozen ViT, cached tokens), {len(data)} train triplets, batch {batch_size}, "
        f"img_set batches, batch_images negatives, max_region_tokens {cap}, "
        f"{args.threads} threads, median of {args.steps} steps after 3 warm-up steps:"
    )
    for source in ("saliency", "gt"):
        boxes, counts = BoxFile(tmp / source / "train.json").load_training(
            table, preset.image_size, names, max_boxes=cap
        )
        data.target_boxes, data.reference_boxes = boxes, True
        per_image = counts["boxes_used"] / max(counts["targets"], 1)
        batches = list(data.batches(batch_size, seed=0, epoch=0, batching="img_set"))
        opts = {
            m: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-5)
            for m in (base, tokens)
        }

        base.train()
        tokens.train()
        s1, s2 = [], []
        for i in range(args.steps + 3):
            batch = batches[i % len(batches)]
            a = train_step(base, opts[base], batch, False, loss_region)
            b = train_step(tokens, opts[tokens], batch, True, loss_region)
            if i >= 3:
                s1.append(a)
                s2.append(b)
        m1, m2 = statistics.median(s1), statistics.median(s2)
        print(
            f"  {source:<9} ({per_image:.2f} boxes per image): stage 1 {m1 * 1000:7.1f} ms, "
            f"tokens {m2 * 1000:7.1f} ms, ratio {m2 / m1:.2f} (goal <= 1.5)"
        )
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--step-time-only", action="store_true", help="only the step-time part")
    ap.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    ap.add_argument("--workdir", default=None, help="workflow copy to run in (kept)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per model")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the step timing")
    ap.add_argument("--triplets", type=int, default=320, help="train triplets of the step timing")
    ap.add_argument("--batch-size", type=int, default=None, help="default: train.stage2's")
    args = ap.parse_args()
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
    if not args.step_time_only:
        whole_ablation(args)
    step_time_only(args)


if __name__ == "__main__":
    main()
