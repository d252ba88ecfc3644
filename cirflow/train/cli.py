"""`cirflow train`: SPRC's command line (the original scripts' flags) on top of `cirflow.train.loop`.

    cirflow train --dataset CIRR --blip-model-name blip2_cir_align_prompt --backbone pretrain \\
        --num-epochs 50 --batch-size 128 --learning-rate 1e-5 --loss-align 0.4 --loss-rtc 0.4 \\
        --validation-frequency 1 --save-training --save-best --cirr-root CIRR --out runs/stage1

    # SPRC's exact schedule (OneCycle over 80 epochs while training 50, div_factor 25):
    cirflow train ... --num-epochs 50 --schedule-epochs 80 --warmup-epochs 1.6 --div-factor 25

    # stage 2 / the original scripts' region variant (region mode aux):
    cirflow train ... --use-region-loss --box-file boxes/train.json --loss-region 0.5 \\
        [--init-checkpoint runs/stage1/best.pt]

    # stage 2 with region tokens (docs/design.md §6); the control is --region-mode none:
    cirflow train ... --region-mode tokens --box-file boxes/train.json \\
        --val-box-file boxes/val.json --init-checkpoint runs/stage1/best.pt

Every training flag comes from the declaration of its setting (`cirflow.train.config`); the
flags below are SPRC's that cirflow accepts and checks but that choose nothing.
"""

from __future__ import annotations

import argparse
import logging

from cirflow.errors import CirflowError

log = logging.getLogger(__name__)


def add_sprc_flags(p: argparse.ArgumentParser) -> None:
    """SPRC's flags with one possible value here (accepted so that its commands run as
    they are)."""
    p.add_argument("--dataset", default="CIRR", help="only CIRR is supported")
    p.add_argument(
        "--blip-model-name",
        default="blip2_cir_align_prompt",
        help="only blip2_cir_align_prompt (SPRC) is implemented",
    )
    for flag, what in (("--save-training", "checkpoints are"), ("--save-best", "best.pt is")):
        p.add_argument(
            flag, action="store_true", help=f"accepted for SPRC compatibility: {what} always kept"
        )
    p.add_argument("--transform", default="targetpad", choices=["targetpad"])
    p.add_argument("--target-ratio", type=float, default=1.25, choices=[1.25])


def register(subparsers) -> None:
    from cirflow.settings import add_flags
    from cirflow.train.config import TrainSettings

    p = subparsers.add_parser(
        "train",
        help="train SPRC (stage 1; with --use-region-loss: the region loss, stage 2)",
        description="Train SPRC on a CIRR-layout dataset. Accepts SPRC's flags.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--cirr-root",
        required=True,
        help="dataset root holding cirr/captions, cirr/image_splits and the images",
    )
    p.add_argument(
        "--out", required=True, help="output folder (best.pt, last.pt, CSVs, hparams.json)"
    )
    add_flags(p, TrainSettings)
    p.add_argument(
        "--use-region-loss",
        action="store_true",
        help="add the region loss (region mode aux unless --region-mode says; needs --box-file)",
    )
    add_sprc_flags(p)
    p.set_defaults(func=run_train)


def check_sprc_flags(args) -> None:
    if args.dataset.lower() != "cirr":
        raise CirflowError(f"--dataset {args.dataset}: only CIRR is supported by cirflow")
    if args.blip_model_name != "blip2_cir_align_prompt":
        raise CirflowError(
            f"--blip-model-name {args.blip_model_name}: only blip2_cir_align_prompt (SPRC) is implemented"
        )


def settings_from_args(args):
    from cirflow.settings import from_flags
    from cirflow.train.config import TrainSettings

    values = from_flags(args, TrainSettings)
    if values["region_mode"] is None:  # the original scripts' switch
        values["region_mode"] = "aux" if args.use_region_loss else "none"
    return TrainSettings(cirr_root=args.cirr_root, out=args.out, **values)


def run_train(args) -> int:
    from cirflow.train.loop import train

    check_sprc_flags(args)
    state = train(settings_from_args(args))
    print(
        f"best epoch {state.best_epoch} (arithmetic mean {state.best_score:.2f}); outputs in {args.out}"
    )
    return 0
