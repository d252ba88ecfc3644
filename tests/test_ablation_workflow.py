"""The control and the ablation in the DAG (dry runs only): rule all holds the control and its
evaluation but not the ablation; `snakemake ablation` lists mode x box source x seed from one
stage-1 best.pt, none once per seed, the ground-truth box files, and val-only evaluations."""

import re

import pytest
from conftest import make_workflow_copy, planned_jobs, run_snakemake

pytestmark = pytest.mark.slow


def _outputs(workdir, *args):
    """Every `output:` path and every `input:` line of a dry run, per rule."""
    proc = run_snakemake(workdir, "-n", *args)
    text = proc.stdout + proc.stderr
    jobs = []
    for block in text.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        stage = re.search(r"\n    wildcards: .*\bstage=(\w+)", block)
        if rule == "train" and stage:  # rule train's jobs, per stage (conftest.planned_jobs)
            rule = f"train:{stage.group(1)}"
        inputs = re.search(r"\n    input: (.*)", block)
        outputs = re.search(r"\n    output: (.*)", block)
        jobs.append(
            (
                rule,
                inputs.group(1).split(", ") if inputs else [],
                outputs.group(1).split(", ") if outputs else [],
            )
        )
    return jobs


def test_rule_all_holds_the_control_and_not_the_ablation(tmp_path):
    wd = make_workflow_copy(tmp_path / "wf")
    jobs = planned_jobs(wd)
    assert jobs["train:stage2"] == 1 and jobs["train:stage2_control"] == 1
    assert jobs["evaluate"] == 3 and jobs["compare_stages"] == 1
    assert not {"ablation_train", "ablation_evaluate", "ablation", "gt_boxes"} & set(jobs)
    by_rule = {rule: (i, o) for rule, i, o in _outputs(wd) if rule.startswith("train:stage2")}
    control_in, control_out = by_rule["train:stage2_control"]
    stage2_in, _ = by_rule["train:stage2"]
    assert "results/demo/models/stage1/best.pt" in control_in
    assert "results/demo/models/stage1/best.pt" in stage2_in
    assert not any("/boxes/" in p for p in control_in)  # mode none reads no boxes
    assert "results/demo/boxes/saliency/val.json" in stage2_in  # tokens validates with val's
    assert "results/demo/models/stage2_control/best.pt" in control_out


def test_the_ablation_dry_run_lists_the_expected_jobs(tmp_path):
    wd = make_workflow_copy(tmp_path / "wf")
    jobs = planned_jobs(wd, "ablation")
    # config.yaml's runs: none, tokens_gt, gated_gt, token_loss_{saliency,gt,edited}, x 3 seeds.
    assert jobs == {
        "demo_dataset": 1,
        # train's 2 shards and train, val, test1 whole (gt_boxes reads every split's sizes).
        "image_manifest": 5,
        "pretrain_backbone": 1,
        "image_features": 3,  # train (2 shards) and val: no test1 in the ablation
        "detect_shard": 2,  # saliency's train shards: token_loss scores no val boxes
        "merge_boxes": 1,
        "gt_boxes": 1,
        "train:stage1": 1,
        "ablation_train": 18,
        "ablation_evaluate": 18,
        "ablation": 1,
    }
    train_jobs = [(i, o) for rule, i, o in _outputs(wd, "ablation") if rule == "ablation_train"]
    runs = {o[0].split("/runs/")[1].rsplit("/", 1)[0] for _, o in train_jobs}
    expect = {"none", "tokens_gt", "gated_gt"} | {
        f"token_loss_{s}" for s in ("saliency", "gt", "edited")
    }
    assert runs == {f"{r}/seed{s}" for r in expect for s in (0, 1, 2)}
    assert all("results/demo/models/stage1/best.pt" in i for i, _ in train_jobs)
    edited = "results/demo/dataset/cirr/captions/boxes_edited.rc2"
    for inputs, outputs in train_jobs:
        run = outputs[0].split("/runs/")[1].split("/")[0]
        boxes = {p for p in inputs if "/boxes/" in p or "boxes_edited" in p}
        mode, _, source = run.rpartition("_") if run != "none" else ("none", "", None)
        if source is None:
            assert not boxes
        elif source == "edited":  # each triplet's own boxes, beside the captions; no sidecar
            assert boxes == {f"{edited}.train.json"}
        else:
            split_files = {"train.json", "train.meta.json"}
            if mode in ("tokens", "gated"):  # they score val with its own boxes
                split_files |= {"val.json", "val.meta.json"}
            assert boxes == {f"results/demo/boxes/{source}/{f}" for f in split_files}
    # A smaller ablation from its config section: by name, with a run of its own length, or
    # (runs null) modes x box sources.
    (wd / "small.yaml").write_text(
        "ablation:\n  seeds: [0, 1]\n  runs: [none, none@4, aux_saliency@4]\n"
    )
    jobs = planned_jobs(wd, "ablation", "--configfile", "test_config.yaml", "small.yaml")
    assert jobs["ablation_train"] == 6 and jobs["ablation_evaluate"] == 6 and "gt_boxes" not in jobs
    (wd / "small.yaml").write_text(
        "ablation:\n  seeds: [0, 1]\n  runs: null\n  modes: [none, tokens]\n"
        "  box_sources: [saliency]\n"
    )
    jobs = planned_jobs(wd, "ablation", "--configfile", "test_config.yaml", "small.yaml")
    assert jobs["ablation_train"] == 4 and jobs["ablation_evaluate"] == 4 and "gt_boxes" not in jobs


def test_demo_only_runs_stop_the_ablation_on_real_cirr_and_nothing_else(tmp_path):
    """config.yaml's runs name the demo's box sources (gt, edited): on a real CIRR root they
    must stop `snakemake ablation` with a message, never the parse of rule all."""
    from conftest import write_mini_cirr

    wd = make_workflow_copy(tmp_path / "wf")
    root = tmp_path / "cirr"
    write_mini_cirr(root)
    (wd / "cirr.yaml").write_text(
        f"dataset: {{name: cirr, cirr_root: {root}}}\nmodel: {{preset: tiny_scratch}}\n"
    )
    run_snakemake(wd, "--configfile", "cirr.yaml", "-n", "all")
    proc = run_snakemake(wd, "--configfile", "cirr.yaml", "-n", "ablation", check=False)
    assert proc.returncode != 0
    assert re.search(
        r"tokens_gt: box source gt exists only for the demo", proc.stdout + proc.stderr
    )
