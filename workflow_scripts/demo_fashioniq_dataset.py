"""Adapter for rule demo_fashioniq_dataset."""

from pathlib import Path

from cirflow.data.demo_fashioniq import FashionIQDemoSpec, generate_fashioniq_demo
from cirflow.logs import job_log

with job_log(snakemake.log[0], snakemake.output):
    spec = FashionIQDemoSpec(**snakemake.params.demo, workers=snakemake.threads)
    generate_fashioniq_demo(Path(snakemake.output.manifest).parent, spec)
