#!/usr/bin/env bash
# Run by Snakemake inside the new envs/train.yaml environment: LAVIS without its stale pins
# (see the comment in train.yaml).
set -euo pipefail
python -m pip install --no-deps salesforce-lavis==1.0.2
