# The embedded demo dataset (CIRR layout, plus scene descriptions and edit-type sidecars; for
# dataset.name: cirr the files already exist), and the image manifests: every job that decodes
# images takes its images' manifest as an input (docs/architecture.md, "The workflow").


rule demo_dataset:
    output:
        manifest="results/demo/dataset/demo_manifest.json",
        gt_boxes="results/demo/dataset/boxes_gt.json",
        descriptions="results/demo/dataset/descriptions.json",
        splits=expand(
            "results/demo/dataset/cirr/image_splits/split.rc2.{split}.json",
            split=CIRR_SPLITS,
        ),
        captions=expand(
            "results/demo/dataset/cirr/captions/cap.rc2.{split}.json",
            split=CIRR_SPLITS,
        ),
        edit_types=expand(
            "results/demo/dataset/cirr/captions/edits.rc2.{split}.json",
            split=CIRR_SPLITS,
        ),
        # Each triplet's edited-object boxes (the ablation's box source edited).
        edited_boxes=expand(
            "results/demo/dataset/cirr/captions/boxes_edited.rc2.{split}.json",
            split=EDITED_SPLITS,
        ),
    log:
        "logs/demo/demo_dataset.log",
    benchmark:
        "benchmarks/runs/demo/demo_dataset.tsv"
    conda:
        "../envs/detect.yaml"
    threads: 2
    params:
        code=code_digest("demo_dataset"),
        demo=canonical(config["demo"]),
    script:
        "../workflow_scripts/demo_dataset.py"


# Each parse writes the missing manifests and rewrites those whose images changed (common.smk);
# this rule makes the ones it could not: the demo's split files appear during the run. Shard i
# of n lists the images detection and the features give shard i of n; 0 of 1 is the split.
rule image_manifest:
    input:
        split_file=lambda w: split_file(w.split),
    output:
        "results/{ds}/manifests/{split}/shard-{shard}-of-{n}.json",
    log:
        "logs/{ds}/manifests/{split}/shard-{shard}-of-{n}.log",
    localrule: True
    conda:
        "../envs/detect.yaml"
    params:
        code=code_digest("image_manifest"),
        root=dataset_root(),
    script:
        "../workflow_scripts/image_manifest.py"


# The FashionIQ-layout demo (dataset.name: demo_fashioniq): FashionIQ's files, plus part boxes,
# descriptions (its first stage's texts) and edit sidecars.
rule demo_fashioniq_dataset:
    output:
        manifest="results/demo_fashioniq/dataset/demo_manifest.json",
        gt_boxes="results/demo_fashioniq/dataset/boxes_gt.json",
        descriptions="results/demo_fashioniq/dataset/descriptions.json",
        splits=expand(
            "results/demo_fashioniq/dataset/image_splits/split.{category}.{split}.json",
            category=FASHIONIQ_CATEGORIES,
            split=FASHIONIQ_SPLITS,
        ),
        captions=expand(
            "results/demo_fashioniq/dataset/captions/cap.{category}.{split}.json",
            category=FASHIONIQ_CATEGORIES,
            split=FASHIONIQ_SPLITS,
        ),
        edit_types=expand(
            "results/demo_fashioniq/dataset/captions/edits.{category}.{split}.json",
            category=FASHIONIQ_CATEGORIES,
            split=FASHIONIQ_SPLITS,
        ),
    log:
        "logs/demo_fashioniq/demo_fashioniq_dataset.log",
    benchmark:
        "benchmarks/runs/demo_fashioniq/demo_fashioniq_dataset.tsv"
    conda:
        "../envs/detect.yaml"
    threads: 2
    params:
        code=code_digest("demo_fashioniq_dataset"),
        demo=canonical(config["demo_fashioniq"]),
    script:
        "../workflow_scripts/demo_fashioniq_dataset.py"
