"""Adapter for rule compare_stages: stage 1, the control, stage 2 and their differences."""

from cirflow.data.datasets import layout_of
from cirflow.data.result_files import metric_set
from cirflow.evaluate.comparison import compare_stages
from cirflow.logs import job_log

inp = snakemake.input
metrics = metric_set(layout_of(snakemake.config["dataset"]["name"]))
with job_log(snakemake.log[0], snakemake.output):
    compare_stages(
        inp.stage1, inp.stage2, snakemake.output[0], control_json=inp.control, keys=metrics.keys
    )
