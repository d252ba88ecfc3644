"""Any image: corrupt, zero-byte, truncated JPEG/PNG, grayscale, RGBA, 16-bit, palette,
EXIF-rotated, 1x1 and 8000x8000, through every box method.

The run completes; each unreadable image is listed with its reason and maps to []; readable
odd images get boxes normalised to the image as a viewer shows it (EXIF orientation applied).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cirflow.boxes.postfilter import postfilter
from cirflow.boxes.saliency import SaliencyDetector
from cirflow.boxes.shards import BoxMethod, ShardSpec, merge_results, run_shard
from cirflow.data.box_format import load_boxes, sidecar_path
from cirflow.data.images import read_image

POSTFILTER = {"min_area": 0.002, "max_boxes": 10}
RANDOM_YOLO = {"weights": "yolov8n.yaml", "conf": 1e-5, "imgsz": 320, "max_det": 20}
# Stored 200x120 (landscape) with a red square at x 10..60, y 35..85; EXIF orientation 6 shows
# it rotated 90 degrees clockwise: 120x200 (portrait), the square at x 35..85, y 10..60.
EXIF_DISPLAYED_BOX = [35 / 120, 10 / 200, 85 / 120, 60 / 200]
BIG_BOX = [2000 / 8000, 1000 / 8000, 3200 / 8000, 2200 / 8000]
UNREADABLE = {
    "odd-corrupt": "cannot decode",
    "odd-zero": "empty file",
    "odd-trunc-jpg": "truncated",
    "odd-trunc-png": "truncated",
}


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def scene(w=200, h=120, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = (rng.normal(110, 6, (h, w, 3))).clip(0, 255).astype(np.uint8)
    arr[35:85, 10:60] = (230, 30, 30)
    return arr


def write_odd_images(folder: Path) -> dict[str, str]:
    """name -> file name of every odd kind."""
    folder.mkdir(parents=True, exist_ok=True)
    arr = scene()
    files = {}

    def save(name, fname, img, **kw):
        img.save(folder / fname, **kw)
        files[name] = fname

    save("odd-jpg", "odd-jpg.jpg", Image.fromarray(arr), quality=90)
    save("odd-gray", "odd-gray.png", Image.fromarray(arr).convert("L"))
    rgba = np.dstack([arr, np.full(arr.shape[:2], 200, np.uint8)])
    save("odd-rgba", "odd-rgba.png", Image.fromarray(rgba, mode="RGBA"))
    deep = (arr[:, :, 0].astype(np.uint16) * 257).astype(np.uint16)
    save("odd-16bit", "odd-16bit.png", Image.fromarray(deep))
    save("odd-palette", "odd-palette.png", Image.fromarray(arr).quantize(colors=32))
    exif_img = Image.fromarray(arr)
    exif = exif_img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    save("odd-exif", "odd-exif.jpg", exif_img, exif=exif, quality=95)
    save("odd-1x1", "odd-1x1.png", Image.new("RGB", (1, 1), (200, 10, 10)))
    patch = np.random.default_rng(0).normal(100, 6, (250, 250, 3)).clip(0, 255)
    big = np.tile(patch.astype(np.uint8), (32, 32, 1))
    big[1000:2200, 2000:3200] = (240, 20, 20)
    save("odd-8000", "odd-8000.jpg", Image.fromarray(big), quality=80)
    # Unreadable ones.
    good_png = folder / "odd-gray.png"
    good_jpg = folder / "odd-jpg.jpg"
    (folder / "odd-corrupt.jpg").write_bytes(np.random.default_rng(1).bytes(4000))
    (folder / "odd-zero.png").write_bytes(b"")
    (folder / "odd-trunc-jpg.jpg").write_bytes(good_jpg.read_bytes()[:800])
    (folder / "odd-trunc-png.png").write_bytes(good_png.read_bytes()[:300])
    files.update(
        {
            "odd-corrupt": "odd-corrupt.jpg",
            "odd-zero": "odd-zero.png",
            "odd-trunc-jpg": "odd-trunc-jpg.jpg",
            "odd-trunc-png": "odd-trunc-png.png",
        }
    )
    return files


@pytest.fixture(scope="module")
def odd_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("odd")
    files = write_odd_images(root / "dev")
    # The same scene as odd-exif, rotated by us and saved without EXIF: the reference.
    Image.fromarray(scene()).transpose(Image.Transpose.ROTATE_270).save(
        root / "dev" / "upright.png"
    )
    files["upright"] = "upright.png"
    (root / "cirr/image_splits").mkdir(parents=True)
    split = {name: f"./dev/{fname}" for name, fname in files.items()}
    (root / "cirr/image_splits/split.rc2.val.json").write_text(json.dumps(split))
    return root


def test_read_image_on_every_kind(odd_dataset):
    folder = odd_dataset / "dev"
    for name, reason in UNREADABLE.items():
        (path,) = folder.glob(f"{name}.*")
        read = read_image(path)
        assert not read.ok and reason in read.error, (name, read.error)
    for name in ("odd-jpg", "odd-gray", "odd-rgba", "odd-16bit", "odd-palette", "odd-exif"):
        (path,) = folder.glob(f"{name}.*")
        read = read_image(path)
        assert read.ok and read.image.mode == "RGB", name
    assert read_image(folder / "odd-exif.jpg").size == (120, 200)  # as displayed
    deep = np.asarray(read_image(folder / "odd-16bit.png").image)
    assert 150 < deep.max() <= 255 and deep.min() > 50, "16-bit must be scaled, not clipped"
    assert read_image(folder / "odd-1x1.png").size == (1, 1)
    assert read_image(folder / "odd-8000.jpg").size == (8000, 8000)


def check_run(root: Path, tmp_path: Path, method: str, cfg: dict) -> tuple[dict, dict]:
    box_method = BoxMethod(method, cfg, POSTFILTER)
    result = run_shard(root, ShardSpec("val", 0, 1), box_method, None, progress=False)
    out = tmp_path / f"{method}.json"
    merge_results([result], out, sidecar_path(out))
    boxes = load_boxes(out)  # every box valid and normalised
    meta = json.loads(sidecar_path(out).read_text())
    errors = {e["image"]: e["error"] for e in meta["errors"]}
    assert set(errors) == set(UNREADABLE)
    for name, reason in UNREADABLE.items():
        assert reason in errors[name]
        assert boxes[name] == []
    assert len(boxes) == len(UNREADABLE) + 9
    assert meta["images"]["odd-exif"]["size"] == [120, 200]
    assert meta["images"]["odd-8000"]["size"] == [8000, 8000]
    assert meta["images"]["odd-1x1"]["size"] == [1, 1]
    return boxes, meta


def test_saliency_on_odd_images(odd_dataset, tmp_path):
    boxes, _ = check_run(odd_dataset, tmp_path, "saliency", {"saliency": {}})
    # Orientation: the box is where a viewer sees the square, not where the file stores it.
    assert max(iou(b, EXIF_DISPLAYED_BOX) for b in boxes["odd-exif"]) >= 0.5
    # Saliency boxes of a large object are loose (the map is 128 px wide): check that the best
    # box sits on the square of the 8000x8000 image.
    best = max(boxes["odd-8000"], key=lambda b: iou(b, BIG_BOX))
    cx, cy = (best[0] + best[2]) / 2, (best[1] + best[3]) / 2
    assert BIG_BOX[0] < cx < BIG_BOX[2] and BIG_BOX[1] < cy < BIG_BOX[3]
    assert iou(best, BIG_BOX) >= 0.3
    for name in ("odd-jpg", "odd-gray", "odd-rgba", "odd-palette", "odd-16bit"):
        assert boxes[name], f"{name}: the square should be found"


def test_yolo_and_hybrid_on_odd_images(odd_dataset, tmp_path):
    boxes, meta = check_run(odd_dataset, tmp_path, "yolo", {"yolo": RANDOM_YOLO})
    # The network sees the displayed image: same boxes as for the same scene stored upright.
    assert boxes["odd-exif"] == boxes["upright"]
    assert meta["images"]["odd-exif"]["scores"] == meta["images"]["upright"]["scores"]
    hybrid_cfg = {
        "yolo": {**RANDOM_YOLO, "conf": 0.5},  # random weights never reach 0.5: all fall back
        "saliency": {},
        "hybrid": {"fallback_regions": 2},
    }
    boxes, meta = check_run(odd_dataset, tmp_path, "hybrid", hybrid_cfg)
    assert {m["source"] for m in meta["images"].values()} == {"saliency"}
    assert max(iou(b, EXIF_DISPLAYED_BOX) for b in boxes["odd-exif"]) >= 0.5
    assert all(len(b) <= 2 for b in boxes.values())


def test_saliency_detector_directly_on_tiny_and_thin_images():
    det = SaliencyDetector()
    for size in [(1, 1), (1, 300), (300, 1), (2, 2)]:
        out = postfilter(det.detect_one(Image.new("RGB", size, (9, 200, 9))), **POSTFILTER)
        assert out.boxes == []
