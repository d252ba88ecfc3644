"""`make demo` old vs new, side by side in one sitting: whole-workflow wall time, seconds per
job, and where a training step's time goes.

    .venv/bin/python benchmarks/bench_demo.py [--old REF] [--new REF] [--cores 2] [--steps 60]
        [--steps-only] [--keep DIR]

Each side is a detached git worktree of its ref (--old: the main before the speed-up, --new:
HEAD) under --keep (default: a temp dir). On each, in turn, the demo runs as `make demo` does —
the checkout's own Makefile recipe, with this .venv and its install step skipped (`make -o`),
the checkout first on PYTHONPATH so its own cirflow runs — and the seconds of every job come
from Snakemake's `benchmark:` files (benchmarks/runs/demo/). Then, alternating old/new in
fresh processes on each side's own demo results, the step breakdown:

  stage-1 step   train.stage1's settings (each side's batch size, 2 threads): median ms of
                 batching, forward (the losses), backward and the optimizer step over --steps
                 steps after 5 warm-up steps; the operators dispatched per step (torch
                 profiler); the step's FLOPs (torch's FlopCounterMode) over this CPU's float32
                 GEMM rate (one 1024^3 matmul on the same threads) is the floor its arithmetic
                 sets, and floor / step the share of the step that is arithmetic. (The
                 profiler's own self times are not used: they inflate copies many-fold here.)
  stage-2 step   the demo's stage 2 (its region mode) and its control (mode none) at 1 thread,
                 as every ablation run trains: the same breakdown. For each, `run at this
                 rate` is the training time of the whole run (epochs x steps x step), what a
                 schedule change saves or costs.
  passes         after each of the three, the new side's step pass by pass, as SPRC.forward
                 makes it (ln_vision, K of the candidates, the fusion prompt P, the text-only q
                 and u, the region tokens): each pass's forward and backward timed alone on one
                 batch (each from ln_vision on), its GFLOP, floor and the FLOP rate it reaches;
                 then the whole forward with its losses.

--steps-only skips the two demos and measures steps on the results an earlier --keep left.
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

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
# The main this issue started from (issue 24): `make demo` before the speed-up.
BASELINE = "0449c36"

# Job groups of the demo: a benchmark file's path under benchmarks/runs/demo/ (no .tsv), or a
# folder of them.
GROUPS = [
    ("demo data", ("demo_dataset",)),
    ("saliency boxes", ("boxes",)),
    ("first stage (pretrain_backbone)", ("pretrain_backbone",)),
    ("image features", ("features",)),
    ("stage 1", ("train_stage1",)),
    ("stage 2", ("train_stage2",)),
    ("stage 2 control", ("train_stage2_control",)),
    ("evaluations", ("evaluate_stage1", "evaluate_stage2", "evaluate_stage2_control")),
    ("pages", ("report",)),
]

# Both scripts run in a checkout (cwd) on its results and print one JSON line. SETUP builds the
# stage's trainer from its hparams.json: `trainer`, `model`, `s`, `batches`, `weights`.
SETUP = r"""
import json, statistics, sys, time
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode
from cirflow.train.config import TrainSettings
from cirflow.train.loop import Trainer

stage, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
settings = json.load(open(f"results/demo/models/{stage}/hparams.json"))["settings"]
settings.update(out=f"/tmp/cirflow-bench-step-{stage}", progress=False, threads=threads, resume=False)
trainer = Trainer(TrainSettings(**settings))
trainer.build()
model, s = trainer.model, trainer.s
model.train()
batches = iter(trainer.train_data.batches(s.batch_size, seed=0, epoch=0, num_workers=s.num_workers, batching=s.batching))
weights = trainer.loss_weights()

def gemm_rate():
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(20):
        a @ b
    return 20 * 2 * 1024**3 / (time.perf_counter() - t)
"""

# The whole step, on either side. The profiler gives the operator count only: its self times
# inflate copies (aten::copy_ shows 28 % of the step, yet those copies take 0.06-0.14 ms each
# unprofiled), so the matrix share comes from FLOPs over the GEMM rate instead.
STEP_SCRIPT = (
    SETUP
    + r"""
def step(times=None):
    t0 = time.perf_counter()
    batch = trainer.model_batch(next(batches))
    t1 = time.perf_counter()
    losses = model(batch, reference_negatives=s.negatives == "batch_images")
    total = sum(weights[k] * losses[k] for k in weights)
    t2 = time.perf_counter()
    trainer.optimizer.zero_grad(set_to_none=True)
    total.backward()
    t3 = time.perf_counter()
    trainer.optimizer.step()
    trainer.scheduler.step()
    t4 = time.perf_counter()
    if times is not None:
        for k, v in zip(("batch", "forward", "backward", "optimizer", "total"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            times.setdefault(k, []).append(v)

for _ in range(5):
    step()
times = {}
for _ in range(steps):
    step(times)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(10):
        step()
events = prof.key_averages()
with FlopCounterMode(display=False) as flops:
    step()
gemm = gemm_rate()
out = {k: 1000 * statistics.median(v) for k, v in times.items()}
out.update(
    ops_per_step=sum(e.count for e in events) / 10,
    gflop=flops.get_total_flops() / 1e9,
    gemm_gflops=gemm / 1e9,
    floor_ms=1000 * flops.get_total_flops() / gemm,
    steps_per_epoch=trainer.steps_per_epoch,
    num_epochs=s.num_epochs,
    batch_size=s.batch_size,
    region_mode=s.region_mode,
)
print("STEP " + json.dumps(out))
"""
)

# The new side's step, pass by pass (its own API: SPRC.forward's calls, each timed alone,
# forward and backward, on one batch): ms, GFLOP and the rate each pass reaches.
PASSES_SCRIPT = (
    SETUP
    + r"""
b = trainer.model_batch(next(batches))
bsz, negatives = len(b.input_ids), s.negatives == "batch_images"

def embeds():
    return model.image_tokens(torch.cat([b.target, b.ref]))

with torch.no_grad():
    k_fixed = model.target_features(embeds() if negatives else embeds()[:bsz])

def region_tokens():  # the candidates' region tokens as SPRC.forward makes them
    e = embeds()
    c = model._candidates(b, e[:bsz], k_fixed, e[bsz:], negatives)
    return c.target_regions.sum() + (c.region.sum() if c.region is not None else 0)

prompt = model.fusion_prompt(embeds()[bsz:], b.input_ids, b.attention_mask).detach().requires_grad_()
passes = {
    "ln_vision (targets + refs)": lambda: embeds().sum(),
    "K of the candidates": lambda: model.target_features(embeds() if negatives else embeds()[:bsz]).sum(),
    "P (fusion, refs + text)": lambda: model.fusion_prompt(embeds()[bsz:], b.input_ids, b.attention_mask).sum(),
    "q and u (text-only, 2B)": lambda: sum(x.sum() for x in model.compose_and_prompt_query(prompt, b.input_ids, b.attention_mask)),
}
if model.region_mode.has_region_tokens and b.boxes is not None:
    passes["region tokens"] = region_tokens
passes["whole forward (the losses)"] = lambda: sum(weights[k] * v for k, v in model(b, reference_negatives=negatives).items() if k in weights)

def timed(fn):
    for _ in range(3):
        fn().backward()
    fwd, bwd = [], []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)  # as the step does: no gradient accumulates across calls
        t0 = time.perf_counter()
        out = fn()
        t1 = time.perf_counter()
        out.backward()
        fwd.append(t1 - t0)
        bwd.append(time.perf_counter() - t1)
    with FlopCounterMode(display=False) as flops:
        fn().backward()
    return {"forward": 1000 * statistics.median(fwd), "backward": 1000 * statistics.median(bwd), "gflop": flops.get_total_flops() / 1e9}

result = {name: timed(fn) for name, fn in passes.items()}
print("PASSES " + json.dumps({"passes": result, "gemm_gflops": gemm_rate() / 1e9}))
"""
)


def sh(*cmd: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, **kwargs)


def checkout(ref: str, dest: Path) -> Path:
    if not dest.exists():
        sh("git", "-C", str(REPO), "worktree", "add", "--detach", str(dest), ref,
           stdout=subprocess.DEVNULL)  # fmt: skip
    return dest


def side_env(tree: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_demo(tree: Path, cores: int) -> float:
    """Seconds of `make demo` in `tree` (install skipped); its output goes to demo.log there."""
    stamp = VENV / ".cirflow-installed"
    cmd = ["make", "-C", str(tree), "-o", str(stamp), "demo", f"VENV={VENV}", f"CORES={cores}"]
    start = time.perf_counter()
    with open(tree / "demo.log", "w") as log:
        sh(*cmd, env=side_env(tree), stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def job_seconds(tree: Path) -> dict[str, float]:
    """Seconds per job (Snakemake's benchmark files), keyed by path under benchmarks/runs/demo."""
    root = tree / "benchmarks/runs/demo"
    out = {}
    for path in sorted(root.rglob("*.tsv")):
        lines = path.read_text().splitlines()
        out[str(path.relative_to(root).with_suffix(""))] = float(lines[-1].split("\t")[0])
    return out


def grouped(jobs: dict[str, float]) -> dict[str, float]:
    def member(name: str, keys: tuple[str, ...]) -> bool:
        return any(name == key or name.startswith(key + "/") for key in keys)

    return {
        label: sum(s for name, s in jobs.items() if member(name, keys)) for label, keys in GROUPS
    }


def step_breakdown(tree: Path, stage: str, threads: int, steps: int, script=STEP_SCRIPT) -> dict:
    """The JSON line one of the scripts above prints, run in `tree` on its demo results."""
    proc = sh(sys.executable, "-c", script, stage, str(threads), str(steps),
              cwd=tree, env=side_env(tree), capture_output=True)  # fmt: skip
    line = [x for x in proc.stdout.splitlines() if x.startswith(("STEP ", "PASSES "))][-1]
    return json.loads(line.split(" ", 1)[1])


def ratio(old: float, new: float) -> str:
    return f"{old / new:5.2f}x" if new > 0 else "    -"


def print_demo(walls: dict, jobs: dict) -> None:
    old, new = walls["old"], walls["new"]
    print(f"\nwhole workflow (make demo, install excluded): old {old:.0f} s ({old / 60:.1f} min), "
          f"new {new:.0f} s ({new / 60:.1f} min), {ratio(old, new)}")  # fmt: skip
    print(f"\n{'job (seconds, summed over its jobs)':40s} {'old':>8s} {'new':>8s} {'ratio':>7s}")
    g_old, g_new = grouped(jobs["old"]), grouped(jobs["new"])
    for label, _ in GROUPS:
        print(
            f"{label:40s} {g_old[label]:8.1f} {g_new[label]:8.1f} {ratio(g_old[label], g_new[label]):>7s}"
        )
    print(f"{'all jobs':40s} {sum(g_old.values()):8.1f} {sum(g_new.values()):8.1f}")


def print_recalls(trees: dict[str, Path]) -> None:
    """Val R@1 / Rs@1 / mean of each stage's best.pt (rule evaluate), old and new."""
    print(f"\n{'val recall (rule evaluate)':40s} {'old':>17s} {'new':>17s}")
    for stage in ("stage1", "stage2_control", "stage2"):
        cells = []
        for tree in trees.values():
            m = json.loads((tree / f"results/demo/eval/{stage}/val_metrics.json").read_text())
            cells.append(
                f"{m['recall_at1']:5.1f} {m['group_recall_at1']:5.1f} {m['arithmetic_mean']:5.1f}"
            )
        print(f"{stage + ' (R@1 Rs@1 mean)':40s} {cells[0]:>17s} {cells[1]:>17s}")


def print_steps(label: str, old: dict, new: dict) -> None:
    print(f"\n{label}: region mode {new['region_mode']}")
    print(f"{'':24s} {'old':>9s} {'new':>9s} {'ratio':>7s}")
    for key in ("batch_size", "steps_per_epoch"):
        print(f"{key.replace('_', ' '):24s} {old[key]:9d} {new[key]:9d}")
    for key in ("batch", "forward", "backward", "optimizer", "total"):
        print(
            f"{key + ' (ms)':24s} {old[key]:9.1f} {new[key]:9.1f} {ratio(old[key], new[key]):>7s}"
        )
    # A batch size that differs between the sides makes a step a different unit: compare
    # the time of one triplet and of one epoch at the measured rate.
    per = {side: d["total"] / d["batch_size"] for side, d in (("old", old), ("new", new))}
    epoch = {
        side: d["total"] * d["steps_per_epoch"] / 1000 for side, d in (("old", old), ("new", new))
    }
    print(
        f"{'ms per triplet':24s} {per['old']:9.2f} {per['new']:9.2f} {ratio(per['old'], per['new']):>7s}"
    )
    print(f"{'epoch at this rate (s)':24s} {epoch['old']:9.1f} {epoch['new']:9.1f} "
          f"{ratio(epoch['old'], epoch['new']):>7s}")  # fmt: skip
    # The whole run's training (its epochs at this rate): what a stage-2 schedule change saves.
    run = {side: epoch[side] * d["num_epochs"] for side, d in (("old", old), ("new", new))}
    print(f"{'epochs':24s} {old['num_epochs']:9d} {new['num_epochs']:9d}")
    print(f"{'run at this rate (s)':24s} {run['old']:9.1f} {run['new']:9.1f} "
          f"{ratio(run['old'], run['new']):>7s}")  # fmt: skip
    print(f"{'steps/s':24s} {1000 / old['total']:9.1f} {1000 / new['total']:9.1f}")
    print(f"{'operators per step':24s} {old['ops_per_step']:9.0f} {new['ops_per_step']:9.0f}")
    print(f"{'GFLOP per step':24s} {old['gflop']:9.2f} {new['gflop']:9.2f}")
    print(f"{'arithmetic floor (ms)':24s} {old['floor_ms']:9.1f} {new['floor_ms']:9.1f}   "
          f"(at {new['gemm_gflops']:.0f} GFLOP/s, a 1024^3 float32 GEMM here)")  # fmt: skip
    share = {side: d["floor_ms"] / d["total"] for side, d in (("old", old), ("new", new))}
    print(f"{'arithmetic (floor/step)':24s} {share['old']:9.0%} {share['new']:9.0%}")


def print_passes(passes: dict) -> None:
    """The new step pass by pass: each pass's forward and backward alone, and its FLOP rate."""
    rate = passes["gemm_gflops"]
    print(f"  {'pass (each from ln_vision)':32s} {'fwd ms':>7s} {'bwd ms':>7s} {'GFLOP':>6s} "
          f"{'floor ms':>8s} {'GFLOP/s':>8s}")  # fmt: skip
    for name, p in passes["passes"].items():
        ms = p["forward"] + p["backward"]
        print(f"  {name:32s} {p['forward']:7.1f} {p['backward']:7.1f} {p['gflop']:6.2f} "
              f"{1000 * p['gflop'] / rate:8.1f} {p['gflop'] / ms * 1000:8.1f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--old", default=BASELINE, help="git ref of the old side")
    ap.add_argument("--new", default="HEAD", help="git ref of the new side")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60, help="timed steps per breakdown")
    ap.add_argument("--steps-only", action="store_true", help="reuse --keep's demo results")
    ap.add_argument("--keep", default=None, help="where the two worktrees live (kept)")
    args = ap.parse_args()

    base = Path(args.keep or tempfile.mkdtemp(prefix="cirflow-bench-demo-")).resolve()
    trees = {
        side: checkout(ref, base / side) for side, ref in (("old", args.old), ("new", args.new))
    }
    print(f"old = {args.old}, new = {args.new}, worktrees in {base}, {args.cores} cores, "
          f"{os.cpu_count()} CPUs visible")  # fmt: skip
    if not args.steps_only:
        walls, jobs = {}, {}
        for side, tree in trees.items():
            print(f"running make demo ({side}) ...", flush=True)
            walls[side] = run_demo(tree, args.cores)
            jobs[side] = job_seconds(tree)
        print_demo(walls, jobs)
        print_recalls(trees)
    for stage, threads, label in (
        ("stage1", 2, "stage-1 step, 2 threads"),
        ("stage2", 1, "stage-2 step, 1 thread (as an ablation run trains)"),
        ("stage2_control", 1, "control step, 1 thread (the ablation's none runs)"),
    ):
        runs = {"old": [], "new": []}
        for _ in range(2):  # alternating, so that a change of load hits both sides
            for side, tree in trees.items():
                runs[side].append(step_breakdown(tree, stage, threads, args.steps))
        best = {side: min(r, key=lambda x: x["total"]) for side, r in runs.items()}
        print_steps(label, best["old"], best["new"])
        print_passes(step_breakdown(trees["new"], stage, threads, args.steps, PASSES_SCRIPT))
    if not args.keep:
        for tree in trees.values():
            sh("git", "-C", str(REPO), "worktree", "remove", "--force", str(tree))


if __name__ == "__main__":
    main()
