"""benchmarks/bench_ablation.py --step-time-only on a few triplets: the two same-weight models it
times (stage 1's losses and region tokens) still build from one state dict as the model grows
region-only parameters (region_temp once broke it with a missing-key error)."""

import os
import re
import subprocess
import sys

from conftest import REPO


def test_bench_ablation_step_time_prints_both_box_sources():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = ["--step-time-only", "--threads", "1", "--steps", "1", "--triplets", "48"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/bench_ablation.py"), *args, "--batch-size", "16"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for source in ("saliency", "gt"):
        assert re.search(rf"{source} .*tokens +[\d.]+ ms, ratio [\d.]+", proc.stdout), source
