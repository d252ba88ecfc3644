"""Adapter for rule merge_boxes."""

from cirflow.boxes.shards import merge_shards
from cirflow.logs import job_log

with job_log(snakemake.log[0], snakemake.output):
    merge_shards(
        list(snakemake.input.shards),
        snakemake.output.boxes,
        snakemake.output.meta,
        max_unreadable_fraction=snakemake.params.max_unreadable_fraction,
    )
