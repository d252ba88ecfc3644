"""Adapter for rule image_features: cached ViT tokens of one shard of a split."""

from cirflow.data.datasets import configured_root
from cirflow.logs import job_log
from cirflow.model.features import FeatureSettings, FeatureShard, extract_shard
from cirflow.model.presets import get_preset

model = snakemake.params.model
features = snakemake.config["features"]  # run-time settings (no rerun when changed)
with job_log(snakemake.log[0], snakemake.output):
    extract_shard(
        get_preset(
            model["preset"],
            freeze_vit=model.get("freeze_vit"),
            vit_precision=model.get("vit_precision"),
            weights=model.get("weights"),
        ),
        configured_root(snakemake.config["dataset"]["name"], snakemake.params.root),
        FeatureShard(
            split=snakemake.wildcards.split,
            shard=int(snakemake.wildcards.shard),
            num_shards=int(snakemake.wildcards.n),
        ),
        out=snakemake.output.array,
        settings=FeatureSettings(
            batch_size=features["batch_size"],
            device=features["device"],
            num_workers=features["num_workers"],
            max_unreadable_fraction=features["max_unreadable_fraction"],
        ),
    )
