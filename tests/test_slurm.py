"""The workflow on a real SLURM cluster: `snakemake --workflow-profile profiles/slurm`.

A single-node cluster on loopback with one fake GPU is started by `scripts/slurm_local.sh`
(installs Debian's slurm + munge with apt-get when missing; root). The test runs a small demo
through the SLURM profile, plus the override flags below for what this throw-away cluster lacks,
and checks that

* every job went through sbatch, and exactly the GPU-declaring rules asked for one GPU
  (`TresPerJob=gres:gpu:1` in `scontrol show job`, i.e. the plugin passed `--gpus=1`) and got
  it (`CUDA_VISIBLE_DEVICES` inside the job);
* the outputs are byte-identical to a local run (`--workflow-profile profiles/local`).

Skipped, with the reason, where the cluster cannot start (not root, no apt-get, a SLURM of the
machine's own); set CIRFLOW_REQUIRE_SLURM=1 (as .ci/run does) to make that a failure instead.
Takes about two minutes, most of it SLURM's scheduling and status-query intervals.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import SMALL_DEMO, WORKFLOW_FILES

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm_local.sh"
STATE_DIR = Path(os.environ.get("CIRFLOW_SLURM_DIR", "/tmp/cirflow-slurm"))
SLURM_CONF = STATE_DIR / "etc" / "slurm.conf"
SPLITS = ("train", "val", "test1")

# A small demo: a few families per split, sharded so that merging is exercised.
TEST_CONFIG = {
    "demo": {"seed": 0, "train_triplets": 24, "val_triplets": 12, "test1_triplets": 12},
    "boxes": {"methods": ["saliency"], "shards": {"train": 2, "val": 1, "test1": 1}},
    # Six train families: two a batch for the first stage.
    "pretrain": {**SMALL_DEMO["pretrain"], "families_per_batch": 2},
    "train": SMALL_DEMO["train"],
    "evaluate": SMALL_DEMO["evaluate"],
}

# The targets both runs build: boxes, and both training stages with their evaluation (the GPU
# rules). Training outputs are not compared byte for byte: float sums differ with thread counts.
TARGETS = [f"results/demo/boxes/saliency/{split}.stats.json" for split in SPLITS] + [
    "results/demo/eval/stage2/val_metrics.json"
]

# Rules that declare gpu=1 (detect_shard only for yolo/hybrid, see expects_gpu). Every job of these
# must be submitted with one GPU, every other job with none.
GPU_RULES = {"slurm_gpu_probe", "train", "evaluate"}

# Compared byte for byte between the SLURM and the local run (files or folders under the run dir).
COMPARED = ["results/demo/boxes", "results/demo/dataset/cirr", "results/demo/dataset/boxes_gt.json"]

# A test-only rule that declares one GPU and records what the job saw: the GPU check holds even
# while no real GPU rule is in the small run.
PROBE_TARGET = "results/slurm_probe/gpu.json"
PROBE_RULE = """

rule slurm_gpu_probe:
    output:
        "results/slurm_probe/gpu.json",
    log:
        "logs/slurm_probe/gpu.log",
    resources:
        gpu=1,
    run:
        import json, os

        seen = {k: os.environ.get(k, "") for k in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
        with open(output[0], "w") as fh:
            json.dump(seen, fh)
"""

# The heavy rules of profiles/slurm/config.yaml, shrunk to fit the one small node.
HEAVY_RULES = (
    "detect_shard",
    "pretrain_backbone",
    "image_features",
    "train",
    "evaluate",
    "box_report",
)

# What this cluster lacks, as command-line flags (they replace the profile's keys of that name):
# no slurmdbd -> squeue for status; no account/partition; a 2-CPU node with ~24 GB.
SLURM_TEST_FLAGS = [
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "1",
    "--slurm-keep-successful-logs",
    "--retries", "0",
    "--latency-wait", "5",
    "--max-threads", "2",
    "--jobs", "4",
    "--default-resources", "mem_mb=1000", "runtime=10",
    "--set-resources", *[f"{rule}:mem_mb=1000" for rule in HEAVY_RULES],
]  # fmt: skip

RUN_TIMEOUT_S = 900  # the real path: first stage + cached features + both stages


def expects_gpu(rule: str, wildcards: str) -> bool:
    """Whether a job must carry one GPU. `wildcards` is the plugin's job comment suffix
    (wildcard values joined by '_', e.g. demo_yolo_train_0_2)."""
    if rule == "detect_shard":
        return any(m in wildcards.split("_") for m in ("yolo", "hybrid"))
    return rule in GPU_RULES


def _script(action: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), action], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def slurm_cluster():
    """The local cluster: started here (and stopped afterwards) unless it already runs."""
    require = os.environ.get("CIRFLOW_REQUIRE_SLURM") == "1"
    already = _script("status").returncode == 0
    if not already:
        started = _script("start")
        if started.returncode != 0:
            reason = (
                f"local SLURM cluster could not start (scripts/slurm_local.sh start, exit "
                f"{started.returncode}): {started.stderr.strip()[-800:]}"
            )
            if require:
                pytest.fail(reason)
            pytest.skip(reason)
    env = dict(os.environ, SLURM_CONF=str(SLURM_CONF))
    try:
        yield env
    finally:
        if not already:
            stopped = _script("stop")
            assert stopped.returncode == 0, stopped.stderr


def _copy_workflow(dest: Path, extra_rules: str = "") -> Path:
    dest.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    if extra_rules:
        with open(dest / "Snakefile", "a") as fh:
            fh.write(extra_rules)
    (dest / "test_config.yaml").write_text(yaml.safe_dump(TEST_CONFIG))
    return dest


def _snakemake(workdir: Path, args: list[str], env: dict, log_name: str) -> str:
    """Run snakemake; on a hang stop it with SIGINT (the SLURM plugin ignores SIGTERM)."""
    log_path = workdir / log_name
    cmd = [sys.executable, "-m", "snakemake", *args]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        try:
            rc = proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc = "timeout"
    output = log_path.read_text()
    assert rc == 0, f"snakemake {' '.join(args)} failed ({rc}):\n{output[-6000:]}"
    return output


def _files(root: Path, rel: str) -> dict[str, bytes]:
    path = root / rel
    if path.is_file():
        return {rel: path.read_bytes()}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def _slurm_jobs(run_id: str, env: dict) -> list[dict]:
    """Every job of this run as `scontrol show job -o` fields (MinJobAge keeps finished ones)."""
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    jobs = []
    for job_id in out:
        line = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        jobs.append(fields)
    return jobs


@pytest.mark.timeout(900)
def test_demo_on_slurm_matches_local_run(slurm_cluster, tmp_path):
    env = slurm_cluster

    local = _copy_workflow(tmp_path / "local")
    _snakemake(
        local,
        [*TARGETS, "--workflow-profile", "profiles/local", "--cores", "2",
         "--configfile", "test_config.yaml"],
        env, "snakemake.log",
    )  # fmt: skip

    cluster = _copy_workflow(tmp_path / "slurm", extra_rules=PROBE_RULE)
    output = _snakemake(
        cluster,
        [*TARGETS, PROBE_TARGET, "--workflow-profile", "profiles/slurm",
         "--configfile", "test_config.yaml", *SLURM_TEST_FLAGS],
        env, "snakemake.log",
    )  # fmt: skip

    # Every job went through SLURM, GPUs exactly where declared.
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    jobs = _slurm_jobs(run_id, env)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert sorted(j["JobId"] for j in jobs) == sorted(submitted), output[-3000:]
    rules_seen = set()
    for job in jobs:
        comment = re.fullmatch(r"rule_(\w+?)(?:_wildcards_(\S+))?", job["Comment"])
        assert comment, job
        rule, wildcards = comment.group(1), comment.group(2) or ""
        rules_seen.add(rule)
        assert job["JobState"] == "COMPLETED", job
        gpus = job.get("TresPerJob", "")
        if expects_gpu(rule, wildcards):
            assert gpus == "gres:gpu:1", f"{rule} {wildcards}: TresPerJob={gpus!r}"
        else:
            assert "gpu" not in gpus, f"{rule} {wildcards} got a GPU: {gpus!r}"
    # merge_boxes and box_stats are localrules: they run beside Snakemake, not as jobs.
    assert {
        "demo_dataset",
        "detect_shard",
        "train",
        "evaluate",
        "slurm_gpu_probe",
    } <= rules_seen
    probe = json.loads((cluster / PROBE_TARGET).read_text())
    assert probe["CUDA_VISIBLE_DEVICES"] == "0", probe  # SLURM handed the job its one GPU
    assert probe["SLURM_JOB_ID"] in submitted

    # Same bytes as the local run.
    for rel in COMPARED:
        want, got = _files(local, rel), _files(cluster, rel)
        assert want, f"local run wrote nothing under {rel}"
        assert sorted(got) == sorted(want), rel
        different = [name for name in want if want[name] != got[name]]
        assert not different, f"SLURM and local outputs differ: {different[:10]}"
