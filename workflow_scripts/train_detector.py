"""Adapter for rule train_detector."""

from pathlib import Path

from cirflow.boxes.detector_training import train_detector
from cirflow.logs import job_log

with job_log(snakemake.log[0], snakemake.output):
    train_detector(
        Path(snakemake.input.gt).parent,  # (the demo dataset root)
        snakemake.input.gt,
        Path(snakemake.output.weights).parent,  # (results/demo/detector)
        weights_out=snakemake.output.weights,
        summary_out=snakemake.output.summary,
        threads=snakemake.threads,
        **snakemake.params.detector,
    )
