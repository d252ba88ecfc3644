"""Adapter for rule box_stats."""

from cirflow.boxes.quality import format_quality
from cirflow.boxes.stats import format_seed_summary, stats_for_file
from cirflow.io import write_json_atomic
from cirflow.logs import job_log

with job_log(snakemake.log[0], snakemake.output):
    gt = snakemake.input.get("gt") or None  # (demo only: boxes_gt.json)
    stats = stats_for_file(snakemake.input.boxes, snakemake.input.meta, gt)
    print(format_seed_summary(stats, title=snakemake.input.boxes))
    if "quality" in stats:
        print(format_quality(stats["quality"], title=f"quality against {gt}"))
    write_json_atomic(snakemake.output[0], stats, indent=2)
