"""Adapter for rule train_stage1: SPRC stage 1 (no boxes)."""

from pathlib import Path

from cirflow.logs import job_log
from cirflow.train.config import settings_from_config
from cirflow.train.loop import train

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    train(
        settings_from_config(
            "stage1",
            cirr_root=sm.params.cirr_root,
            out=Path(sm.output.best).parent,
            model_cfg=sm.params.model,
            train_params=sm.params.train,
            runtime_cfg=sm.config["train"],  # device, workers, cache: no retraining when changed
            threads=sm.threads,
        )
    )
