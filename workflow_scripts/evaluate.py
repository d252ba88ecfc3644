"""Adapter for rule evaluate: CIRR val recall of a stage's best.pt."""

from cirflow.evaluate.run import evaluate_checkpoint
from cirflow.logs import job_log

sm = snakemake  # noqa: F821
cfg = sm.params.evaluate
with job_log(sm.log[0]):
    evaluate_checkpoint(
        sm.input.checkpoint,
        sm.params.cirr_root,
        sm.output.metrics,
        sm.output.details,
        split="val",
        device=cfg["device"],
        batch_size=cfg["batch_size"],
        num_workers=cfg["num_workers"],
        image_cache=cfg["image_cache"],
        threads=sm.threads,
    )
