"""Adapter for rule ablation: summary.csv, summary.md and summary.png of the ablation's runs."""

from cirflow.data.datasets import layout_of
from cirflow.data.result_files import metric_set
from cirflow.evaluate.ablation import write_summary
from cirflow.logs import job_log

stage2, ablation = snakemake.params.stage2, snakemake.params.ablation
with job_log(snakemake.log[0]):
    write_summary(
        snakemake.params.entries,
        snakemake.output.csv,
        snakemake.output.md,
        snakemake.output.png,
        context={
            "init": "results/{ds}/models/stage1/best.pt (the same for every run)",
            "stage-2 epochs": ablation["num_epochs"] or stage2["num_epochs"],
            "seeds": ", ".join(str(s) for s in ablation["seeds"]),
            "made by": "snakemake ablation (rules/ablation.smk)",
        },
        metrics=metric_set(layout_of(snakemake.config["dataset"]["name"])),
    )
