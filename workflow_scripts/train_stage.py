"""Adapter for rules train_stage1 and train_stage2: SPRC training of one stage."""

from pathlib import Path

from cirflow.logs import job_log
from cirflow.train.config import settings_from_config
from cirflow.train.loop import train

stage = snakemake.rule.removeprefix("train_")
inputs = snakemake.input
with job_log(snakemake.log[0], snakemake.output):
    train(
        settings_from_config(
            stage,
            cirr_root=snakemake.params.cirr_root,
            out=Path(snakemake.output.best).parent,
            model_cfg=snakemake.params.model,
            train_params=snakemake.params.train,
            # device, workers, cache: read from the config, not params (no retraining).
            runtime_cfg=snakemake.config["train"],
            box_file=inputs.get("boxes"),
            box_meta_file=inputs.get("boxes_meta"),
            init_checkpoint=inputs.get("init") or None,
            threads=snakemake.threads,
            features={"train": list(inputs.features_train), "val": list(inputs.features_val)}
            if inputs.features_train
            else None,
        )
    )
