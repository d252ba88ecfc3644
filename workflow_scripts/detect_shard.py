"""Adapter for rule detect_shard."""

from cirflow.boxes.shards import run_shard
from cirflow.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    p = snakemake.params.detect  # noqa: F821
    run_shard(
        snakemake.params.root,  # noqa: F821
        split=snakemake.wildcards.split,  # noqa: F821
        method=snakemake.wildcards.method,  # noqa: F821
        method_config=p["method_config"],
        postfilter_config=p["postfilter"],
        shard=int(snakemake.wildcards.shard),  # noqa: F821
        num_shards=int(snakemake.wildcards.n),  # noqa: F821
        out_path=snakemake.output[0],  # noqa: F821
        max_images=p["max_images"],
        decode_workers=snakemake.threads,  # noqa: F821
    )
