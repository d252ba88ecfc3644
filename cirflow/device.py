"""Which torch device a job runs on, from a config value (`auto`, `cpu`, `cuda`, `cuda:N`).

Shared by training and evaluation. An error is a `SettingError` of setting `device`: the caller
names the key the user set (`train.device`, `evaluate.device`, `--device`; `naming_keys`).
"""

from __future__ import annotations

import torch

from cirflow.errors import SettingError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise SettingError(
            "device", f"{{key}} is {name!r}: not a device (use auto, cpu, cuda or cuda:N)"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SettingError(
            "device",
            f"{{key}} is {name!r} but CUDA is not available on this machine (use auto or cpu)",
        )
    return device
