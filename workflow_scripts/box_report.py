"""Adapter for rule box_report."""

from cirflow.logs import job_log
from cirflow.report.boxes_report import build_method_report

with job_log(snakemake.log[0]):  # noqa: F821
    inp = snakemake.input  # noqa: F821
    build_method_report(
        boxes=list(inp.boxes),
        metas=list(inp.meta),
        stats=list(inp.stats),
        split_files=list(inp.split_files),
        compare_stats=list(inp.compare),
        training_comparison=inp.training[0] if inp.training else None,
        out_html=snakemake.output.html,  # noqa: F821
        plots_dir=snakemake.output.plots,  # noqa: F821
        settings=snakemake.params.report,  # noqa: F821
        method=snakemake.wildcards.method,  # noqa: F821
    )
