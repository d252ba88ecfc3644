# Evaluation: one job per stage (stage1, stage2_control, stage2) scores CIRR val (recalls) and
# test1 (the test-server files) with the model built once; then the stage table. A stage with
# region tokens scores each split's gallery with that split's own boxes of its method. The
# ablation's runs reuse rule evaluate on val only (rules/ablation.smk).


rule evaluate:
    input:
        # The run's best.pt, the scored splits' files (val; test1 for a stage) and, with
        # region tokens, their boxes.
        unpack(evaluation_inputs),
        backbone=backbone_file(),
        features_val=feature_files("val"),
        edit_types=edit_type_inputs("val"),
    output:
        # val's metrics, details and per-query rankings; CIRR's test1 server files too.
        **evaluation_outputs("results/{ds}/eval/{stage}"),
    log:
        "logs/{ds}/evaluate_{stage}.log",
    benchmark:
        "benchmarks/runs/{ds}/evaluate_{stage}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["evaluate"]["resources"]["threads"]
    resources:
        gpu=config["evaluate"]["resources"]["gpu"],
        mem_mb=config["evaluate"]["resources"]["mem_mb"],
        runtime=config["evaluate"]["resources"]["runtime"],
    params:
        code=code_digest("evaluate"),
        cirr_root=root_of_input,
        evaluate=eval_params(),
    script:
        "../workflow_scripts/evaluate.py"


rule compare_stages:
    input:
        stage1="results/{ds}/eval/stage1/val_metrics.json",
        control="results/{ds}/eval/stage2_control/val_metrics.json",
        stage2="results/{ds}/eval/stage2/val_metrics.json",
    output:
        "results/{ds}/eval/comparison.csv",
    log:
        "logs/{ds}/compare_stages.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        code=code_digest("compare_stages"),
    script:
        "../workflow_scripts/compare_stages.py"
