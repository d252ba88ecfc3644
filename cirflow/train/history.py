"""The per-epoch record of a run and its two CSV files.

train_metrics.csv        epoch, loss_itc, loss_rtc, loss_align[, loss_region], loss_total
validation_metrics.csv   epoch + the 11 validation columns of `cirflow.evaluate.recall`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cirflow.evaluate.recall import METRIC_KEYS
from cirflow.io import write_text_atomic

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


def csv_text(rows: list[dict], columns: list[str]) -> str:
    lines = [",".join(columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cells.append(str(v) if isinstance(v, int) or v == "" else f"{v:.6g}")
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def write_tables(out: Path, state: RunState, with_region: bool) -> None:
    write_text_atomic(
        out / "train_metrics.csv", csv_text(state.train_rows, ["epoch", *loss_columns(with_region)])
    )
    write_text_atomic(
        out / "validation_metrics.csv", csv_text(state.val_rows, ["epoch", *METRIC_KEYS])
    )
