"""A real SIGKILL of a snakemake training job mid-epoch, then a rerun: the same metrics as the
uninterrupted run of the shared small demo (its stage 1 uses the same config)."""

import os
import signal
import subprocess
import time

import pytest
import torch
from conftest import SNAKEMAKE, make_workflow_copy, run_snakemake

pytestmark = pytest.mark.slow

STAGE1 = "results/demo/models/stage1"


def test_sigkill_mid_epoch_then_rerun_gives_identical_metrics(finished_demo_run, tmp_path):
    wd = make_workflow_copy(tmp_path / "wf")
    run_snakemake(wd, "results/demo/dataset/demo_manifest.json")
    log = wd / "logs/demo/train_stage1.log"
    cmd = [str(SNAKEMAKE), "--configfile", "test_config.yaml", "--cores", "2", f"{STAGE1}/best.pt"]
    # Its own session: the kill takes snakemake and the job's python together, like a node loss.
    job = subprocess.Popen(
        cmd,
        cwd=wd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    try:
        # "epoch 1/2: loss_itc=..." is logged once epoch 1's checkpoint and tables are written
        # (the progress bar's "epoch 1/2: 0%" comes earlier): from then on the job is inside
        # epoch 2 (7 steps and a validation).
        while not (log.is_file() and "epoch 1/2: loss_itc=" in log.read_text()):
            assert job.poll() is None, "the training job ended before it could be killed"
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.02)
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    stage1 = wd / STAGE1
    assert torch.load(stage1 / "last.pt", weights_only=True)["epoch"] == 1
    assert "epoch 2/2: loss_itc=" not in log.read_text()

    # What a user does after a crash: unlock, then rerun (the killed job's outputs are marked
    # incomplete).
    run_snakemake(wd, "--unlock")
    run_snakemake(wd, "--rerun-incomplete", f"{STAGE1}/best.pt")
    text = log.read_text()
    assert "resuming from" in text and "after epoch 1 of 2" in text
    reference = finished_demo_run / STAGE1
    for name in ("train_metrics.csv", "validation_metrics.csv"):
        assert (stage1 / name).read_text() == (reference / name).read_text(), name
    for name in ("best.pt", "last.pt"):
        ours = torch.load(stage1 / name, weights_only=True)["state_dict"]
        theirs = torch.load(reference / name, weights_only=True)["state_dict"]
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name
