# SPRC training: stage 1 (global losses, never depends on boxes), stage 2 (its region mode,
# train.stage2.region.mode) and the control (stage 2 with region mode none: same init, schedule,
# seed and batch order, no boxes). Outputs per run: best.pt (declared), train/validation CSVs,
# hparams.json; last.pt and resume/ are left undeclared on purpose, so that a killed job resumes
# from them when rerun.


rule train_stage1:
    input:
        data=training_data(),
        backbone=backbone_file(),
        features_train=feature_files("train"),
        features_val=feature_files("val"),
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
        code=code_digest("train_stage"),
        cirr_root=root_of_input,
        model=canonical(config["model"]),
        train=train_params("stage1"),
    script:
        "../workflow_scripts/train_stage.py"


rule train_stage2:
    input:
        # The train boxes (unless mode none), and the val boxes with tokens (validation).
        unpack(stage2_boxes),
        data=training_data(),
        backbone=backbone_file(),
        features_train=feature_files("train"),
        features_val=feature_files("val"),
        init=("results/{ds}/models/stage1/best.pt" if STAGE2_INIT == "stage1" else []),
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
        code=code_digest("train_stage"),
        cirr_root=root_of_input,
        model=canonical(config["model"]),
        train=train_params("stage2"),
        box_method=stage2_box_method(),
    script:
        "../workflow_scripts/train_stage.py"


rule train_stage2_control:
    input:
        data=training_data(),
        backbone=backbone_file(),
        features_train=feature_files("train"),
        features_val=feature_files("val"),
        init=("results/{ds}/models/stage1/best.pt" if STAGE2_INIT == "stage1" else []),
    output:
        **stage_outputs(CONTROL),
    log:
        "logs/{ds}/train_stage2_control.log",
    benchmark:
        "benchmarks/runs/{ds}/train_stage2_control.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["train"]["resources"]["threads"]
    resources:
        gpu=config["train"]["resources"]["gpu"],
        mem_mb=config["train"]["resources"]["mem_mb"],
        runtime=config["train"]["resources"]["runtime"],
    params:
        code=code_digest("train_stage"),
        cirr_root=root_of_input,
        model=canonical(config["model"]),
        # train.stage2 with region.mode none; every other key is stage 2's.
        train=train_params(CONTROL),
    script:
        "../workflow_scripts/train_stage.py"
