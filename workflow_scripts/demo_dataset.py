"""Adapter for rule demo_dataset."""

from pathlib import Path

from cirflow.data.demo import DemoSpec, generate_demo
from cirflow.logs import job_log

with job_log(snakemake.log[0], snakemake.output):
    demo = snakemake.params.demo
    spec = DemoSpec(
        seed=demo["seed"],
        train_triplets=demo["train_triplets"],
        val_triplets=demo["val_triplets"],
        test1_triplets=demo["test1_triplets"],
    )
    generate_demo(Path(snakemake.output.manifest).parent, spec, workers=snakemake.threads)
