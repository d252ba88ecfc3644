# SPRC training, one job per stage: stage1 (global losses, never depends on boxes), stage2 (its
# region mode, train.stage2.region.mode) and stage2_control (stage 2 with region mode none: same
# init, schedule, seed and batch order, no boxes); the ablation's runs reuse this rule
# (rules/ablation.smk). Outputs per run: best.pt (declared), train/validation CSVs,
# hparams.json; last.pt and resume/ are left undeclared on purpose, so that a killed job resumes
# from them when rerun.


rule train:
    input:
        # The run's boxes (train, unless mode none; val with tokens, for the per-epoch
        # validation) and, for a stage-2 run, stage 1's best.pt.
        unpack(train_run_inputs),
        data=training_data(),
        backbone=backbone_file(),
        features_train=feature_files("train"),
        features_val=feature_files("val"),
        # Without cached features, the train and val images (their decoded pixels).
        images=pixel_manifests(["train", "val"]),
    output:
        best="results/{ds}/models/{stage}/best.pt",
        train_csv="results/{ds}/models/{stage}/train_metrics.csv",
        val_csv="results/{ds}/models/{stage}/validation_metrics.csv",
        hparams="results/{ds}/models/{stage}/hparams.json",
    log:
        "logs/{ds}/train_{stage}.log",
    benchmark:
        "benchmarks/runs/{ds}/train_{stage}.tsv"
    # Before the short jobs that become ready with stage 1 (its evaluation, the box page):
    # stage 2 and its control start at once, side by side.
    priority: 1
    conda:
        "../envs/train.yaml"
    threads: train_threads
    resources:
        gpu=config["train"]["resources"]["gpu"],
        mem_mb=config["train"]["resources"]["mem_mb"],
        runtime=config["train"]["resources"]["runtime"],
    params:
        code=code_digest("train_stage"),
        cirr_root=root_of_input,
        model=canonical(config["model"]),
        # The stage's own block (the control's: train.stage2 with region mode none).
        train=train_run_params,
    script:
        "../workflow_scripts/train_stage.py"
