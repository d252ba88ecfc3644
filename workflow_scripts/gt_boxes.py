"""Adapter for rule gt_boxes: a demo's ground-truth boxes as per-split box files + sidecars."""

from pathlib import Path

from cirflow.data.datasets import configured_root
from cirflow.data.gt_boxes import split_ground_truth
from cirflow.logs import job_log

with job_log(snakemake.log[0]):
    split_ground_truth(
        configured_root(snakemake.config["dataset"]["name"], snakemake.params.cirr_root),
        snakemake.input.gt,
        Path(snakemake.output.boxes[0]).parent,
    )
