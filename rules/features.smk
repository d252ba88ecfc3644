# The model's first stage for a demo (pretrain_backbone: the demo's or the FashionIQ demo's) and the cached ViT tokens of every
# split (image_features): with a frozen ViT, training and evaluation read these instead of
# decoding pixels and running the ViT again.


rule pretrain_backbone:
    input:
        data=training_data(),
        descriptions=f"{dataset_root()}/descriptions.json",
        images=split_manifests(["train", "val"]),
    output:
        backbone=DEMO_FIRST_STAGE,
        metrics=DEMO_FIRST_STAGE.replace("backbone.pth", "pretrain_metrics.json"),
    log:
        f"logs/{PRETRAIN_DATASET}/pretrain_backbone.log",
    benchmark:
        f"benchmarks/runs/{PRETRAIN_DATASET}/pretrain_backbone.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["pretrain"]["threads"]
    resources:
        gpu=0 if config["pretrain"]["device"] == "cpu" else 1,
    params:
        code=code_digest("pretrain_backbone"),
        # What the first stage's weights depend on; threads and decoding workers are read
        # from the config at run time.
        pretrain=canonical(pretrain_params()),
    script:
        "../workflow_scripts/pretrain_backbone.py"


rule image_features:
    input:
        split_file=lambda w: split_file(w.split),
        images=shard_manifest,
        weights=backbone_file(),
    output:
        array="results/{ds}/features/{split}/shard-{shard}-of-{n}.npy",
        index="results/{ds}/features/{split}/shard-{shard}-of-{n}.index.json",
    log:
        "logs/{ds}/features/{split}/shard-{shard}-of-{n}.log",
    benchmark:
        "benchmarks/runs/{ds}/features/{split}/shard-{shard}-of-{n}.tsv"
    # Stage 1 waits for these, not for the box statistics and page that become ready with them.
    priority: 1
    conda:
        "../envs/train.yaml"
    threads: config["features"]["resources"]["threads"]
    resources:
        gpu=feature_gpus(),
        mem_mb=config["features"]["resources"]["mem_mb"],
        runtime=config["features"]["resources"]["runtime"],
    params:
        code=code_digest("image_features"),
        root=dataset_root(),
        # What the tokens depend on (a change reruns the stage); batch size, device and
        # workers are read from the config at run time.
        model=canonical(config["model"]),
    script:
        "../workflow_scripts/image_features.py"
