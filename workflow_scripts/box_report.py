"""Adapter for rule box_report."""

from cirflow.logs import job_log
from cirflow.report.boxes import MethodFiles, build_method_report

with job_log(snakemake.log[0], snakemake.output):
    inp = snakemake.input
    files = MethodFiles(
        boxes=list(inp.boxes),
        metas=list(inp.meta),
        stats=list(inp.stats),
        split_files=list(inp.split_files),
        compare_stats=list(inp.compare),
    )
    build_method_report(
        files,
        snakemake.output.html,
        plots_dir=snakemake.output.plots,
        settings=snakemake.params.report,
        method=snakemake.wildcards.method,
    )
