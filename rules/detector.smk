# The demo's own YOLO detector (off by default): trained on the demo's train-split ground-truth
# boxes so that methods yolo and hybrid run on real weights without internet. It runs only when
# boxes.yolo.weights is TRAINED_DETECTOR (config/presets/yolo_demo.yaml sets it); detect_shard
# then takes the weights as an input (input function detector_weights), so retraining reruns
# detection. Include this file before rules/boxes.smk.

TRAINED_DETECTOR = "results/demo/detector/detector.pt"


def uses_trained_detector():
    weights = config["boxes"].get("yolo", {}).get("weights", "")
    return os.path.normpath(str(weights)) == TRAINED_DETECTOR


if uses_trained_detector() and DATASET != "demo":
    raise ValueError(
        f"boxes.yolo.weights is {TRAINED_DETECTOR}, the demo's trained detector, but "
        f"dataset.name is {DATASET!r}: it needs the demo's ground-truth boxes. Give real YOLO "
        "weights (e.g. yolov8n.pt, see `cirflow weights fetch`) for CIRR."
    )


def detector_weights(wildcards):
    """Input of detect_shard: the trained detector for yolo/hybrid when the config uses it."""
    if uses_gpu(wildcards.method) and uses_trained_detector():
        return [TRAINED_DETECTOR]
    return []


rule train_detector:
    input:
        gt="results/demo/dataset/boxes_gt.json",
        splits=expand(
            "results/demo/dataset/cirr/image_splits/split.rc2.{split}.json",
            split=["train", "val"],
        ),
        code="cirflow/boxes/detector_training.py",
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
        detector={
            k: v for k, v in config["boxes"]["detector"].items() if k != "threads"
        },
    script:
        "../workflow_scripts/train_detector.py"
