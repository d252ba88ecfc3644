"""Adapter for rule stage_report: the stage 1 / control / stage 2 page."""

from cirflow.logs import job_log
from cirflow.report.stages import build_stage_report

with job_log(snakemake.log[0], snakemake.output):
    build_stage_report(
        snakemake.input.comparison,
        snakemake.input.stage1,
        snakemake.input.stage2,
        snakemake.output[0],
        control_json=snakemake.input.get("control"),
    )
