"""Adapter for rule detect_shard."""

from cirflow.boxes.shards import BoxMethod, ShardSpec, run_shard
from cirflow.data.datasets import configured_root
from cirflow.logs import job_log

with job_log(snakemake.log[0], snakemake.output):
    p = snakemake.params.detect
    run_shard(
        configured_root(snakemake.config["dataset"]["name"], snakemake.params.root),
        ShardSpec(
            split=snakemake.wildcards.split,
            shard=int(snakemake.wildcards.shard),
            num_shards=int(snakemake.wildcards.n),
            max_images=p["max_images"],
        ),
        BoxMethod(
            name=snakemake.wildcards.method,
            config=p["method_config"],
            postfilter=p["postfilter"],
        ),
        out_path=snakemake.output[0],
        decode_workers=snakemake.threads,
    )
