"""The yolo method through the real ultralytics path, offline.

The network is built from ultralytics' `yolov8n.yaml` (seeded random weights; nothing is
downloaded). Its scores are ~1e-4, so a tiny `conf` makes boxes come out.
"""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cirflow.boxes.shards import BoxMethod, ShardSpec, merge_results, merge_shards, run_shard
from cirflow.data.box_format import box_area, box_problem, load_boxes, sidecar_path
from cirflow.errors import CirflowError

pytest.importorskip("ultralytics")
from ultralytics.utils import ASSETS  # noqa: E402

from cirflow.boxes.yolo import YoloDetector, resolve_device, resolve_weights  # noqa: E402

RANDOM_YOLO = {"weights": "yolov8n.yaml", "conf": 1e-5, "imgsz": 320, "max_det": 50}
POSTFILTER = {"min_area": 0.002, "max_boxes": 5}


def write_dataset(root: Path, images: dict[str, Image.Image | Path]) -> Path:
    """A CIRR-layout dataset whose val split holds `images` (name -> image or file to copy)."""
    split = {}
    (root / "dev").mkdir(parents=True, exist_ok=True)
    for name, img in images.items():
        if isinstance(img, Path):
            rel = f"./dev/{name}{img.suffix}"
            shutil.copyfile(img, root / rel)
        else:
            rel = f"./dev/{name}.png"
            img.save(root / rel)
        split[name] = rel
    (root / "cirr/image_splits").mkdir(parents=True, exist_ok=True)
    (root / "cirr/image_splits/split.rc2.val.json").write_text(json.dumps(split))
    return root


@pytest.fixture(scope="module")
def photo_dataset(tmp_path_factory) -> Path:
    """The photos shipped inside ultralytics plus demo-like scenes of several shapes."""
    rng = np.random.default_rng(0)
    images: dict[str, Image.Image | Path] = {
        "photo-bus": ASSETS / "bus.jpg",
        "photo-zidane": ASSETS / "zidane.jpg",
    }
    for i, (w, h) in enumerate([(320, 200), (200, 300), (256, 256), (300, 180), (180, 240)]):
        arr = (rng.random((h, w, 3)) * 50 + 80).astype(np.uint8)
        arr[h // 4 : h // 2, w // 3 : 2 * w // 3] = (220, 40, 40)
        images[f"scene-{i}"] = Image.fromarray(arr)
    return write_dataset(tmp_path_factory.mktemp("yolo_photos"), images)


def check_box_file(path: Path, max_boxes: int) -> dict:
    boxes = load_boxes(path)  # validates: normalised, finite, x1 < x2, y1 < y2
    for name, image_boxes in boxes.items():
        assert len(image_boxes) <= max_boxes, name
        areas = [box_area(b) for b in image_boxes]
        assert areas == sorted(areas, reverse=True), f"{name}: not sorted by area"
        assert all(box_problem(b) is None for b in image_boxes)
    return boxes


def test_yolo_shard_on_photos_gives_valid_capped_sorted_boxes(photo_dataset, tmp_path):
    yolo = BoxMethod("yolo", {"yolo": RANDOM_YOLO}, POSTFILTER)
    result = run_shard(photo_dataset, ShardSpec("val", 0, 1), yolo, None, progress=False)
    out = tmp_path / "val.json"
    merge_results([result], out, sidecar_path(out))
    boxes = check_box_file(out, POSTFILTER["max_boxes"])
    assert set(boxes) == {"photo-bus", "photo-zidane"} | {f"scene-{i}" for i in range(5)}
    assert sum(len(b) for b in boxes.values()) > 0, "a tiny conf must let boxes out"
    meta = json.loads(sidecar_path(out).read_text())
    bus = meta["images"]["photo-bus"]
    assert bus["size"] == list(Image.open(ASSETS / "bus.jpg").size)
    assert bus["source"] == "yolo"
    for m in meta["images"].values():
        assert len(m["scores"]) == len(m["labels"])
        assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in m["scores"])
        assert all(isinstance(label, str) for label in m["labels"])
    assert meta["errors"] == []


@pytest.mark.parametrize("batch_size", [1, 3])
def test_merged_yolo_boxes_identical_for_1_and_2_shards(photo_dataset, tmp_path, batch_size):
    cfg = {"yolo": {**RANDOM_YOLO, "batch_size": batch_size}}
    yolo = BoxMethod("yolo", cfg, POSTFILTER)
    one = run_shard(photo_dataset, ShardSpec("val", 0, 1), yolo, None, progress=False)
    two = [
        run_shard(photo_dataset, ShardSpec("val", i, 2), yolo, tmp_path / f"s{i}.json")
        for i in range(2)
    ]
    merge_results([one], tmp_path / "one.json", tmp_path / "one.meta.json")
    merge_shards(
        [tmp_path / "s0.json", tmp_path / "s1.json"],
        tmp_path / "two.json",
        tmp_path / "two.meta.json",
    )
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()
    assert (tmp_path / "one.meta.json").read_bytes() == (tmp_path / "two.meta.json").read_bytes()
    assert sum(len(b) for b in two[0]["boxes"].values()) > 0


def test_batched_predict_pads_to_a_fixed_square_batch():
    det = YoloDetector(**{**RANDOM_YOLO, "batch_size": 4})
    args = det.predict_args()
    assert args["rect"] is False and args["imgsz"] == 320
    img = Image.open(ASSETS / "bus.jpg").convert("RGB")
    alone = det.detect([img])[0]
    with_others = det.detect([Image.new("RGB", (50, 400), (9, 9, 9)), img, img.rotate(90)])[1]
    assert alone.boxes == with_others.boxes and alone.scores == with_others.scores
    single = YoloDetector(**{**RANDOM_YOLO, "batch_size": 1})
    assert single.predict_args()["rect"] is True


def test_missing_weights_offline_is_a_clear_error_within_seconds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./yolov8n.pt, no ./.cache/yolo/yolov8n.pt here
    start = time.perf_counter()
    with pytest.raises(CirflowError) as info:
        YoloDetector(weights="yolov8n.pt")
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "yolov8n.pt" in message and "offline" in message
    assert "cirflow weights fetch --yolo yolov8n.pt" in message
    assert "boxes.yolo.weights" in message
    with pytest.raises(CirflowError, match=r"not found: .*nowhere/mine\.pt"):
        resolve_weights(tmp_path / "nowhere" / "mine.pt")


def test_weights_found_where_cirflow_weights_fetch_puts_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fetched = tmp_path / ".cache" / "yolo" / "yolov8n.pt"
    fetched.parent.mkdir(parents=True)
    fetched.write_bytes(b"not really weights")
    assert Path(resolve_weights("yolov8n.pt")).resolve() == fetched.resolve()
    with pytest.raises(CirflowError, match="cannot load YOLO weights"):
        YoloDetector(weights="yolov8n.pt")


def test_online_the_name_is_downloaded_the_ultralytics_way(tmp_path, monkeypatch):
    import ultralytics.utils
    import ultralytics.utils.downloads

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YOLO_OFFLINE", "0")
    monkeypatch.setattr(ultralytics.utils, "ONLINE", True)
    asked = []

    def fake_download(name):
        asked.append(name)
        Path(name).write_bytes(b"weights")
        return name

    monkeypatch.setattr(ultralytics.utils.downloads, "attempt_download_asset", fake_download)
    assert resolve_weights("yolov8s.pt") == "yolov8s.pt" and asked == ["yolov8s.pt"]
    assert resolve_weights("yolov8s.pt") == "yolov8s.pt" and asked == ["yolov8s.pt"]

    def failing_download(name):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(ultralytics.utils.downloads, "attempt_download_asset", failing_download)
    with pytest.raises(CirflowError, match="could not download YOLO weights 'yolov8m.pt'"):
        resolve_weights("yolov8m.pt")


def test_device_and_precision_are_chosen_automatically():
    import torch

    det = YoloDetector(**RANDOM_YOLO)
    if torch.cuda.is_available():
        assert det.device == "cuda:0" and det.half is True and det.batch_size == 32
        assert det.predict_args()["quantize"] == 16
    else:
        assert det.device == "cpu" and det.half is False and det.batch_size == 1
        assert det.predict_args()["quantize"] is None
        with pytest.raises(CirflowError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(CirflowError, match="not understood"):
        resolve_device("tpu")


def test_classes_by_id_and_name(tmp_path):
    det = YoloDetector(**{**RANDOM_YOLO, "classes": [3, "1"]})
    assert det.class_ids == [1, 3]
    with pytest.raises(CirflowError, match="not a class"):
        YoloDetector(**{**RANDOM_YOLO, "classes": ["zebra crossing"]})
    det = YoloDetector(**{**RANDOM_YOLO, "classes": [2]})
    img = Image.open(ASSETS / "zidane.jpg").convert("RGB")
    assert set(det.detect([img])[0].labels) <= {"2"}


@pytest.mark.parametrize(
    ("key", "value"),
    [("conf", 1.5), ("iou", 0.0), ("imgsz", 8), ("max_det", 0), ("batch_size", 0), ("half", "yes")],
)
def test_bad_settings_name_the_key(key, value):
    with pytest.raises(CirflowError, match=f"boxes.yolo.{key}"):
        YoloDetector(**{**RANDOM_YOLO, key: value})
