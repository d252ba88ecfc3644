"""Adapter for rule train_detector."""

from cirflow.boxes.detector_training import train_detector
from cirflow.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    train_detector(
        snakemake.params.root,  # noqa: F821
        snakemake.input.gt,  # noqa: F821
        snakemake.params.out,  # noqa: F821
        weights_out=snakemake.output.weights,  # noqa: F821
        summary_out=snakemake.output.summary,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
        **snakemake.params.detector,  # noqa: F821
    )
