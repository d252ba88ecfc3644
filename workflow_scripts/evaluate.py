"""Adapter for rule evaluate: CIRR val recalls and test1 server files of a stage's best.pt."""

from cirflow.evaluate.run import evaluate_stage
from cirflow.evaluate.settings import EvalSettings
from cirflow.logs import job_log

out = snakemake.output
with job_log(snakemake.log[0], snakemake.output):
    evaluate_stage(
        snakemake.input.checkpoint,
        snakemake.params.cirr_root,
        EvalSettings.from_config(snakemake.params.evaluate, threads=snakemake.threads),
        metrics_out=out.metrics,
        details_out=out.details,
        recall_out=out.recall,
        subset_out=out.subset,
        features={
            "val": list(snakemake.input.features_val),
            "test1": list(snakemake.input.features_test1),
        },
        test1_details_out=out.test1_details,
    )
