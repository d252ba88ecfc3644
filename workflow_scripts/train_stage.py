"""Adapter for rules train (one job per stage) and ablation_train: SPRC training of one run (the
stage block its params carry)."""

from pathlib import Path

from cirflow.data.datasets import layout_of
from cirflow.logs import job_log
from cirflow.train.config import RunFiles, settings_from_config
from cirflow.train.loop import train

inputs = snakemake.input
files = RunFiles(
    cirr_root=snakemake.params.cirr_root,
    out=str(Path(snakemake.output.best).parent),
    features={"train": list(inputs.features_train), "val": list(inputs.features_val)}
    if inputs.features_train
    else None,
    init_checkpoint=inputs.get("init") or None,
    box_file=inputs.get("boxes"),
    box_meta_file=inputs.get("boxes_meta"),
    val_box_file=inputs.get("boxes_val"),
    val_box_meta_file=inputs.get("boxes_val_meta"),
    # The layout of the dataset at cirr_root (its paths, and so {ds}, already tell it).
    dataset=layout_of(snakemake.config["dataset"]["name"]),
)
with job_log(snakemake.log[0], snakemake.output):
    # device, workers, cache: read from the config, not params (no retraining).
    train(
        settings_from_config(
            files,
            model_cfg=snakemake.params.model,
            train_params=snakemake.params.train,
            runtime_cfg=snakemake.config["train"],
            threads=snakemake.threads,
        )
    )
