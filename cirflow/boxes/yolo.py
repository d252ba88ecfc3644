"""Ultralytics YOLO boxes: batched `predict`, device and precision chosen automatically.

Config (`boxes.yolo`, every key optional, documented in config.yaml):
    weights   "yolov8n.pt" | a path to a .pt file | a model .yaml (random init: tests/benchmarks)
    conf, iou, max_det, imgsz, classes (ids or class names; null = all)
    batch_size "auto" (AUTO_BATCH_SIZE by device, from benchmarks/bench_detect.py) or an int
    device    "auto" (first CUDA device if torch sees one, else CPU) | cpu | cuda | cuda:N | N
    half      "auto" (fp16 on CUDA, fp32 on CPU) | true | false (true on CPU is ignored)

Images arrive decoded by `cirflow.data.images.read_image` (EXIF-transposed RGB, as a viewer shows
them) and are handed to ultralytics as BGR numpy arrays, so ultralytics never re-reads a file or
re-applies an orientation: the boxes are normalised to the image as displayed.

Batch invariance (the merged box file must be byte-identical whatever the number of shards, and
shards regroup the images into different batches): ultralytics letterboxes a batch to the
smallest stride-multiple rectangle only when every image in it has the same shape, and to the
full `imgsz` square otherwise, so an image's preprocessing would depend on its batch-mates. Here
  * batch_size 1: rectangular letterbox of the image alone (what ultralytics does for one image;
    the cheapest on a CPU) -- a function of the image only;
  * batch_size > 1: always the `imgsz` x `imgsz` square letterbox (`rect=False`), and every call
    is padded to exactly `batch_size` images with blank ones, so the network always sees a tensor
    of the same shape (the same kernels are picked on every call) and each image's input pixels
    depend on that image only.
tests/test_yolo.py checks that 1 and 2 shards give byte-identical files on the CPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cirflow.boxes.postfilter import Detections
from cirflow.errors import CirflowError

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = "yolov8n.pt"
# Images per predict call when batch_size is "auto", by device type. CPU: measured with
# benchmarks/bench_detect.py (yolov8n, 640 px, 2 cores): one image per call with its own
# rectangular letterbox ran ~1.3x faster than square batches of 4 (docs/design.md §4 saw the same with
# 16), so batching does not pay there. CUDA: 32, a batch that keeps a GPU busy for yolov8n at
# 640 px in fp16 at a few hundred MB; benchmarks/bench_detect_gpu.sh measures 1/16/32/64 on a
# GPU (not yet measured).
AUTO_BATCH_SIZE = {"cpu": 1, "cuda": 32}
# How to get the weights where there is no internet.
WEIGHTS_HINT = (
    "run `cirflow weights fetch --yolo {name}` on a machine with internet (it writes "
    "{fetched}; copy that file to the same place here), or set boxes.yolo.weights to a local .pt "
    "file (the demo can train its own: `--configfile config/presets/yolo_demo.yaml`)"
)


def _fetched_path(name: str) -> Path:
    """Where `cirflow weights fetch --yolo NAME` puts a release asset (default cache dir)."""
    from cirflow.weights import DEFAULT_CACHE_DIR, yolo_path

    return yolo_path(DEFAULT_CACHE_DIR, name)


def _env_offline() -> bool:
    return os.environ.get("YOLO_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_weights(weights: str | os.PathLike) -> str:
    """A local file for `weights`, found or downloaded the way ultralytics does it.

    Order: the path as given; for a bare name also `.cache/yolo/<name>` (where `cirflow weights
    fetch` puts it) and ultralytics' weights directory (settings `weights_dir`); then ultralytics'
    own download of its release assets (e.g. yolov8n.pt) where there is internet.
    Offline, or when the download fails, a CirflowError names the file and how to provide it.
    A `.yaml` model definition is returned as is (a randomly initialised network).
    """
    text = str(weights).strip()
    if not text:
        raise CirflowError("boxes.yolo.weights is empty: give a .pt file or a model name")
    if text.endswith((".yaml", ".yml")):
        return text
    path = Path(text).expanduser()
    if path.is_file():
        return str(path)
    if path.is_dir():
        raise CirflowError(f"YOLO weights {text!r} is a directory, expected a .pt file")
    from ultralytics.utils import ONLINE, SETTINGS

    fetched = _fetched_path(path.name)
    cached = Path(SETTINGS["weights_dir"]) / path.name
    if path.name == text:
        for candidate in (fetched, cached):
            if candidate.is_file():
                return str(candidate)
    looked = f"{path.resolve()}" + (
        f", {fetched.resolve()} and {cached}" if path.name == text else ""
    )
    hint = WEIGHTS_HINT.format(name=path.name, fetched=fetched)
    if path.name != text:
        # An explicit path (with a directory part) that does not exist: nothing to download.
        raise CirflowError(f"YOLO weights file not found: {path.resolve()}; {hint}")
    if _env_offline() or not ONLINE:
        raise CirflowError(
            f"YOLO weights {text!r} not found (looked at {looked}) and this machine is offline "
            f"(YOLO_OFFLINE or no network), so ultralytics cannot download it: {hint}"
        )
    import fcntl

    from ultralytics.utils.downloads import attempt_download_asset

    # Shards start together: one downloads (into the working directory, as ultralytics does),
    # the others wait for it instead of reading or writing a half-downloaded file.
    fetched.parent.mkdir(parents=True, exist_ok=True)
    with open(fetched.parent / f".{path.name}.download.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            return str(path)
        try:
            found = attempt_download_asset(text)
        except Exception as exc:  # ultralytics raises ConnectionError, OSError, ...
            raise CirflowError(f"could not download YOLO weights {text!r}: {exc}; {hint}") from exc
    if not Path(found).is_file():
        raise CirflowError(
            f"YOLO weights {text!r} not found (looked at {looked}) and ultralytics has no "
            f"release asset of that name to download: {hint}"
        )
    return str(found)


def load_model(weights: str):
    """An ultralytics YOLO model; `.yaml` builds a seeded random network (same weights every
    time, so that shards of one run agree)."""
    import torch
    from ultralytics import YOLO

    resolved = resolve_weights(weights)
    try:
        if resolved.endswith((".yaml", ".yml")):
            log.warning(
                "YOLO built from %s with random weights: its boxes are meaningless "
                "(tests and benchmarks only)",
                resolved,
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return YOLO(resolved, task="detect")
        return YOLO(resolved, task="detect")
    except CirflowError:
        raise
    except Exception as exc:
        raise CirflowError(
            f"cannot load YOLO weights {resolved}: {type(exc).__name__}: {exc}"
        ) from exc


def resolve_device(device: str | int | None) -> str:
    """'auto' -> 'cuda:0' when torch sees a GPU, else 'cpu'; 'cuda'/'N' -> 'cuda:N'."""
    import torch

    text = "auto" if device is None else str(device).strip().lower()
    if text in ("", "auto"):
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text == "cuda" or text.isdigit() or text.startswith("cuda:"):
        index = 0 if text == "cuda" else int(text.removeprefix("cuda:") or 0)
        if not torch.cuda.is_available():
            raise CirflowError(
                f"boxes.yolo.device is {device!r} but torch sees no CUDA device "
                "(use device: auto or cpu)"
            )
        if index >= torch.cuda.device_count():
            raise CirflowError(
                f"boxes.yolo.device is {device!r} but torch sees only "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
        return f"cuda:{index}"
    raise CirflowError(
        f"boxes.yolo.device {device!r} not understood: use auto, cpu, cuda, cuda:N or N"
    )


def to_bgr(image: Image.Image) -> np.ndarray:
    """A contiguous uint8 BGR array of an RGB PIL image (what ultralytics expects of arrays)."""
    rgb = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


@dataclass
class YoloDetector:
    weights: str = DEFAULT_WEIGHTS
    conf: float = 0.25
    iou: float = 0.7
    classes: list | None = None
    imgsz: int = 640
    max_det: int = 300
    batch_size: int | str = "auto"
    device: str = "auto"
    half: bool | str = "auto"
    name: str = "yolo"
    model: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.conf) <= 1.0:
            raise CirflowError(f"boxes.yolo.conf must be in [0, 1] (got {self.conf!r})")
        if not 0.0 < float(self.iou) <= 1.0:
            raise CirflowError(f"boxes.yolo.iou must be in (0, 1] (got {self.iou!r})")
        if int(self.imgsz) < 32:
            raise CirflowError(f"boxes.yolo.imgsz must be at least 32 (got {self.imgsz!r})")
        if int(self.max_det) < 1:
            raise CirflowError(f"boxes.yolo.max_det must be at least 1 (got {self.max_det!r})")
        self.device = resolve_device(self.device)
        device_type = self.device.split(":")[0]
        if self.batch_size in (None, "auto"):
            self.batch_size = AUTO_BATCH_SIZE[device_type]
        elif isinstance(self.batch_size, bool) or int(self.batch_size) < 1:
            raise CirflowError(
                f"boxes.yolo.batch_size must be 'auto' or a positive integer (got {self.batch_size!r})"
            )
        self.batch_size = int(self.batch_size)
        if self.half in (None, "auto"):
            self.half = device_type == "cuda"
        elif not isinstance(self.half, bool):
            raise CirflowError(f"boxes.yolo.half must be auto, true or false (got {self.half!r})")
        elif self.half and device_type == "cpu":
            log.warning("boxes.yolo.half is true but the device is the CPU: using fp32")
            self.half = False
        if self.model is None:
            self.model = load_model(self.weights)
        self.class_ids = self._class_ids(self.classes)
        self._blank = np.full((32, 32, 3), 114, dtype=np.uint8)
        log.info(
            "yolo: weights %s, device %s, %s, batch %d, imgsz %d, conf %g",
            self.weights,
            self.device,
            "fp16" if self.half else "fp32",
            self.batch_size,
            self.imgsz,
            self.conf,
        )

    def _class_ids(self, classes) -> list[int] | None:
        """Class filter as ids; names are looked up in the model's class names."""
        if classes is None:
            return None
        names = dict(self.model.names)
        by_name = {str(v).lower(): k for k, v in names.items()}
        ids = []
        for c in [classes] if isinstance(classes, (int, str)) else classes:
            if isinstance(c, bool):
                raise CirflowError(f"boxes.yolo.classes: {c!r} is not a class id or name")
            if isinstance(c, int):
                if c not in names:
                    raise CirflowError(
                        f"boxes.yolo.classes: id {c} is not a class of {self.weights} "
                        f"(ids 0..{len(names) - 1})"
                    )
                ids.append(c)
            elif str(c).lower() in by_name:
                ids.append(by_name[str(c).lower()])
            else:
                some = ", ".join(list(by_name)[:12])
                raise CirflowError(
                    f"boxes.yolo.classes: {c!r} is not a class of {self.weights} (e.g. {some})"
                )
        return sorted(set(ids))

    def predict_args(self) -> dict:
        """Keyword arguments of every `predict` call (see the module docstring on `rect`)."""
        return {
            "imgsz": int(self.imgsz),
            "conf": float(self.conf),
            "iou": float(self.iou),
            "max_det": int(self.max_det),
            "classes": self.class_ids,
            "device": self.device,
            "quantize": 16 if self.half else None,
            "rect": self.batch_size == 1,
            "batch": self.batch_size,
            "verbose": False,
            "save": False,
        }

    def detect(self, images: list[Image.Image]) -> list[Detections]:
        out: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            chunk = [to_bgr(im) for im in images[start : start + self.batch_size]]
            out.extend(self.detect_arrays(chunk))
        return out

    def detect_arrays(self, arrays: list[np.ndarray]) -> list[Detections]:
        """Boxes for at most `batch_size` BGR arrays (padded to a full batch when batching)."""
        n = len(arrays)
        if n == 0:
            return []
        if self.batch_size > 1 and n < self.batch_size:
            arrays = arrays + [self._blank] * (self.batch_size - n)
        results = self.model.predict(arrays, **self.predict_args())
        return [self._to_detections(r) for r in results[:n]]

    def _to_detections(self, result) -> Detections:
        h, w = result.orig_shape
        data = result.boxes.data.detach().float().cpu().numpy().astype(np.float64)
        if data.size == 0:
            return Detections(source=self.name)
        boxes = data[:, :4] / np.array([w, h, w, h], dtype=np.float64)
        names = result.names
        return Detections(
            boxes=boxes.tolist(),
            scores=data[:, 4].tolist(),
            labels=[str(names[int(c)]) for c in data[:, 5]],
            source=self.name,
        )
