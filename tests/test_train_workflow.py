"""The training/evaluation rules end to end through the snakemake CLI, on a very small demo.

stage 1 -> evaluate (val recalls + test-server files), stage 2 from stage 1 with the merged train boxes and its
control, the comparison table; then rerun scope: changing a stage-2 key reruns stage 2 only, a runtime-only
key (train.num_workers) reruns nothing; and a killed training job resumes when rerun.
"""

import json

import pytest
import yaml
from conftest import make_workflow_copy, planned_jobs, run_snakemake

pytestmark = pytest.mark.slow

TARGETS = [
    "results/demo/eval/stage1/val_metrics.json",
    "results/demo/eval/stage1/submission/recall.json",
    "results/demo/eval/stage2/val_metrics.json",
    "results/demo/eval/comparison.csv",
]
TRAIN = {
    "train": {
        "num_workers": 0,
        "resources": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 1},
        "stage1": {"num_epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "batching": "img_set"},
        "stage2": {"num_epochs": 1, "batch_size": 8, "learning_rate": 1e-4, "init": "stage1"},
    },
    "evaluate": {
        "num_workers": 0,
        "resources": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 1},
    },
}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def _config(workdir, **changes):
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    test_cfg = yaml.safe_load((workdir / "test_config.yaml").read_text())
    full = _merge(_merge(cfg, test_cfg), TRAIN)
    for path, value in changes.items():
        node = full
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    (workdir / "test_config.yaml").write_text(yaml.safe_dump(full))


def _planned(workdir) -> dict[str, int]:
    return planned_jobs(workdir, *TARGETS)


def _trains(plan: dict[str, int]) -> set[str]:
    return {job for job in plan if job.startswith("train:")}


def test_stage1_stage2_evaluation_and_rerun_scope(tmp_path):
    wd = make_workflow_copy(tmp_path / "wf")
    _config(wd)
    run_snakemake(wd, *TARGETS, timeout=1500)
    m1 = json.loads((wd / "results/demo/eval/stage1/val_metrics.json").read_text())
    assert set(m1) >= {"recall_at1", "recall_at50", "group_recall_at1", "arithmetic_mean"}
    details = json.loads((wd / "results/demo/eval/stage1/val_details.json").read_text())
    assert details["chance"]["group_recall_at1"] == pytest.approx(20.0)
    recall = json.loads((wd / "results/demo/eval/stage1/submission/recall.json").read_text())
    assert recall["version"] == "rc2" and recall["metric"] == "recall"
    csv = (wd / "results/demo/eval/comparison.csv").read_text().splitlines()
    assert (
        csv[0] == ("metric,stage1,stage2_control,stage2,delta_vs_control,delta_vs_stage1")
        and len(csv) == 12
    )
    hp2 = json.loads((wd / "results/demo/models/stage2/hparams.json").read_text())
    assert hp2["settings"]["region_mode"] != "none" and hp2["settings"]["init_checkpoint"].endswith(
        "stage1/best.pt"
    )
    assert hp2["box_counts"]["targets_with_boxes"] > 0
    hpc = json.loads((wd / "results/demo/models/stage2_control/hparams.json").read_text())
    assert hpc["settings"]["region_mode"] == "none" and hpc["box_counts"] is None
    assert (wd / "logs/demo/train_stage1.log").read_text().count("epoch 2/2") >= 1
    # Nothing to do on a second run.
    assert not _trains(_planned(wd))
    # A runtime-only key: no retraining.
    _config(wd, **{"train.num_workers": 1})
    assert not _trains(_planned(wd))
    # A stage-2 key: stage 2 (and what depends on it) only.
    _config(wd, **{"train.num_workers": 0, "train.stage2.loss_region": 0.25})
    plan = _planned(wd)
    assert "train:stage2" in plan and "train:stage1" not in plan
    assert "train:stage2_control" not in plan


def test_killed_training_job_resumes_when_rerun(tmp_path):
    """A stage-1 job killed after its first epoch resumes from last.pt on the rerun. (Pixels
    and tiny_scratch: the run is rebuilt here with the library, without the first stage.)"""
    wd = make_workflow_copy(tmp_path / "wf")
    _config(wd, **{"model.preset": "tiny_scratch"})
    stage1 = wd / "results/demo/models/stage1"
    # Simulate the kill: epoch 1 of a 2-epoch run finished, the job died, Snakemake removed the
    # declared outputs. We produce that state with the library (same settings as the rule).
    run_snakemake(wd, "results/demo/dataset/demo_manifest.json", timeout=600)
    from cirflow.train.config import RunFiles, settings_from_config
    from cirflow.train.loop import train
    from cirflow.train.runs import semantic_params

    cfg = yaml.safe_load((wd / "test_config.yaml").read_text())
    settings = settings_from_config(
        RunFiles(str(wd / "results/demo/dataset"), str(stage1)),
        model_cfg=cfg["model"],
        train_params=semantic_params(cfg["train"], "stage1"),
        runtime_cfg=cfg["train"],
        threads=1,
    )

    class Killed(Exception):
        pass

    def kill(epoch, row):
        raise Killed

    with pytest.raises(Killed):
        train(settings, on_epoch_end=kill)
    for name in ("best.pt", "train_metrics.csv", "validation_metrics.csv", "hparams.json"):
        (stage1 / name).unlink(missing_ok=True)
    run_snakemake(wd, "results/demo/models/stage1/best.pt", timeout=900)
    log = (wd / "logs/demo/train_stage1.log").read_text()
    assert "resuming from" in log and "after epoch 1 of 2" in log
    assert len((stage1 / "train_metrics.csv").read_text().splitlines()) == 3
