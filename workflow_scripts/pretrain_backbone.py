"""Adapter for rule pretrain_backbone: the demo's first stage of the tiny preset."""

from pathlib import Path

from cirflow.logs import job_log
from cirflow.train.pretrain import PretrainSettings, pretrain_backbone

with job_log(snakemake.log[0], snakemake.output):
    pretrain_backbone(
        Path(snakemake.input.descriptions).parent,  # (the demo dataset root)
        snakemake.output.backbone,
        snakemake.output.metrics,
        PretrainSettings(**snakemake.params.pretrain, threads=snakemake.threads),
    )
