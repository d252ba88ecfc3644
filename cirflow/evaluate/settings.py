"""How an evaluation runs (`evaluate:` in config.yaml, the `cirflow evaluate` flags, or the
per-epoch validation inside training): device, batch size, workers, image cache.

Torch-free. `section` says where the values came from, so that an error names the key the user
actually set: `evaluate.device`, `train.eval_batch_size`, or `--image-cache` on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

from cirflow.data.image_cache import check_cache_mode
from cirflow.errors import CirflowError

CLI = "cli"


@dataclass(frozen=True)
class EvalSettings:
    device: str = "auto"
    batch_size: int = 128
    num_workers: int = 0
    image_cache: str = "auto"
    threads: int | None = None
    progress: bool = True
    # Unreadable images are left out of the gallery; past this fraction of a split: an error.
    max_unreadable_fraction: float = 0.01
    section: str = "evaluate"  # config section of the values, or CLI for command-line flags
    batch_size_key: str = "batch_size"  # training validates with train.eval_batch_size

    def __post_init__(self) -> None:
        if int(self.batch_size) < 1:
            raise CirflowError(f"{self.key('batch_size')} must be ≥ 1 (got {self.batch_size!r})")
        if int(self.num_workers) < 0:
            raise CirflowError(f"{self.key('num_workers')} must be ≥ 0 (got {self.num_workers!r})")
        check_cache_mode(self.image_cache, self.key("image_cache"))
        if not 0 <= float(self.max_unreadable_fraction) <= 1:
            raise CirflowError(
                f"{self.key('max_unreadable_fraction')} must be a fraction in [0, 1] "
                f"(got {self.max_unreadable_fraction!r})"
            )

    def key(self, name: str) -> str:
        """The config key (or command-line flag) of setting `name`."""
        if name == "batch_size":
            name = self.batch_size_key
        if self.section == CLI:
            return "--" + name.replace("_", "-")
        return f"{self.section}.{name}"

    @classmethod
    def from_config(cls, evaluate_cfg: dict, threads: int | None = None) -> EvalSettings:
        """From the `evaluate:` section (its `resources` are the scheduler's, not ours)."""
        return cls(
            device=evaluate_cfg["device"],
            batch_size=evaluate_cfg["batch_size"],
            num_workers=evaluate_cfg["num_workers"],
            image_cache=evaluate_cfg["image_cache"],
            max_unreadable_fraction=evaluate_cfg.get("max_unreadable_fraction", 0.01),
            threads=threads,
        )
