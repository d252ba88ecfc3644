"""benchmarks/gpu_check.sh in its CPU / --tiny mode: the same code paths as on a GPU, in seconds."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_gpu_check_tiny_mode_prints_every_figure(tmp_path):
    env = {**os.environ, "PY": sys.executable, "YOLO_CONFIG_DIR": str(tmp_path / "yolo")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "benchmarks/gpu_check.sh"),
            str(tmp_path / "out"),
            "--tiny",
            "--device",
            "cpu",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for line in (
        "sprc stage1",
        "sprc stage2 (aux region loss)",
        "vit features",
        "tiny model, CPU vs",
        "yolo predict",
    ):
        assert line in out, line
    report = json.loads(Path(tmp_path / "out/gpu_check.json").read_text())
    assert report["tiny"] and report["preset"] == "pretrain_random_small"
    for stage in ("sprc_stage1", "sprc_stage2"):
        assert report[stage]["step_s"] > 0, report[stage]
    assert set(report["sprc_stage2"]["losses"]) == {
        "loss_itc",
        "loss_rtc",
        "loss_align",
        "loss_region",
    }
    assert "loss_region" not in report["sprc_stage1"]["losses"]
    assert report["vit_features"]["images_per_s"] > 0
    # CPU against itself: the comparison code runs and finds no difference.
    assert report["tiny_devices"]["cpu_fp32_max_rel_diff"] == 0.0
    for run in ("batch_big", "batch_1", "batch_1_fp32"):
        assert report["yolo"][run]["images_per_s"] > 0
