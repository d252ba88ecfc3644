"""Adapter for rule merge_boxes."""

from cirflow.boxes.shards import merge_shards
from cirflow.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    merge_shards(list(snakemake.input), snakemake.output.boxes, snakemake.output.meta)  # noqa: F821
