"""Adapter for rule pretrain_backbone: a demo's first stage of the tiny preset."""

from pathlib import Path

from cirflow.data.datasets import configured_root
from cirflow.logs import job_log
from cirflow.train.pretrain import PretrainSettings, pretrain_backbone

with job_log(snakemake.log[0], snakemake.output):
    pretrain_backbone(
        # The demo dataset root, beside its descriptions.
        configured_root(
            snakemake.config["dataset"]["name"], Path(snakemake.input.descriptions).parent
        ),
        snakemake.output.backbone,
        snakemake.output.metrics,
        PretrainSettings(
            **snakemake.params.pretrain,
            num_workers=snakemake.config["pretrain"]["num_workers"],
            threads=snakemake.threads,
        ),
    )
