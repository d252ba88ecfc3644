"""Adapter for rule image_manifest: the sizes and mtimes of one shard's images, written the first
time (after that, every parse of the workflow refreshes it: rules/common.smk)."""

from cirflow.data.datasets import configured_root
from cirflow.data.manifest import write_manifest
from cirflow.logs import job_log

with job_log(snakemake.log[0], snakemake.output):
    w = snakemake.wildcards
    root = configured_root(snakemake.config["dataset"]["name"], snakemake.params.root)
    write_manifest(snakemake.output[0], root, w.split, int(w.shard), int(w.n))
