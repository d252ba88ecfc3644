"""Adapter for rule train_detector."""

from pathlib import Path

from cirflow.boxes.detector_training import train_detector
from cirflow.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    train_detector(
        Path(snakemake.input.gt).parent,  # noqa: F821  (the demo dataset root)
        snakemake.input.gt,  # noqa: F821
        Path(snakemake.output.weights).parent,  # noqa: F821  (results/demo/detector)
        weights_out=snakemake.output.weights,  # noqa: F821
        summary_out=snakemake.output.summary,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
        **snakemake.params.detector,  # noqa: F821
    )
