# The two pages, both self-contained and shown by `snakemake --report report.html` (captions in
# rules/report/*.rst): the box validation page per box method (with its key plots), and the
# results page (training and evaluation). Each waits only for what it shows: the box page
# never for training, the results page never for the ablation.
# The page of one method also compares the other configured methods (their stats only: stats
# never depend on a report, so there is no cycle).


rule box_report:
    input:
        boxes=lambda w: expand(
            "results/{ds}/boxes/{method}/{split}.json",
            ds=w.ds,
            method=w.method,
            split=BOX_SPLITS,
        ),
        meta=lambda w: expand(
            "results/{ds}/boxes/{method}/{split}.meta.json",
            ds=w.ds,
            method=w.method,
            split=BOX_SPLITS,
        ),
        stats=lambda w: expand(
            "results/{ds}/boxes/{method}/{split}.stats.json",
            ds=w.ds,
            method=w.method,
            split=BOX_SPLITS,
        ),
        split_files=[split_file(s) for s in BOX_SPLITS],
        # The sample grids decode images of every split.
        images=split_manifests(BOX_SPLITS),
        compare=lambda w: expand(
            "results/{ds}/boxes/{method}/{split}.stats.json",
            ds=w.ds,
            method=[m for m in BOX_METHODS if m != w.method],
            split=BOX_SPLITS,
        ),
    output:
        html=report(
            "results/{ds}/report/boxes_{method}.html",
            caption="report/box_report.rst",
            category="Box validation",
            subcategory="{method}",
            labels={"method": "{method}", "figure": "validation page"},
        ),
        plots=report(
            directory("results/{ds}/report/boxes_{method}_plots"),
            patterns=["{name}.png"],
            caption="report/box_plots.rst",
            category="Box validation",
            subcategory="{method}",
            labels={"method": "{method}", "figure": "{name}"},
        ),
    log:
        "logs/{ds}/report/boxes_{method}.log",
    benchmark:
        "benchmarks/runs/{ds}/report/boxes_{method}.tsv"
    conda:
        "../envs/report.yaml"
    params:
        code=code_digest("box_report"),
        # report: without report.results (the results page's keys).
        report=box_report_params(),
    script:
        "../workflow_scripts/box_report.py"


# Curves, the stage comparison (+ the ablation's table when it has run), per edit type,
# retrievals of stage 1 beside stage 2, run facts. The ablation's summary.csv is not an input
# but a param (its digest, when the file exists: common.smk ablation_summary): the page reruns
# when it appears or changes, and rule all never runs the ablation for it.
rule results_report:
    input:
        # With region tokens: stage 2's val boxes (the targets' boxes are drawn).
        unpack(results_page_boxes),
        comparison="results/{ds}/eval/comparison.csv",
        metrics=stage_files("results/{ds}/eval/{stage}/val_metrics.json"),
        details=stage_files("results/{ds}/eval/{stage}/val_details.json"),
        rankings=stage_files(
            "results/{ds}/eval/{stage}/val_rankings.json", ["stage1", "stage2"]
        ),
        train_csv=stage_files("results/{ds}/models/{stage}/train_metrics.csv"),
        val_csv=stage_files("results/{ds}/models/{stage}/validation_metrics.csv"),
        hparams=stage_files("results/{ds}/models/{stage}/hparams.json"),
        # Wall time per stage: the training and evaluation jobs' benchmark files.
        train_time=stage_files("benchmarks/runs/{ds}/train_{stage}.tsv"),
        eval_time=stage_files("benchmarks/runs/{ds}/evaluate_{stage}.tsv"),
        split_file=split_file("val"),
        # The retrievals' thumbnails are val images.
        images=split_manifests(["val"]),
    output:
        report(
            "results/{ds}/report/results.html",
            caption="report/results_report.rst",
            category="Training",
            labels={"figure": "results page"},
        ),
    log:
        "logs/{ds}/report/results.log",
    benchmark:
        "benchmarks/runs/{ds}/report/results.tsv"
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        code=code_digest("results_report"),
        report=canonical(config["report"]["results"]),
        config=results_page_config(),
        region_mode=STAGE2_MODE,
        ablation=ablation_summary(),
    script:
        "../workflow_scripts/results_report.py"
