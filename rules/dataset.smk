# The embedded demo dataset (CIRR layout, plus scene descriptions and edit-type sidecars).
# For dataset.name: cirr the files already exist.


rule demo_dataset:
    output:
        manifest="results/demo/dataset/demo_manifest.json",
        gt_boxes="results/demo/dataset/boxes_gt.json",
        descriptions="results/demo/dataset/descriptions.json",
        splits=expand(
            "results/demo/dataset/cirr/image_splits/split.rc2.{split}.json",
            split=SPLITS,
        ),
        captions=expand(
            "results/demo/dataset/cirr/captions/cap.rc2.{split}.json", split=SPLITS
        ),
        edit_types=expand(
            "results/demo/dataset/cirr/captions/edits.rc2.{split}.json", split=SPLITS
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
