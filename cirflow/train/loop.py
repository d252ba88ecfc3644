"""The training loop (stage 1: SPRC's losses; stage 2: its region mode), with validation,
checkpoints and automatic resume.

Stage 2's region modes (docs/design.md §6; `TrainSettings.region_mode`):

    none    the stage-1 loss (the control)
    aux     + loss_region · L_region (ROI Align + region_proj on the targets' boxes);
            region_proj in its own parameter group at learning_rate × region_lr_multiplier
    tokens  L_itc, L_rtc over K ∪ R (region tokens of the targets' boxes, and of the
            references' with batch_images negatives) + loss_region · L_region over R; the
            per-epoch validation scores val with the val images' own boxes

Every mode starts from the same RNG stream after the model is built (region_proj is drawn from
a fork), and the batch order depends on (seed, epoch) only: stage 2 and its control see the
same batches.

Per epoch: train on every full batch (SPRC drops the last partial batch), validate on val
every `validation_frequency` epochs and at the last one (CIRR's protocol, best = arithmetic
mean of the 7 recalls; FashionIQ's, best = average_recall: the evaluator's
`selection_metric`), then write `best.pt` / `last.pt`
(`cirflow.model.checkpoints`), the two CSV files and their TensorBoard events
(`cirflow.train.history`) and, at the start,
`hparams.json` (the settings, the preset and derived numbers), all atomically.

Resume: when ``last.pt`` exists, comes from an unfinished run and was made with the same
settings (same fingerprint, `cirflow.train.config.fingerprint`: hyper-parameters, preset,
dataset, init checkpoint and box file), training continues after its epoch, with its optimizer,
scheduler and RNG state, so the result is the same as an uninterrupted run. Otherwise training
starts afresh (the reason is logged). A run first removes the temporary files that killed writes
of its own outputs left behind (`cirflow.io.remove_stale_temps`).

Unreadable images: the train and val tables find them before epoch 1 (`ImageTable`); the
triplets that need them are left out (counts in the log and `hparams.json`), and more than
`max_unreadable_fraction` of either split stops the run at once with the list. Triplets whose
caption is empty are kept (SPRC keeps them), counted and logged the same way.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from cirflow.data.datasets import DatasetRoot, SplitDataset, open_split
from cirflow.data.feature_store import FeatureStore, FeatureTable
from cirflow.data.regions import BoxFile
from cirflow.data.tables import Batch, ImageTable, TripletData
from cirflow.device import resolve_device
from cirflow.errors import CirflowError, naming_keys
from cirflow.evaluate.evaluator import SplitEvaluator, SplitSources, format_metrics
from cirflow.evaluate.evaluators import split_evaluator
from cirflow.evaluate.settings import CLI, EvalSettings
from cirflow.io import remove_stale_temps, write_json_atomic
from cirflow.model.checkpoints import publish_link, read_checkpoint, write_best, write_last
from cirflow.model.config import RegionMode
from cirflow.model.factory import model_for_training
from cirflow.model.state_dicts import load_state
from cirflow.train.config import TrainSettings, fingerprint
from cirflow.train.history import RunState, loss_columns, write_events, write_tables
from cirflow.train.optimizer import adamw
from cirflow.train.rng import rng_state, seed_everything, set_rng_state
from cirflow.train.schedule import one_cycle

log = logging.getLogger(__name__)

# The weights a region mode adds to the model (no stage-1 checkpoint holds them).
NEW_REGION_WEIGHTS = ("region_proj.", "region_gate")


class Trainer:
    def __init__(
        self, settings: TrainSettings, on_epoch_end: Callable[[int, dict], None] | None = None
    ):
        self.s = settings
        self.on_epoch_end = on_epoch_end
        self.out = Path(settings.out)
        self.resume_dir = self.out / "resume"

    # outputs
    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"

    def output_files(self) -> list[Path]:
        """Every file a run writes (their stale temporaries are removed when it starts)."""
        names = ("best.pt", "last.pt", "train_metrics.csv", "validation_metrics.csv")
        return [
            *(self.out / n for n in names),
            self.out / "hparams.json",
            self.resume_dir / "best.pt",
        ]

    # ------------------------------------------------------------------------------- building
    def build(self) -> None:
        """Everything a run needs, in an order that keeps the RNG stream of every region mode
        the same: the checks, the model, the data, the validation, the optimizer."""
        s = self.s
        s.check()
        if s.threads:
            torch.set_num_threads(int(s.threads))
        with naming_keys(s.key):
            self.device = resolve_device(s.device)
        self.use_amp = bool(s.amp) and self.device.type == "cuda"
        seed_everything(s.seed)
        model = model_for_training(s.model_config, s.init_checkpoint)
        model.prepare_for_device(self.device)
        self.model = model.to(self.device)
        self.model.use_amp = self.use_amp
        self.preset = model.preset
        # The data layer names its own parameters in errors; these are the user's keys.
        with naming_keys(s.key):
            self._build_train_data()
            self.evaluator = self._build_evaluator()
        named = model.trainable_named_parameters()
        self.params = [p for _, p in named]
        self.optimizer = adamw(self.param_groups(named), s.learning_rate, s.weight_decay)
        self.scheduler = one_cycle(
            self.optimizer,
            s.learning_rate,
            self.steps_per_epoch * s.schedule_length,
            s.pct_start,
            s.div_factor,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        # Resume only onto the same data: which train images are left out is part of it.
        self.fingerprint = fingerprint(s, sorted(self.train_table.unreadable))

    def _image_table(self, dataset: SplitDataset):
        """The train split's images: cached ViT tokens (a frozen ViT), else decoded pixels."""
        s = self.s
        if not s.features:
            return ImageTable(
                dataset,
                self.preset.image_size,
                s.image_cache,
                s.num_workers,
                progress=s.progress,
            )
        if not self.preset.freeze_vit:
            raise CirflowError(
                "cached image features need a frozen ViT: set model.freeze_vit: true or "
                "features.enabled: false"
            )
        return FeatureTable(dataset, FeatureStore(s.features["train"]))

    def _build_train_data(self) -> None:
        """The train triplets (those whose images can be read) and, with boxes, their boxes."""
        s = self.s
        train_ds = open_split(s.dataset, s.cirr_root, "train")
        self.train_table = self._image_table(train_ds)
        self.train_table.check_unreadable(s.max_unreadable_fraction)
        self.train_data = TripletData(
            train_ds, self.train_table, self.model.tokenizer, self.preset.max_txt_len
        )
        self.box_counts = self._load_boxes() if s.uses_boxes else None
        self.steps_per_epoch = self.train_data.num_batches(s.batch_size)
        if self.steps_per_epoch == 0:
            raise CirflowError(
                f"{s.key('batch_size')} {s.batch_size} is larger than the "
                f"{len(self.train_data)} training triplets"
            )
        self.total_steps = self.steps_per_epoch * s.num_epochs

    def _load_boxes(self) -> dict:
        """The targets' boxes (and the references', where region tokens make them candidates:
        tokens or gated with batch_images negatives) into the training data; returns their
        counts."""
        s = self.s
        mode = RegionMode(s.region_mode)
        tokens = mode.has_region_tokens
        box_file = BoxFile(s.box_file, s.box_meta_file)
        if box_file.per_triplet():
            return self._load_triplet_boxes(box_file, mode)
        names = {t["target_hard"] for t in self.train_data.triplets}
        with_refs = mode.scores_regions and s.negatives == "batch_images"
        if with_refs:
            names |= {t["reference"] for t in self.train_data.triplets}
        boxes, counts = box_file.load_training(
            self.train_table,
            self.preset.image_size,
            names,
            max_boxes=int(s.max_region_tokens) if tokens else None,
            min_targets_with_boxes=s.min_targets_with_boxes,
        )
        self.train_data.target_boxes = boxes
        self.train_data.reference_boxes = with_refs
        return counts

    def _load_triplet_boxes(self, box_file: BoxFile, mode: RegionMode) -> dict:
        """Each triplet's own boxes in its target (a box file keyed by pairid: the demo's
        edited-object boxes). They can only supervise training: a mode that scores region
        tokens gives every image one set of boxes, whatever the query."""
        s = self.s
        if mode.scores_regions:
            raise CirflowError(
                f"{s.box_file} holds boxes per triplet (keyed by pairid), but region mode "
                f"{mode} scores every image with one set of boxes: use it with a mode that "
                "only trains on boxes (aux, token_loss)"
            )
        boxes, counts = box_file.load_triplets(
            self.train_data.triplets,
            self.train_table,
            self.preset.image_size,
            max_boxes=int(s.max_region_tokens) if mode.has_region_tokens else None,
            min_targets_with_boxes=s.min_targets_with_boxes,
        )
        self.train_data.triplet_boxes = boxes
        return counts

    def _build_evaluator(self) -> SplitEvaluator:
        """The per-epoch validation on val (with the val images' own boxes where the mode
        scores region tokens)."""
        s = self.s
        settings = EvalSettings(
            device=s.device,
            batch_size=s.eval_batch_size,
            num_workers=s.num_workers,
            image_cache=s.image_cache,
            max_unreadable_fraction=s.max_unreadable_fraction,
            progress=False,
            # Errors name the keys the run's own settings came from: train.* or the flags.
            section="train" if s.stage else CLI,
            batch_size_key="eval_batch_size",
        )
        scored = RegionMode(s.region_mode).scores_regions
        boxes = BoxFile(s.val_box_file, s.val_box_meta_file) if scored else None
        sources = SplitSources((s.features or {}).get("val"), boxes)
        root = DatasetRoot(s.dataset, s.cirr_root)
        return split_evaluator(root, "val", self.model, settings, self.device, sources)

    def param_groups(self, named) -> list[dict]:
        """One AdamW group; the weights a region mode adds (aux's region_proj, gated's
        region_gate), which start where stage 1 has nothing, in a second group whose OneCycle
        peak is learning_rate × region_lr_multiplier (`cirflow.train.schedule`)."""
        region = [p for n, p in named if n.startswith(NEW_REGION_WEIGHTS)]
        rest = [p for n, p in named if not n.startswith(NEW_REGION_WEIGHTS)]
        if not region:
            return [{"params": rest}]
        mult = float(self.s.region_lr_multiplier)
        return [
            {"params": rest, "lr_multiplier": 1.0},
            {"params": region, "lr_multiplier": mult, "lr": self.s.learning_rate * mult},
        ]

    # ----------------------------------------------------------------------------- checkpoints
    def _save_last(self, state: RunState) -> None:
        write_last(
            self.last_path,
            self.model,
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "num_epochs": self.s.num_epochs,
                "rng": rng_state(),
                "fingerprint": self.fingerprint,
                **state.to_checkpoint(),
            },
        )

    def _save_best(self, state: RunState, metrics: dict) -> None:
        write_best(
            self.model,
            self.resume_dir / "best.pt",
            self.best_path,
            state.epoch,
            metrics,
            self.s.to_dict(),
        )

    def _try_resume(self) -> RunState:
        """The history of an unfinished run with the same fingerprint, its weights, optimizer,
        scheduler and RNG state restored; else a fresh state (the reason is logged)."""
        if not self.s.resume or not self.last_path.is_file():
            return RunState()
        try:
            ckpt = read_checkpoint(self.last_path, advice="training starts afresh instead")
        except CirflowError as exc:
            log.warning("not resuming: %s", exc)
            return RunState()
        refusal = self._resume_refusal(ckpt)
        if refusal:
            log.info("not resuming from %s: %s", self.last_path, refusal)
            return RunState()
        state = RunState.from_checkpoint(ckpt)
        load_state(self.model, ckpt["state_dict"], str(self.last_path))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        if state.best_epoch is not None:
            publish_link(self.resume_dir / "best.pt", self.best_path)
        log.info(
            "resuming from %s after epoch %d of %d", self.last_path, state.epoch, self.s.num_epochs
        )
        return state

    def _resume_refusal(self, ckpt: dict) -> str | None:
        """Why `last.pt` cannot be resumed, or None when it can."""
        if ckpt.get("fingerprint") != self.fingerprint:
            return "it was made with other settings, data or init weights"
        if ckpt["epoch"] >= self.s.num_epochs:
            return f"that run is finished (epoch {ckpt['epoch']}); training afresh"
        if ckpt.get("best_epoch") is not None and not (self.resume_dir / "best.pt").is_file():
            return f"it lost its best weights ({self.resume_dir / 'best.pt'})"
        return None

    # ----------------------------------------------------------------------------------- files
    def _write_hparams(self, resumed_from: int) -> None:
        n_train = sum(p.numel() for p in self.params)
        n_all = sum(p.numel() for p in self.model.parameters())
        write_json_atomic(
            self.out / "hparams.json",
            {
                "settings": self.s.to_dict(),
                "preset": self.preset.to_dict(),
                "device": str(self.device),
                "amp": self.use_amp,
                "train_triplets": len(self.train_data),
                "image_source": "features" if self.s.features else "pixels",
                "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps,
                "schedule_steps": self.steps_per_epoch * self.s.schedule_length,
                "parameters": {"total": n_all, "trainable": n_train},
                "region_mode": self.s.region_mode,
                "box_counts": self.box_counts,
                "unreadable": self.unreadable_counts(),
                "val_box_counts": self.evaluator.box_counts,
                "param_groups": [
                    {
                        "parameters": sum(p.numel() for p in g["params"]),
                        "lr_multiplier": g.get("lr_multiplier", 1.0),
                    }
                    for g in self.optimizer.param_groups
                ],
                "fingerprint": self.fingerprint,
                "resumed_after_epoch": resumed_from,
                "torch": torch.__version__,
            },
            indent=2,
        )

    def unreadable_counts(self) -> dict:
        """Images that cannot be read and the triplets left out for them, per split; and the
        triplets kept whose caption is empty (`TripletData.empty_captions`)."""
        out = {}
        for split, table, data in (
            ("train", self.train_table, self.train_data),
            ("val", self.evaluator.table, self.evaluator.data),
        ):
            out[split] = {
                "images": len(table.unreadable),
                "triplets_left_out": len(data.left_out),
                "triplets_used": len(data),
                "list": [{"image": n, "error": e} for n, e in table.unreadable.items()],
                "empty_captions": len(data.empty_captions),
                "empty_caption_pairids": data.empty_captions,
            }
        return out

    # ------------------------------------------------------------------------------- training
    def loss_weights(self) -> dict[str, float]:
        """The weight of each loss in the total (L_region only with boxes)."""
        s = self.s
        weights = {"loss_itc": 1.0, "loss_rtc": s.loss_rtc, "loss_align": s.loss_align}
        if s.uses_boxes:
            weights["loss_region"] = s.loss_region
        return weights

    def model_batch(self, batch: Batch) -> Batch:
        """A table's batch as the model's input on the run's device; without image ids (no
        false negatives masked: SPRC's plain losses) when mask_false_negatives is false."""
        batch = batch.to(self.device)
        return batch if self.s.mask_false_negatives else batch.without_image_ids()

    def train_step(self, batch: Batch, epoch: int, step: int) -> tuple[dict, torch.Tensor]:
        """One optimizer step on a batch: (its unweighted losses, the weighted total)."""
        s = self.s
        losses = self.model(
            self.model_batch(batch), reference_negatives=s.negatives == "batch_images"
        )
        total = losses["loss_itc"]
        for name, weight in self.loss_weights().items():
            if name != "loss_itc":
                total = total + weight * losses[name]
        if not torch.isfinite(total):
            raise CirflowError(
                f"non-finite loss at epoch {epoch + 1}, step {step + 1}: "
                + ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items())
                + f"; training stopped. The last good checkpoint is {self.last_path} "
                "(lower the learning rate or set train.*.grad_clip)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if s.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, s.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return losses, total

    def train_epoch(self, epoch: int) -> dict:
        """One pass over the training batches: the epoch's mean of each loss."""
        s = self.s
        self.model.train()
        sums: dict[str, float] = {}
        batches = self.train_data.batches(
            s.batch_size, seed=s.seed, epoch=epoch, num_workers=s.num_workers, batching=s.batching
        )
        bar = tqdm(
            batches,
            total=self.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{s.num_epochs}",
            disable=not s.progress,
            mininterval=10,
        )
        for step, batch in enumerate(bar):
            losses, total = self.train_step(batch, epoch, step)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss_total"] = sums.get("loss_total", 0.0) + float(total.detach())
            if s.progress:
                lr = self.scheduler.get_last_lr()[0]
                bar.set_postfix(loss=f"{float(total):.3f}", lr=f"{lr:.2e}", refresh=False)
        n = max(self.steps_per_epoch, 1)
        return {"epoch": epoch + 1, **{k: sums.get(k, 0.0) / n for k in loss_columns(s.uses_boxes)}}

    def run_epoch(self, epoch: int, state: RunState, chance: dict) -> None:
        """Train one epoch, validate when due, write the checkpoints and the tables."""
        s = self.s
        t0 = time.perf_counter()
        row = self.train_epoch(epoch)
        t_train = time.perf_counter() - t0
        state.train_rows.append(row)
        state.epoch = epoch + 1
        metrics = None
        if (epoch + 1) % s.validation_frequency == 0 or epoch + 1 == s.num_epochs:
            metrics = self.evaluator.metrics(self.model)
            state.val_rows.append({"epoch": epoch + 1, **metrics})
            score = metrics[self.evaluator.selection_metric]
            if state.best_score is None or score > state.best_score:
                state.best_score, state.best_epoch = score, epoch + 1
                self._save_best(state, metrics)
        self._save_last(state)
        write_tables(self.out, state, s.uses_boxes, self.evaluator.metric_keys)
        write_events(self.out, state)
        log.info(
            "epoch %d/%d: %s (%.1f s train, %.1f s total)",
            epoch + 1,
            s.num_epochs,
            ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"),
            t_train,
            time.perf_counter() - t0,
        )
        if metrics is not None:
            log.info("val recall (%%), chance in brackets:\n%s", format_metrics(metrics, chance))
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch + 1, row)

    def run(self) -> RunState:
        remove_stale_temps(self.output_files())
        self.build()
        self.out.mkdir(parents=True, exist_ok=True)
        state = self._try_resume()
        self._write_hparams(state.epoch)
        self._log_start()
        chance = self.evaluator.chance()
        for epoch in range(state.epoch, self.s.num_epochs):
            self.run_epoch(epoch, state, chance)
        if state.best_epoch is not None and not self.best_path.exists():
            publish_link(self.resume_dir / "best.pt", self.best_path)
        log.info(
            "best epoch %s (%s %.2f); outputs in %s",
            state.best_epoch,
            self.evaluator.selection_metric.replace("_", " "),
            state.best_score or math.nan,
            self.out,
        )
        return state

    def _log_start(self) -> None:
        s = self.s
        log.info(
            "training %s on %d triplets: %d epochs x %d steps (batch %d), device %s%s, "
            "%d trainable parameters, region mode %s",
            self.preset.name,
            len(self.train_data),
            s.num_epochs,
            self.steps_per_epoch,
            s.batch_size,
            self.device,
            " + AMP" if self.use_amp else "",
            sum(p.numel() for p in self.params),
            s.region_mode,
        )
        for split, c in self.unreadable_counts().items():
            if c["images"]:
                log.warning(
                    "%s: %d unreadable images, %d triplets left out, %d used",
                    split,
                    c["images"],
                    c["triplets_left_out"],
                    c["triplets_used"],
                )


def train(
    settings: TrainSettings, on_epoch_end: Callable[[int, dict], None] | None = None
) -> RunState:
    return Trainer(settings, on_epoch_end).run()
