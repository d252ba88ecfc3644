"""The training loop (stage 1: SPRC's losses; stage 2: + the region loss), with validation,
checkpoints and automatic resume.

Per epoch: train on every full batch (SPRC drops the last partial batch), validate on CIRR val
every `validation_frequency` epochs and at the last one, then write

    best.pt                  trainable weights of the epoch with the best arithmetic mean of the 7 recalls
    last.pt                  trainable weights + optimizer + scheduler + GradScaler + epoch + RNG
                             + the metric history (everything a resumed run needs)
    train_metrics.csv        epoch, loss_itc, loss_rtc, loss_align[, loss_region], loss_total
    validation_metrics.csv   epoch + SPRC's 11 validation columns
    hparams.json             the settings, the preset, and derived numbers (written at the start)

all atomically. `best.pt` is written under ``resume/best.pt`` and hard-linked to ``best.pt``:
Snakemake deletes the declared outputs of a killed job, and the link keeps the best weights for
the resumed run without a second copy on disk.

Resume: when ``last.pt`` exists, comes from an unfinished run and was made with the same
settings (same fingerprint: hyper-parameters, preset, dataset, init checkpoint and box file),
training continues after its epoch, with its optimizer, scheduler and RNG state, so the result
is the same as an uninterrupted run. Otherwise training starts afresh (the reason is logged).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cirflow.errors import CirflowError
from cirflow.io import atomic_path, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

LOSS_KEYS = ("loss_itc", "loss_rtc", "loss_align")


@dataclass
class TrainSettings:
    """Everything one training run needs (the `train.stageN` + `model` config, or the CLI)."""

    cirr_root: str
    out: str
    preset: str = "tiny"
    freeze_vit: bool | None = None  # None: the preset's choice
    vit_precision: str | None = None
    num_epochs: int = 50
    batch_size: int = 128
    learning_rate: float = 1e-5
    weight_decay: float = 0.05
    loss_rtc: float = 0.4
    loss_align: float = 0.4
    loss_region: float = 0.5
    use_region_loss: bool = False
    box_file: str | None = None
    init_checkpoint: str | None = None  # stage 2: stage 1's best.pt; or a published SPRC file
    init_preset_for_sprc: str | None = None
    batching: str = "random"  # random (SPRC) | img_set (a set's triplets share a batch)
    negatives: str = "targets"  # targets (SPRC) | batch_images (+ the batch's reference images)
    warmup_epochs: float = 1.5  # OneCycle pct_start = min(warmup_epochs / num_epochs, 0.5)
    grad_clip: float | None = None
    validation_frequency: int = 1
    save_training: bool = True
    save_best: bool = True
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    image_cache: str = "auto"
    eval_batch_size: int = 128
    threads: int | None = None
    resume: bool = True
    progress: bool = True
    # Settings that do not change the trained weights (left out of the resume fingerprint).
    RUNTIME_ONLY = (
        "out",
        "device",
        "num_workers",
        "image_cache",
        "eval_batch_size",
        "threads",
        "resume",
        "progress",
        "validation_frequency",
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    train_rows: list[dict] = field(default_factory=list)
    val_rows: list[dict] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int | None = None


# --------------------------------------------------------------------------------------- helpers
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CirflowError(
            f"train.device is {name!r} but CUDA is not available on this machine (use auto or cpu)"
        )
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def file_digest(path: str | Path | None) -> str | None:
    if not path:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(settings: TrainSettings) -> str:
    """Hash of what determines the trained weights (not the output folder, device, workers)."""
    from cirflow.data.cirr import captions_file, split_file

    d = {k: v for k, v in settings.to_dict().items() if k not in TrainSettings.RUNTIME_ONLY}
    d["cirr_root"] = None  # the data itself is hashed instead of its path
    d["data"] = [
        file_digest(captions_file(settings.cirr_root, "train")),
        file_digest(split_file(settings.cirr_root, "train")),
    ]
    d["init_checkpoint"] = file_digest(settings.init_checkpoint)
    d["box_file"] = file_digest(settings.box_file) if settings.use_region_loss else None
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def csv_text(rows: list[dict], columns: list[str]) -> str:
    lines = [",".join(columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cells.append(str(v) if isinstance(v, int) or v == "" else f"{v:.6g}")
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def publish_link(src: Path, dst: Path) -> None:
    """Make `dst` the same file as `src` (hard link; a copy where links are not possible), atomically."""
    tmp = dst.with_name(f".{dst.name}.link")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        import shutil

        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save_torch(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# ------------------------------------------------------------------------------------- the loop
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

    def _check_settings(self) -> None:
        s = self.s
        for key in ("num_epochs", "batch_size", "validation_frequency"):
            if int(getattr(s, key)) < 1:
                raise CirflowError(f"train: {key} must be ≥ 1 (got {getattr(s, key)!r})")
        if not s.learning_rate > 0:
            raise CirflowError(f"train: learning_rate must be > 0 (got {s.learning_rate!r})")
        if s.negatives not in ("targets", "batch_images"):
            raise CirflowError(
                f"train: negatives must be targets or batch_images (got {s.negatives!r})"
            )
        if s.use_region_loss and not s.box_file:
            raise CirflowError(
                "the region loss (--use-region-loss / stage 2) needs a box file (--box-file)"
            )
        if s.box_file and not Path(s.box_file).is_file():
            raise CirflowError(f"box file not found: {s.box_file}")

    def build(self) -> None:
        from cirflow.data.cirr import CirrDataset
        from cirflow.evaluate.evaluator import SplitEvaluator
        from cirflow.model.checkpoints import extract_state_dict, load_weights, torch_load
        from cirflow.model.presets import get_preset
        from cirflow.model.sprc import SPRC
        from cirflow.train.data import ImageTable, TripletData

        s = self.s
        self._check_settings()
        if s.threads:
            torch.set_num_threads(int(s.threads))
        self.device = resolve_device(s.device)
        self.use_amp = bool(s.amp) and self.device.type == "cuda"
        seed_everything(s.seed)

        preset = get_preset(s.preset, freeze_vit=s.freeze_vit, vit_precision=s.vit_precision)
        self.preset = preset
        init_sd = None
        if s.init_checkpoint:
            obj = torch_load(s.init_checkpoint)
            init_sd, kind = extract_state_dict(obj, s.init_checkpoint)
            if kind == "cirflow" and obj["model"]["preset"] != preset.name:
                raise CirflowError(
                    f"{s.init_checkpoint} was trained with preset {obj['model']['preset']!r}, this run uses {preset.name!r}"
                )
        # A full init checkpoint replaces the BLIP-2 weights: do not load those first.
        model = SPRC(preset, with_region=s.use_region_loss, load_pretrained=init_sd is None)
        if init_sd is not None:
            load_weights(model, init_sd, s.init_checkpoint, allow_missing=("region_proj.",))
            log.info("initialised from %s", s.init_checkpoint)
        model.prepare_for_device(self.device)
        self.model = model.to(self.device)
        self.model.use_amp = self.use_amp

        train_ds = CirrDataset(s.cirr_root, "train")
        self.train_table = ImageTable(
            train_ds, preset.image_size, s.image_cache, s.num_workers, progress=s.progress
        )
        self.train_data = TripletData(
            train_ds, self.train_table, model.tokenizer, preset.max_txt_len
        )
        self.box_counts = None
        if s.use_region_loss:
            from cirflow.train.regions import load_training_boxes

            targets = {t["target_hard"] for t in train_ds.triplets}
            boxes, self.box_counts = load_training_boxes(
                s.box_file, self.train_table, preset.image_size, targets
            )
            self.train_data.target_boxes = boxes
        self.steps_per_epoch = self.train_data.num_batches(s.batch_size)
        if self.steps_per_epoch == 0:
            raise CirflowError(
                f"train: batch_size {s.batch_size} is larger than the {len(self.train_data)} training triplets"
            )
        self.total_steps = self.steps_per_epoch * s.num_epochs
        self.evaluator = SplitEvaluator(
            s.cirr_root,
            "val",
            model.tokenizer,
            preset.max_txt_len,
            preset.image_size,
            self.device,
            s.eval_batch_size,
            s.num_workers,
            s.image_cache,
            progress=False,
        )
        self.params = [p for _, p in model.trainable_named_parameters()]
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=s.learning_rate,
            betas=(0.9, 0.98),
            eps=1e-7,
            weight_decay=s.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=s.learning_rate,
            total_steps=self.total_steps,
            pct_start=min(s.warmup_epochs / s.num_epochs, 0.5),
            div_factor=100.0,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.fingerprint = fingerprint(s)

    # ----------------------------------------------------------------------------- checkpoints
    def _spec(self) -> dict:
        from cirflow.model.checkpoints import model_spec

        return model_spec(self.model)

    def _weights(self) -> dict:
        from cirflow.model.checkpoints import saved_state_dict

        return saved_state_dict(self.model)

    def _save_last(self, state: RunState) -> None:
        from cirflow.model.checkpoints import FORMAT

        save_torch(
            {
                "format": FORMAT,
                "model": self._spec(),
                "state_dict": self._weights(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "epoch": state.epoch,
                "num_epochs": self.s.num_epochs,
                "rng": rng_state(),
                "fingerprint": self.fingerprint,
                "train_rows": state.train_rows,
                "val_rows": state.val_rows,
                "best_score": state.best_score,
                "best_epoch": state.best_epoch,
            },
            self.last_path,
        )

    def _save_best(self, state: RunState, metrics: dict) -> None:
        from cirflow.model.checkpoints import FORMAT

        stash = self.resume_dir / "best.pt"
        save_torch(
            {
                "format": FORMAT,
                "model": self._spec(),
                "state_dict": self._weights(),
                "epoch": state.epoch,
                "metrics": metrics,
                "hparams": self.s.to_dict(),
            },
            stash,
        )
        publish_link(stash, self.best_path)

    def _try_resume(self) -> RunState:
        from cirflow.model.checkpoints import load_weights, torch_load

        if not self.s.resume or not self.last_path.is_file():
            return RunState()
        try:
            ckpt = torch_load(self.last_path)
        except CirflowError as exc:
            log.warning("not resuming: %s", exc)
            return RunState()
        if ckpt.get("fingerprint") != self.fingerprint:
            log.info(
                "not resuming from %s: it was made with other settings, data or init weights",
                self.last_path,
            )
            return RunState()
        if ckpt["epoch"] >= self.s.num_epochs:
            log.info(
                "not resuming from %s: that run is finished (epoch %d); training afresh",
                self.last_path,
                ckpt["epoch"],
            )
            return RunState()
        state = RunState(
            ckpt["epoch"],
            ckpt["train_rows"],
            ckpt["val_rows"],
            ckpt["best_score"],
            ckpt["best_epoch"],
        )
        if state.best_epoch is not None and not (self.resume_dir / "best.pt").is_file():
            log.warning(
                "not resuming: %s lost its best weights (%s)",
                self.last_path,
                self.resume_dir / "best.pt",
            )
            return RunState()
        load_weights(self.model, ckpt["state_dict"], str(self.last_path))
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

    # ----------------------------------------------------------------------------------- files
    def _write_tables(self, state: RunState) -> None:
        from cirflow.evaluate.recall import METRIC_KEYS

        loss_cols = [*LOSS_KEYS, *(["loss_region"] if self.s.use_region_loss else []), "loss_total"]
        write_text_atomic(
            self.out / "train_metrics.csv", csv_text(state.train_rows, ["epoch", *loss_cols])
        )
        write_text_atomic(
            self.out / "validation_metrics.csv", csv_text(state.val_rows, ["epoch", *METRIC_KEYS])
        )

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
                "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps,
                "parameters": {"total": n_all, "trainable": n_train},
                "box_counts": self.box_counts,
                "fingerprint": self.fingerprint,
                "resumed_after_epoch": resumed_from,
                "torch": torch.__version__,
            },
            indent=2,
        )

    # ------------------------------------------------------------------------------------ run
    def train_epoch(self, epoch: int) -> dict:
        s = self.s
        self.model.train()
        sums: dict[str, float] = {}
        from cirflow.train.transforms import normalize

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
            ref = normalize(batch.ref.to(self.device, non_blocking=True))
            tgt = normalize(batch.target.to(self.device, non_blocking=True))
            ids = batch.input_ids.to(self.device)
            mask = batch.attention_mask.to(self.device)
            boxes = valid = None
            if s.use_region_loss:
                boxes, valid = batch.boxes.to(self.device), batch.box_valid.to(self.device)
            target_ids = batch.target_ids.to(self.device)
            reference_ids = batch.reference_ids.to(self.device)
            losses = self.model(
                ref,
                tgt,
                ids,
                mask,
                boxes,
                valid,
                target_ids,
                reference_ids,
                reference_negatives=s.negatives == "batch_images",
            )
            total = (
                losses["loss_itc"]
                + s.loss_rtc * losses["loss_rtc"]
                + s.loss_align * losses["loss_align"]
            )
            if s.use_region_loss:
                total = total + s.loss_region * losses["loss_region"]
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
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss_total"] = sums.get("loss_total", 0.0) + float(total.detach())
            if s.progress:
                bar.set_postfix(
                    loss=f"{float(total):.3f}",
                    lr=f"{self.scheduler.get_last_lr()[0]:.2e}",
                    refresh=False,
                )
        n = max(self.steps_per_epoch, 1)
        row = {"epoch": epoch + 1}
        for k in [*LOSS_KEYS, *(["loss_region"] if s.use_region_loss else []), "loss_total"]:
            row[k] = sums.get(k, 0.0) / n
        return row

    def run(self) -> RunState:
        from cirflow.evaluate.evaluator import format_metrics

        self.build()
        self.out.mkdir(parents=True, exist_ok=True)
        state = self._try_resume()
        self._write_hparams(state.epoch)
        s = self.s
        chance = self.evaluator.chance()
        log.info(
            "training %s on %d triplets: %d epochs x %d steps (batch %d), device %s%s, %d trainable parameters",
            self.preset.name,
            len(self.train_data),
            s.num_epochs,
            self.steps_per_epoch,
            s.batch_size,
            self.device,
            " + AMP" if self.use_amp else "",
            sum(p.numel() for p in self.params),
        )
        for epoch in range(state.epoch, s.num_epochs):
            t0 = time.perf_counter()
            row = self.train_epoch(epoch)
            t_train = time.perf_counter() - t0
            state.train_rows.append(row)
            state.epoch = epoch + 1
            metrics = None
            if (epoch + 1) % s.validation_frequency == 0 or epoch + 1 == s.num_epochs:
                metrics = self.evaluator.metrics(self.model)
                state.val_rows.append({"epoch": epoch + 1, **metrics})
                score = metrics["arithmetic_mean"]
                if state.best_score is None or score > state.best_score:
                    state.best_score, state.best_epoch = score, epoch + 1
                    self._save_best(state, metrics)
            self._save_last(state)
            self._write_tables(state)
            log.info(
                "epoch %d/%d: %s (%.1f s train, %.1f s total)",
                epoch + 1,
                s.num_epochs,
                ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"),
                t_train,
                time.perf_counter() - t0,
            )
            if metrics is not None:
                log.info(
                    "val recall (%%), chance in brackets:\n%s", format_metrics(metrics, chance)
                )
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch + 1, row)
        if state.best_epoch is not None and not self.best_path.exists():
            publish_link(self.resume_dir / "best.pt", self.best_path)
        log.info(
            "best epoch %s (arithmetic mean %.2f); outputs in %s",
            state.best_epoch,
            state.best_score or math.nan,
            self.out,
        )
        return state


def train(
    settings: TrainSettings, on_epoch_end: Callable[[int, dict], None] | None = None
) -> RunState:
    return Trainer(settings, on_epoch_end).run()
