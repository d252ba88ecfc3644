"""Adapter for rule box_report."""

from cirflow.logs import job_log
from cirflow.report.boxes_report import build_method_report

with job_log(snakemake.log[0], snakemake.output):
    inp = snakemake.input
    build_method_report(
        boxes=list(inp.boxes),
        metas=list(inp.meta),
        stats=list(inp.stats),
        split_files=list(inp.split_files),
        compare_stats=list(inp.compare),
        out_html=snakemake.output.html,
        plots_dir=snakemake.output.plots,
        settings=snakemake.params.report,
        method=snakemake.wildcards.method,
    )
