# Boxes: detect per shard -> merge into the original scripts' format + sidecar -> statistics.


# Seconds of work each: not worth a cluster job's queueing.
localrules:
    merge_boxes,
    box_stats,


rule detect_shard:
    input:
        split_file=lambda w: split_file(w.split),
        # The shard's images (sizes and mtimes): a changed image reruns its shard only.
        images=shard_manifest,
        weights=detector_weights,
    output:
        "results/{ds}/boxes/{method}/{split}/shard-{shard}-of-{n}.json",
    log:
        "logs/{ds}/boxes/{method}/{split}/shard-{shard}-of-{n}.log",
    benchmark:
        "benchmarks/runs/{ds}/boxes/{method}/{split}/shard-{shard}-of-{n}.tsv"
    conda:
        "../envs/detect.yaml"
    threads: config["boxes"]["threads"]
    resources:
        gpu=detect_gpus,
    params:
        code=code_digest("detect_shard"),
        root=dataset_root(),
        detect=detect_params,
    script:
        "../workflow_scripts/detect_shard.py"


rule merge_boxes:
    input:
        shards=shard_files,
    output:
        boxes="results/{ds}/boxes/{method}/{split}.json",
        meta="results/{ds}/boxes/{method}/{split}.meta.json",
    log:
        "logs/{ds}/boxes/{method}/{split}.merge.log",
    conda:
        "../envs/detect.yaml"
    params:
        code=code_digest("merge_boxes"),
        max_unreadable_fraction=config["boxes"]["max_unreadable_fraction"],
    script:
        "../workflow_scripts/merge_boxes.py"


rule box_stats:
    input:
        boxes="results/{ds}/boxes/{method}/{split}.json",
        meta="results/{ds}/boxes/{method}/{split}.meta.json",
        # Ground-truth boxes (the demo's boxes_gt.json; none for CIRR) -> stats "quality".
        gt=lambda w: gt_boxes_file() or [],
    output:
        "results/{ds}/boxes/{method}/{split}.stats.json",
    log:
        "logs/{ds}/boxes/{method}/{split}.stats.log",
    conda:
        "../envs/detect.yaml"
    params:
        code=code_digest("box_stats"),
    script:
        "../workflow_scripts/box_stats.py"
