# SPRC training: stage 1 (global losses, never depends on boxes), stage 2 (+ region loss).
# Outputs per stage: best.pt (declared), train/validation CSVs, hparams.json; last.pt and
# resume/ are left undeclared on purpose, so that a killed job resumes from them when rerun.
from pathlib import Path

from cirflow.train.config import semantic_params


wildcard_constraints:
    stage="stage1|stage2",


STAGE2_INIT = config["train"]["stage2"]["init"]


def stage2_box_method():
    """The box method feeding the region loss: train.stage2.box_method, else boxes.methods[0]."""
    return config["train"]["stage2"]["box_method"] or config["boxes"]["methods"][0]


def root_of_input(wildcards, input):
    """The dataset root, from the first annotation file: <root>/cirr/image_splits/split.rc2.*.json."""
    return str(Path(input.data[0]).parents[2])


def training_data():
    """The annotation files a training run reads (train triplets + val for per-epoch validation)."""
    return [
        split_file("train"),
        captions_file("train"),
        split_file("val"),
        captions_file("val"),
    ]


def stage_outputs(stage):
    return {
        "best": f"results/{{ds}}/models/{stage}/best.pt",
        "train_csv": f"results/{{ds}}/models/{stage}/train_metrics.csv",
        "val_csv": f"results/{{ds}}/models/{stage}/validation_metrics.csv",
        "hparams": f"results/{{ds}}/models/{stage}/hparams.json",
    }


rule train_stage1:
    input:
        data=training_data(),
        code=package_sources("model", "train"),
    output:
        **stage_outputs("stage1"),
    log:
        "logs/{ds}/train_stage1.log",
    benchmark:
        "benchmarks/runs/{ds}/train_stage1.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["train"]["resources"]["threads"]
    resources:
        gpu=config["train"]["resources"]["gpu"],
        mem_mb=config["train"]["resources"]["mem_mb"],
        runtime=config["train"]["resources"]["runtime"],
    params:
        cirr_root=root_of_input,
        model=config["model"],
        train=semantic_params(config["train"], "stage1"),
    script:
        "../workflow_scripts/train_stage1.py"


rule train_stage2:
    input:
        data=training_data(),
        code=package_sources("model", "train"),
        init=("results/{ds}/models/stage1/best.pt" if STAGE2_INIT == "stage1" else []),
        boxes=f"results/{{ds}}/boxes/{stage2_box_method()}/train.json",
        boxes_meta=f"results/{{ds}}/boxes/{stage2_box_method()}/train.meta.json",
    output:
        **stage_outputs("stage2"),
    log:
        "logs/{ds}/train_stage2.log",
    benchmark:
        "benchmarks/runs/{ds}/train_stage2.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["train"]["resources"]["threads"]
    resources:
        gpu=config["train"]["resources"]["gpu"],
        mem_mb=config["train"]["resources"]["mem_mb"],
        runtime=config["train"]["resources"]["runtime"],
    params:
        cirr_root=root_of_input,
        model=config["model"],
        train=semantic_params(config["train"], "stage2"),
        box_method=stage2_box_method(),
    script:
        "../workflow_scripts/train_stage2.py"
