"""Adapter for rule results_report: the results page."""

from cirflow.logs import job_log
from cirflow.report.results.inputs import STAGES, StageFiles
from cirflow.report.results.page import ResultsInputs, build_results_report

PER_STAGE = ("train_csv", "val_csv", "hparams", "metrics", "details", "train_time", "eval_time")

inp, params = snakemake.input, snakemake.params
with job_log(snakemake.log[0], snakemake.output):
    # The rule lists each per-stage input in STAGES order, rankings for stage 1 and stage 2.
    stage_files = {
        stage: {key: getattr(inp, key)[i] for key in PER_STAGE} for i, stage in enumerate(STAGES)
    }
    for stage, path in zip(("stage1", "stage2"), inp.rankings, strict=True):
        stage_files[stage]["rankings"] = path
    inputs = ResultsInputs(
        stage_files={stage: StageFiles(**files) for stage, files in stage_files.items()},
        comparison=inp.comparison,
        # val's image split file (FashionIQ has one per category: the first locates the root).
        split_file=inp.split_file if isinstance(inp.split_file, str) else inp.split_file[0],
        boxes=inp.get("boxes_val"),
        ablation=(params.ablation or {}).get("path"),
    )
    build_results_report(
        inputs,
        snakemake.output[0],
        settings=params.report,
        config=params.config,
        region_mode=params.region_mode,
    )
