"""Adapter for rules evaluate and ablation_evaluate: val recalls (CIRR's or FashionIQ's
protocol; for evaluate, val's per-query rankings and CIRR's test1 server files) of a best.pt;
with region tokens, each split's own boxes."""

from cirflow.data.datasets import configured_root
from cirflow.data.regions import BoxFile
from cirflow.evaluate.run import ScoreFiles, SplitSources, SubmissionFiles, evaluate_stage
from cirflow.evaluate.settings import EvalSettings
from cirflow.logs import job_log

inp, out = snakemake.input, snakemake.output


def sources(split):
    boxes = inp.get(f"boxes_{split}")
    box_file = BoxFile(boxes, inp.get(f"boxes_{split}_meta")) if boxes else None
    return SplitSources(list(inp.get(f"features_{split}", [])), box_file)


with job_log(snakemake.log[0], snakemake.output):
    evaluate_stage(
        inp.checkpoint,
        configured_root(snakemake.config["dataset"]["name"], snakemake.params.cirr_root),
        EvalSettings.from_config(snakemake.params.evaluate, threads=snakemake.threads),
        ScoreFiles(out.metrics, out.details, out.get("rankings")),
        # The ablation's runs score val only; FashionIQ has no test server.
        SubmissionFiles(out.recall, out.subset, out.test1_details) if out.get("recall") else None,
        {split: sources(split) for split in ("val", "test1")},
    )
