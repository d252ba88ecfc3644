"""Adapter for rules evaluate and ablation_evaluate: CIRR val recalls (and, for evaluate, the
test1 server files and val's per-query rankings) of a best.pt; with region tokens, each split's
own boxes."""

from cirflow.data.regions import BoxFile
from cirflow.evaluate.run import evaluate_stage
from cirflow.evaluate.settings import EvalSettings
from cirflow.logs import job_log

inp, out = snakemake.input, snakemake.output
with job_log(snakemake.log[0], snakemake.output):
    evaluate_stage(
        inp.checkpoint,
        snakemake.params.cirr_root,
        EvalSettings.from_config(snakemake.params.evaluate, threads=snakemake.threads),
        metrics_out=out.metrics,
        details_out=out.details,
        recall_out=out.get("recall"),
        subset_out=out.get("subset"),
        features={
            "val": list(inp.features_val),
            "test1": list(inp.get("features_test1", [])),
        },
        boxes={
            split: BoxFile(inp.get(f"boxes_{split}"), inp.get(f"boxes_{split}_meta"))
            for split in ("val", "test1")
            if inp.get(f"boxes_{split}")
        },
        test1_details_out=out.get("test1_details"),
        rankings_out=out.get("rankings"),
    )
