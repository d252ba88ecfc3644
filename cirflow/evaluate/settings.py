"""How an evaluation runs (`evaluate:` in config.yaml, the `cirflow evaluate` flags, or the
per-epoch validation inside training): device, batch size, workers, image cache. Each setting is
declared once (`cirflow.settings`): its checks and its flags come from the declaration.

Torch-free. `section` says where the values came from, so that an error names the key the user
actually set: `evaluate.device`, `train.eval_batch_size`, or `--image-cache` on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

from cirflow.data.image_cache import CACHE_MODES
from cirflow.settings import NO_FLAG, check_declared, setting

CLI = "cli"


@dataclass(frozen=True)
class EvalSettings:
    device: str = setting("auto", "auto | cpu | cuda | cuda:N", config="evaluate")
    batch_size: int = setting(
        128, "images / queries per forward pass", config="evaluate", minimum=1
    )
    num_workers: int = setting(
        2, "DataLoader worker processes", config="evaluate", minimum=0, cli_default=4
    )
    image_cache: str = setting(
        "auto", "keep preprocessed images in memory", config="evaluate", choices=CACHE_MODES
    )
    threads: int | None = setting(None, "torch CPU threads", parse=int)
    progress: bool = setting(True, "progress bars", flag=NO_FLAG)
    # Unreadable images are left out of the gallery; past this fraction of a split: an error.
    max_unreadable_fraction: float = setting(
        0.01,
        "unreadable images are left out and listed; past this fraction of a split: an error",
        config="evaluate",
        minimum=0,
        maximum=1,
    )
    section: str = "evaluate"  # config section of the values, or CLI for command-line flags
    batch_size_key: str = "batch_size"  # training validates with train.eval_batch_size

    def __post_init__(self) -> None:
        check_declared(self, self.key)

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
