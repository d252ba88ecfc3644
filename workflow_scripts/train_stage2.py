"""Adapter for rule train_stage2: SPRC + region loss, from stage 1's best.pt (or BLIP-2)."""

from pathlib import Path

from cirflow.logs import job_log
from cirflow.train.config import settings_from_config
from cirflow.train.loop import train

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    train(
        settings_from_config(
            "stage2",
            cirr_root=sm.params.cirr_root,
            out=Path(sm.output.best).parent,
            model_cfg=sm.params.model,
            train_params=sm.params.train,
            runtime_cfg=sm.config["train"],  # device, workers, cache: no retraining when changed
            box_file=sm.input.boxes,
            init_checkpoint=sm.input.init or None,
            threads=sm.threads,
        )
    )
