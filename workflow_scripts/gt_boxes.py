"""Adapter for rule gt_boxes: the demo's ground-truth boxes as per-split box files + sidecars."""

from pathlib import Path

from cirflow.data.gt_boxes import split_ground_truth
from cirflow.logs import job_log

with job_log(snakemake.log[0]):
    split_ground_truth(
        snakemake.params.cirr_root, snakemake.input.gt, Path(snakemake.output.boxes[0]).parent
    )
