"""Which torch device a job runs on, from a config value (`auto`, `cpu`, `cuda`, `cuda:N`).

Shared by training and evaluation; `key` is the config key the value came from, so that an
error names what the user actually set (`train.device` or `evaluate.device`).
"""

from __future__ import annotations

import torch

from cirflow.errors import CirflowError


def resolve_device(name: str, key: str = "device") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise CirflowError(
            f"{key} is {name!r}: not a device (use auto, cpu, cuda or cuda:N)"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CirflowError(
            f"{key} is {name!r} but CUDA is not available on this machine (use auto or cpu)"
        )
    return device
