"""Test setup: offline (DESIGN §8) and caches inside the work tree, before anything imports."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "false",
    "YOLO_CONFIG_DIR": str(CACHE / "ultralytics"),
    "MPLCONFIGDIR": str(CACHE / "matplotlib"),
    "TORCH_HOME": str(CACHE / "torch"),
    "HF_HOME": str(CACHE / "huggingface"),
    "MPLBACKEND": "Agg",
}.items():
    os.environ[key] = value

import pytest  # noqa: E402

SHARED_CIRR = REPO.parent / "shared" / "cirr"
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_cirr() -> Path:
    """The real CIRR annotation files beside the checkout (skips where they are absent)."""
    if not SHARED_CIRR.is_dir():
        pytest.skip(f"real CIRR files not found at {SHARED_CIRR}")
    return SHARED_CIRR


@pytest.fixture(scope="session")
def test_data() -> Path:
    return TEST_DATA
