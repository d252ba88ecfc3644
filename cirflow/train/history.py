"""The per-epoch record of a run, its two CSV files and its TensorBoard event files.

train_metrics.csv        epoch, loss_itc, loss_rtc, loss_align[, loss_region], loss_total
validation_metrics.csv   epoch + the validation columns (CIRR's 11 of `cirflow.evaluate.recall`,
                         or the evaluator's own: FashionIQ's of `fashioniq_recall`)
tb/                      the same numbers as TensorBoard scalars (`train/<loss>`, `val/<metric>`,
                         step = epoch), for `tensorboard --logdir results/`
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cirflow.evaluate.recall import METRIC_KEYS
from cirflow.io import failed_writes_named, write_csv_atomic

log = logging.getLogger(__name__)
TB_DIR = "tb"

LOSS_KEYS = ("loss_itc", "loss_rtc", "loss_align")


def loss_columns(with_region: bool) -> list[str]:
    """The loss columns of a run, in CSV order."""
    return [*LOSS_KEYS, *(["loss_region"] if with_region else []), "loss_total"]


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    train_rows: list[dict] = field(default_factory=list)
    val_rows: list[dict] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int | None = None

    def to_checkpoint(self) -> dict:
        return {
            "epoch": self.epoch,
            "train_rows": self.train_rows,
            "val_rows": self.val_rows,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> RunState:
        return cls(
            ckpt["epoch"],
            ckpt["train_rows"],
            ckpt["val_rows"],
            ckpt["best_score"],
            ckpt["best_epoch"],
        )


def write_tables(
    out: Path, state: RunState, with_region: bool, metric_keys: tuple[str, ...] = METRIC_KEYS
) -> None:
    write_csv_atomic(
        out / "train_metrics.csv", state.train_rows, ["epoch", *loss_columns(with_region)]
    )
    write_csv_atomic(out / "validation_metrics.csv", state.val_rows, ["epoch", *metric_keys])


def write_events(out: Path, state: RunState) -> Path | None:
    """`out/tb/` rewritten from the state's rows, so that it always says what the CSVs say
    (a resumed run included); built beside and swapped in. Returns the folder, or None without
    the tensorboard package (training does not depend on it). A full disk is a CirflowError
    naming the folder; the old one stays."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        log.warning("no TensorBoard event files: %s", exc)
        return None
    final = out / TB_DIR
    for stale in out.glob(f".{TB_DIR}.*"):  # left by a killed write
        shutil.rmtree(stale, ignore_errors=True)
    with failed_writes_named(final):
        staging = Path(tempfile.mkdtemp(prefix=f".{TB_DIR}.", dir=out))
        try:
            _write_scalars(SummaryWriter, staging, state)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    staging.chmod(0o777 & ~_umask())
    if final.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{TB_DIR}.", dir=out))
        final.rename(retired / TB_DIR)
        shutil.rmtree(retired, ignore_errors=True)
    staging.rename(final)
    return final


def _write_scalars(summary_writer, folder: Path, state: RunState) -> None:
    """The rows' numbers as TensorBoard scalars (train/<column>, val/<metric>) in `folder`."""
    writer = summary_writer(log_dir=str(folder))
    try:
        for prefix, rows in (("train", state.train_rows), ("val", state.val_rows)):
            for row in rows:
                for key, value in row.items():
                    if key != "epoch" and isinstance(value, (int, float)):
                        writer.add_scalar(f"{prefix}/{key}", value, row["epoch"])
    finally:
        writer.close()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
