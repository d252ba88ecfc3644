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
"""

from __future__ import annotations

import argparse
import logging

from cirflow.errors import CirflowError

log = logging.getLogger(__name__)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backbone",
        default="pretrain",
        choices=["pretrain", "pretrain_vitL", "tiny", "tiny_scratch"],
        help="model preset (tiny: the demo's pretrained toy model; tiny_scratch: random init)",
    )
    p.add_argument(
        "--blip-model-name",
        default="blip2_cir_align_prompt",
        help="only blip2_cir_align_prompt (SPRC) is implemented",
    )
    p.add_argument(
        "--freeze-vit",
        choices=["true", "false"],
        default=None,
        help="override the preset's ViT freezing",
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train SPRC (stage 1; with --use-region-loss: the region loss, stage 2)",
        description="Train SPRC on a CIRR-layout dataset. Accepts SPRC's flags.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", default="CIRR", help="only CIRR is supported")
    add_model_args(p)
    p.add_argument(
        "--cirr-root",
        required=True,
        help="dataset root holding cirr/captions, cirr/image_splits and the images",
    )
    p.add_argument(
        "--out", required=True, help="output folder (best.pt, last.pt, CSVs, hparams.json)"
    )
    p.add_argument(
        "--num-epochs",
        type=int,
        default=50,
        help="epochs (OneCycle spans these unless --schedule-epochs is given)",
    )
    p.add_argument("--batch-size", type=int, default=128, help="triplets per step")
    p.add_argument(
        "--learning-rate", type=float, default=1e-5, help="peak OneCycle learning rate (AdamW)"
    )
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument(
        "--warmup-epochs",
        type=float,
        default=1.5,
        help="OneCycle warm-up (pct_start = min(this / schedule epochs, 0.5))",
    )
    p.add_argument(
        "--schedule-epochs",
        type=int,
        default=None,
        help="epochs the OneCycle schedule spans (default: --num-epochs; SPRC's script: 80 "
        "while training 50)",
    )
    p.add_argument(
        "--div-factor",
        type=float,
        default=100.0,
        help="OneCycle start learning rate = learning rate / this (SPRC's script: 25)",
    )
    p.add_argument("--loss-align", type=float, default=0.4, help="weight of L_align")
    p.add_argument("--loss-rtc", type=float, default=0.4, help="weight of L_rtc")
    p.add_argument(
        "--use-region-loss", action="store_true", help="add the region loss (needs --box-file)"
    )
    p.add_argument(
        "--box-file",
        default=None,
        help="train boxes in the original scripts' format (normalised x1,y1,x2,y2)",
    )
    p.add_argument(
        "--loss-region", type=float, default=0.5, help="weight of L_region (aux and tokens)"
    )
    p.add_argument(
        "--region-mode",
        default=None,
        choices=["none", "aux", "tokens"],
        help="stage 2's region mode (default: aux with --use-region-loss, else none)",
    )
    p.add_argument(
        "--region-lr-multiplier",
        type=float,
        default=1.0,
        help="aux: region_proj's learning rate = --learning-rate x this",
    )
    p.add_argument(
        "--max-region-tokens",
        type=int,
        default=4,
        help="tokens: at most this many boxes per image (the largest)",
    )
    p.add_argument(
        "--val-box-file",
        default=None,
        help="tokens: the val boxes of the same method (the per-epoch validation uses them)",
    )
    p.add_argument(
        "--init-checkpoint",
        default=None,
        help="start from this checkpoint (stage 1's best.pt or an SPRC file)",
    )
    p.add_argument(
        "--grad-clip", type=float, default=None, help="clip the gradient norm (off by default)"
    )
    p.add_argument(
        "--batching",
        default="random",
        choices=["random", "img_set"],
        help="random (SPRC) or img_set (a set's triplets share a batch)",
    )
    p.add_argument(
        "--negatives",
        default="targets",
        choices=["targets", "batch_images"],
        help="targets (SPRC) or + the batch's reference images",
    )
    p.add_argument(
        "--no-false-negative-masking",
        action="store_true",
        help="SPRC's plain losses: a duplicate target or the query's reference image in the "
        "batch counts as a negative (needs --negatives targets)",
    )
    p.add_argument(
        "--validation-frequency", type=int, default=1, help="validate on CIRR val every N epochs"
    )
    p.add_argument(
        "--save-training",
        action="store_true",
        help="accepted for SPRC compatibility: checkpoints are always saved",
    )
    p.add_argument(
        "--save-best",
        action="store_true",
        help="accepted for SPRC compatibility: best.pt is always kept",
    )
    p.add_argument(
        "--transform",
        default="targetpad",
        choices=["targetpad"],
        help="SPRC's image transform (only targetpad)",
    )
    p.add_argument(
        "--target-ratio",
        type=float,
        default=1.25,
        choices=[1.25],
        help="TargetPad ratio (SPRC: 1.25)",
    )
    p.add_argument("--num-workers", type=int, default=4, help="DataLoader workers")
    p.add_argument("--image-cache", default="auto", choices=["auto", "memory", "none"])
    p.add_argument("--seed", type=int, default=0, help="seed of init, batch order, dropout")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--eval-batch-size", type=int, default=128, help="batch size of the validation")
    p.add_argument("--no-resume", action="store_true", help="do not continue from OUT/last.pt")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--max-unreadable-fraction",
        type=float,
        default=0.01,
        help="unreadable train/val images are left out; past this fraction of a split: an error",
    )
    p.add_argument(
        "--min-targets-with-boxes",
        type=float,
        default=0.1,
        help="with --use-region-loss: refuse a box file giving boxes to fewer of the targets",
    )
    p.set_defaults(func=run_train)


def check_sprc_flags(args) -> None:
    if args.dataset.lower() != "cirr":
        raise CirflowError(f"--dataset {args.dataset}: only CIRR is supported by cirflow")
    if args.blip_model_name != "blip2_cir_align_prompt":
        raise CirflowError(
            f"--blip-model-name {args.blip_model_name}: only blip2_cir_align_prompt (SPRC) is implemented"
        )


def run_train(args) -> int:
    from cirflow.train.config import TrainSettings
    from cirflow.train.loop import train

    check_sprc_flags(args)
    settings = TrainSettings(
        cirr_root=args.cirr_root,
        out=args.out,
        preset=args.backbone,
        freeze_vit=None if args.freeze_vit is None else args.freeze_vit == "true",
        num_epochs=args.num_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        schedule_epochs=args.schedule_epochs,
        div_factor=args.div_factor,
        loss_rtc=args.loss_rtc,
        loss_align=args.loss_align,
        loss_region=args.loss_region,
        use_region_loss=args.use_region_loss,
        region_mode=args.region_mode or ("aux" if args.use_region_loss else "none"),
        region_lr_multiplier=args.region_lr_multiplier,
        max_region_tokens=args.max_region_tokens,
        box_file=args.box_file,
        val_box_file=args.val_box_file,
        init_checkpoint=args.init_checkpoint,
        grad_clip=args.grad_clip,
        batching=args.batching,
        negatives=args.negatives,
        mask_false_negatives=not args.no_false_negative_masking,
        validation_frequency=args.validation_frequency,
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
        num_workers=args.num_workers,
        image_cache=args.image_cache,
        eval_batch_size=args.eval_batch_size,
        threads=args.threads,
        resume=not args.no_resume,
        max_unreadable_fraction=args.max_unreadable_fraction,
        min_targets_with_boxes=args.min_targets_with_boxes,
    )
    state = train(settings)
    print(
        f"best epoch {state.best_epoch} (arithmetic mean {state.best_score:.2f}); outputs in {args.out}"
    )
    return 0
