"""Adapter for rule compare_stages: metric | stage1 | stage2 | delta."""

from cirflow.evaluate.run import compare_stages
from cirflow.logs import job_log

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    compare_stages(sm.input.stage1, sm.input.stage2, sm.output[0])
