"""Hybrid: yolo's boxes, saliency where yolo finds nothing; the sidecar says which."""

import json

import numpy as np
import pytest
from PIL import Image

from cirflow.boxes.detectors import make_detector, method_config
from cirflow.boxes.hybrid import HybridDetector
from cirflow.boxes.postfilter import Detections
from cirflow.boxes.shards import BoxMethod, ShardSpec, merge_results, run_shard
from cirflow.boxes.stats import stats_for_file
from cirflow.data.box_format import sidecar_path
from cirflow.errors import CirflowError

POSTFILTER = {"min_area": 0.002, "max_boxes": 10}
RANDOM_YOLO = {"weights": "yolov8n.yaml", "conf": 1e-5, "imgsz": 320, "max_det": 20}


class StubYolo:
    """Stands in for YoloDetector: returns the boxes given per image size."""

    name = "yolo"
    batch_size = 2

    def __init__(self, boxes_by_width: dict[int, list]):
        self.boxes_by_width = boxes_by_width
        self.calls = 0

    def detect(self, images):
        self.calls += 1
        out = []
        for img in images:
            boxes = self.boxes_by_width.get(img.size[0], [])
            out.append(Detections(boxes, [0.9] * len(boxes), ["car"] * len(boxes), source="yolo"))
        return out


def square_scene(w: int, h: int = 120) -> Image.Image:
    arr = (np.random.default_rng(w).normal(110, 6, (h, w, 3))).clip(0, 255).astype(np.uint8)
    arr[30:80, 20:70] = (230, 30, 30)
    arr[20:50, w - 60 : w - 20] = (30, 30, 230)
    return Image.fromarray(arr)


def test_fallback_only_where_yolo_finds_nothing():
    stub = StubYolo(
        {
            200: [[0.1, 0.1, 0.6, 0.7]],  # a real find
            210: [],  # nothing: fall back
            220: [[0.5, 0.5, 0.52, 0.52]],  # only a box below min_yolo_area: fall back
        }
    )
    hybrid = HybridDetector(
        {"saliency": {}, "hybrid": {"fallback_regions": 1, "min_yolo_area": 0.002}}, yolo=stub
    )
    assert hybrid.batch_size == 2
    images = [square_scene(200), square_scene(210), square_scene(220)]
    found, empty, tiny = hybrid.detect(images)
    assert found.source == "yolo" and found.boxes == [[0.1, 0.1, 0.6, 0.7]]
    assert found.labels == ["car"]
    for fallback in (empty, tiny):
        assert fallback.source == "saliency"
        assert len(fallback.boxes) == 1  # fallback_regions
        assert fallback.labels == ["salient"]
    assert stub.calls == 1, "yolo runs once per batch"


def test_min_yolo_area_zero_keeps_any_yolo_box():
    stub = StubYolo({220: [[0.5, 0.5, 0.52, 0.52]]})
    hybrid = HybridDetector({"hybrid": {"min_yolo_area": 0.0}}, yolo=stub)
    assert hybrid.detect([square_scene(220)])[0].source == "yolo"


def test_unknown_or_bad_hybrid_keys():
    with pytest.raises(CirflowError, match="unknown key.*fallback"):
        HybridDetector({"hybrid": {"fallbacks": 2}}, yolo=StubYolo({}))
    with pytest.raises(CirflowError, match="fallback_regions"):
        HybridDetector({"hybrid": {"fallback_regions": 0}}, yolo=StubYolo({}))


def test_make_detector_builds_hybrid_from_its_config_subtree():
    boxes_cfg = {
        "yolo": RANDOM_YOLO,
        "saliency": {"max_regions": 5},
        "hybrid": {"fallback_regions": 2},
        "postfilter": POSTFILTER,
    }
    cfg = method_config(boxes_cfg, "hybrid")
    assert set(cfg) == {"yolo", "saliency", "hybrid"}
    det = make_detector("hybrid", cfg)
    assert det.saliency.max_regions == 2 and det.yolo.conf == 1e-5


@pytest.mark.parametrize(("conf", "source"), [(1e-5, "yolo"), (0.5, "saliency")])
def test_hybrid_shard_records_the_source_of_each_image(tmp_path, conf, source):
    root = tmp_path / "ds"
    (root / "dev").mkdir(parents=True)
    split = {}
    for w in (200, 240, 280):
        square_scene(w).save(root / "dev" / f"img-{w}.png")
        split[f"img-{w}"] = f"./dev/img-{w}.png"
    (root / "cirr/image_splits").mkdir(parents=True)
    (root / "cirr/image_splits/split.rc2.val.json").write_text(json.dumps(split))
    cfg = {"yolo": {**RANDOM_YOLO, "conf": conf}, "saliency": {}, "hybrid": {}}
    hybrid = BoxMethod("hybrid", cfg, POSTFILTER)
    result = run_shard(root, ShardSpec("val", 0, 1), hybrid, None, progress=False)
    out = tmp_path / "val.json"
    merge_results([result], out, sidecar_path(out))
    meta = json.loads(sidecar_path(out).read_text())
    assert {m["source"] for m in meta["images"].values()} == {source}
    stats = stats_for_file(out)
    assert stats["sources"] == {source: 3}
    if source == "saliency":
        assert all(set(m["labels"]) <= {"salient"} for m in meta["images"].values())
