# The ablation (`snakemake ablation`; not in rule all): stage 2 for every region mode x box
# source x seed (config `ablation:`), all from the same stage-1 best.pt, each evaluated on val
# (rules train and evaluate, reused), then the summary (mean +- sd over seeds, paired delta vs
# mode none). Mode none does not use boxes: one run per seed, shared by every box source. The gt
# source is a demo's ground truth as box files (rule gt_boxes; the CIRR demo's or the FashionIQ
# demo's).


rule gt_boxes:
    input:
        gt=f"results/{PRETRAIN_DATASET}/dataset/boxes_gt.json",
        data=[f for s in SPLITS for f in image_split_files(s)],
        # The sidecars hold each image's size, read from its header.
        images=split_manifests(SPLITS),
    output:
        boxes=expand(
            "results/{ds}/boxes/gt/{split}.json", ds=PRETRAIN_DATASET, split=SPLITS
        ),
        meta=expand(
            "results/{ds}/boxes/gt/{split}.meta.json",
            ds=PRETRAIN_DATASET,
            split=SPLITS,
        ),
    log:
        f"logs/{PRETRAIN_DATASET}/gt_boxes.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        code=code_digest("gt_boxes"),
        cirr_root=root_of_input,
    script:
        "../workflow_scripts/gt_boxes.py"


use rule train as ablation_train with:
    output:
        best="results/{ds}/ablation/runs/{run}/seed{seed}/best.pt",
        train_csv="results/{ds}/ablation/runs/{run}/seed{seed}/train_metrics.csv",
        val_csv="results/{ds}/ablation/runs/{run}/seed{seed}/validation_metrics.csv",
        hparams="results/{ds}/ablation/runs/{run}/seed{seed}/hparams.json",
    log:
        "logs/{ds}/ablation/{run}/seed{seed}/train.log",
    benchmark:
        "benchmarks/runs/{ds}/ablation/{run}/seed{seed}/train.tsv"
    threads: ablation_threads("train")


use rule evaluate as ablation_evaluate with:
    output:
        metrics="results/{ds}/ablation/runs/{run}/seed{seed}/val_metrics.json",
        details="results/{ds}/ablation/runs/{run}/seed{seed}/val_details.json",
    log:
        "logs/{ds}/ablation/{run}/seed{seed}/evaluate.log",
    benchmark:
        "benchmarks/runs/{ds}/ablation/{run}/seed{seed}/evaluate.tsv"
    threads: ablation_threads("evaluate")


rule ablation:
    input:
        # Functions: the runs are checked only when the ablation is planned.
        metrics=lambda wildcards: [e["metrics"] for e in ablation_entries()],
    output:
        csv=f"results/{DATASET}/ablation/summary.csv",
        md=f"results/{DATASET}/ablation/summary.md",
        png=f"results/{DATASET}/ablation/summary.png",
    log:
        f"logs/{DATASET}/ablation/summary.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        code=code_digest("ablation_summary"),
        entries=ablation_entries_param,
        ablation=canonical(ABLATION),
        stage2=canonical(config["train"]["stage2"]),
    script:
        "../workflow_scripts/ablation_summary.py"
