"""Adapter for rule detect_shard."""

from cirflow.boxes.shards import run_shard
from cirflow.logs import job_log

with job_log(snakemake.log[0], snakemake.output):
    p = snakemake.params.detect
    run_shard(
        snakemake.params.root,
        split=snakemake.wildcards.split,
        method=snakemake.wildcards.method,
        method_config=p["method_config"],
        postfilter_config=p["postfilter"],
        shard=int(snakemake.wildcards.shard),
        num_shards=int(snakemake.wildcards.n),
        out_path=snakemake.output[0],
        max_images=p["max_images"],
        decode_workers=snakemake.threads,
    )
