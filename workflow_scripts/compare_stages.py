"""Adapter for rule compare_stages: metric | stage1 | stage2 | delta."""

from cirflow.evaluate.run import compare_stages
from cirflow.logs import job_log

with job_log(snakemake.log[0], snakemake.output):
    compare_stages(snakemake.input.stage1, snakemake.input.stage2, snakemake.output[0])
