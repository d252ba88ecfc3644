"""Adapter for rules train_stage1, train_stage2, train_stage2_control and ablation_train: SPRC
training of one run (the stage block its params carry)."""

from pathlib import Path

from cirflow.logs import job_log
from cirflow.train.config import settings_from_config
from cirflow.train.loop import train

inputs = snakemake.input
with job_log(snakemake.log[0], snakemake.output):
    train(
        settings_from_config(
            None,  # the params' own block: stage1, or stage2 (control and ablation included)
            cirr_root=snakemake.params.cirr_root,
            out=Path(snakemake.output.best).parent,
            model_cfg=snakemake.params.model,
            train_params=snakemake.params.train,
            # device, workers, cache: read from the config, not params (no retraining).
            runtime_cfg=snakemake.config["train"],
            box_file=inputs.get("boxes"),
            box_meta_file=inputs.get("boxes_meta"),
            val_box_file=inputs.get("boxes_val"),
            val_box_meta_file=inputs.get("boxes_val_meta"),
            init_checkpoint=inputs.get("init") or None,
            threads=snakemake.threads,
            features={"train": list(inputs.features_train), "val": list(inputs.features_val)}
            if inputs.features_train
            else None,
        )
    )
