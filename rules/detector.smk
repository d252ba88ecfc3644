# The demo's own YOLO detector (off by default): trained on the demo's train-split ground-truth
# boxes so that methods yolo and hybrid run on real weights without internet. It runs only when
# boxes.yolo.weights is TRAINED_DETECTOR (config/presets/yolo_demo.yaml sets it); detect_shard
# then takes the weights as an input (input function detector_weights), so retraining reruns
# detection. Include this file before rules/boxes.smk.


rule train_detector:
    input:
        gt="results/demo/dataset/boxes_gt.json",
        splits=expand(
            "results/demo/dataset/cirr/image_splits/split.rc2.{split}.json",
            split=["train", "val"],
        ),
        images=split_manifests(["train", "val"]),
    output:
        weights=TRAINED_DETECTOR,
        summary="results/demo/detector/train_summary.json",
    log:
        "logs/demo/detector/train_detector.log",
    benchmark:
        "benchmarks/runs/demo/detector/train_detector.tsv"
    conda:
        "../envs/detect.yaml"
    threads: config["boxes"]["detector"]["threads"]
    resources:
        gpu=0 if config["boxes"]["detector"]["device"] == "cpu" else 1,
    params:
        code=code_digest("train_detector"),
        detector=canonical(
            {k: v for k, v in config["boxes"]["detector"].items() if k != "threads"}
        ),
    script:
        "../workflow_scripts/train_detector.py"
