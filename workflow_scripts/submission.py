"""Adapter for rule submission: CIRR test-server files (test1) of a stage's best.pt."""

from cirflow.evaluate.run import write_submission
from cirflow.logs import job_log

sm = snakemake  # noqa: F821
cfg = sm.params.evaluate
with job_log(sm.log[0]):
    write_submission(
        sm.input.checkpoint,
        sm.params.cirr_root,
        sm.output.recall,
        sm.output.subset,
        device=cfg["device"],
        batch_size=cfg["batch_size"],
        num_workers=cfg["num_workers"],
        image_cache=cfg["image_cache"],
        threads=sm.threads,
    )
