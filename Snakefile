# cirflow: boxes -> validation -> SPRC stage 1 -> stage 2 (+ its control) -> evaluation on CIRR;
# `snakemake ablation` adds the region ablation (rules/ablation.smk).
# This file only wires things together; see rules/*.smk and docs/architecture.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/dataset.smk"
include: "rules/detector.smk"
include: "rules/boxes.smk"
include: "rules/report.smk"
include: "rules/features.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/ablation.smk"


rule all:
    default_target: True
    input:
        all_targets(),
