"""Adapter for rule box_stats."""

from cirflow.boxes.stats import format_seed_summary, stats_for_file
from cirflow.io import write_json_atomic
from cirflow.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    stats = stats_for_file(snakemake.input.boxes, snakemake.input.meta)  # noqa: F821
    print(format_seed_summary(stats, title=snakemake.input.boxes))  # noqa: F821
    write_json_atomic(snakemake.output[0], stats, indent=2)  # noqa: F821
