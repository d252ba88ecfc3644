# Validation report: one self-contained HTML page per box method, plus its key plots, both
# shown by `snakemake --report report.html` (captions in rules/report/*.rst).
# The page of one method also compares the other configured methods (their stats only: stats
# never depend on a report, so there is no cycle). It never waits for training: the stage 1 vs
# stage 2 comparison has a page of its own (rule stage_report).


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
        compare=lambda w: expand(
            "results/{ds}/boxes/{method}/{split}.stats.json",
            ds=w.ds,
            method=[m for m in BOX_METHODS if m != w.method],
            split=BOX_SPLITS,
        ),
        code=code_of("box_report"),
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
        report=canonical(config["report"]),
    script:
        "../workflow_scripts/box_report.py"


rule stage_report:
    input:
        comparison="results/{ds}/eval/comparison.csv",
        stage1="results/{ds}/eval/stage1/val_metrics.json",
        stage2="results/{ds}/eval/stage2/val_metrics.json",
        control="results/{ds}/eval/stage2_control/val_metrics.json",
        code=code_of("stage_report"),
    output:
        report(
            "results/{ds}/report/stages.html",
            caption="report/stage_report.rst",
            category="Training",
            labels={"figure": "stage 1, control, stage 2"},
        ),
    log:
        "logs/{ds}/report/stages.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    script:
        "../workflow_scripts/stage_report.py"
