# Boxes: detect per shard -> merge into the seed format + sidecar -> statistics.


rule detect_shard:
    input:
        split_file=lambda w: split_file(w.split),
        code=package_sources("boxes", "data"),
    output:
        "results/{ds}/boxes/{method}/{split}/shard-{shard}-of-{n}.json",
    log:
        "logs/{ds}/boxes/{method}/{split}/shard-{shard}-of-{n}.log",
    benchmark:
        "benchmarks/runs/{ds}/boxes/{method}/{split}/shard-{shard}-of-{n}.tsv"
    threads: config["boxes"]["threads"]
    resources:
        gpu=detect_gpus,
    params:
        root=dataset_root(),
        detect=detect_params,
    script:
        "../workflow_scripts/detect_shard.py"


rule merge_boxes:
    input:
        shard_files,
    output:
        boxes="results/{ds}/boxes/{method}/{split}.json",
        meta="results/{ds}/boxes/{method}/{split}.meta.json",
    log:
        "logs/{ds}/boxes/{method}/{split}.merge.log",
    script:
        "../workflow_scripts/merge_boxes.py"


rule box_stats:
    input:
        boxes="results/{ds}/boxes/{method}/{split}.json",
        meta="results/{ds}/boxes/{method}/{split}.meta.json",
    output:
        "results/{ds}/boxes/{method}/{split}.stats.json",
    log:
        "logs/{ds}/boxes/{method}/{split}.stats.log",
    script:
        "../workflow_scripts/box_stats.py"
