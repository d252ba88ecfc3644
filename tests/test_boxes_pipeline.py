"""Saliency boxes, the post-filter, shards, merging and bad images."""

import json

import numpy as np
import pytest
from PIL import Image

from cirflow.boxes.postfilter import Detections, postfilter
from cirflow.boxes.saliency import SaliencyDetector
from cirflow.boxes.shards import BoxMethod, ShardSpec, merge_shards, run_shard
from cirflow.data.box_format import box_problem, load_boxes
from cirflow.data.sharding import shard_names
from cirflow.errors import CirflowError

SALIENCY = {"saliency": {}}
POSTFILTER = {"min_area": 0.002, "max_boxes": 10}
METHOD = BoxMethod("saliency", SALIENCY, POSTFILTER)


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def test_saliency_finds_large_isolated_shape():
    rng = np.random.default_rng(1)
    w, h = 300, 200
    arr = (rng.normal(120, 8, (h, w, 3))).clip(0, 255).astype(np.uint8)
    x1, y1, x2, y2 = 170, 60, 250, 140
    arr[y1:y2, x1:x2] = (20, 200, 40)
    det = postfilter(SaliencyDetector().detect_one(Image.fromarray(arr)), **POSTFILTER)
    truth = [x1 / w, y1 / h, x2 / w, y2 / h]
    assert det.boxes, "no box found"
    assert max(iou(b, truth) for b in det.boxes) >= 0.5


def test_saliency_on_flat_image_gives_no_box():
    det = SaliencyDetector().detect_one(Image.new("RGB", (64, 48), (90, 90, 90)))
    assert det.boxes == []


def test_postfilter_clips_filters_sorts_caps():
    det = Detections(
        boxes=[
            [-0.2, 0.1, 0.3, 0.4],
            [0.5, 0.5, 0.51, 0.51],
            [0.1, 0.1, 0.9, 0.9],
            [0.2, 0.2, 0.6, 1.3],
        ],
        scores=[0.9, 0.8, 0.7, 0.6],
        labels=["a", "b", "c", "d"],
    )
    out = postfilter(det, min_area=0.001, max_boxes=2)
    assert out.boxes == [[0.1, 0.1, 0.9, 0.9], [0.2, 0.2, 0.6, 1.0]]
    assert out.labels == ["c", "d"]
    assert all(box_problem(b) is None for b in out.boxes)


@pytest.mark.parametrize(
    ("box", "problem"),
    [
        ([0.1, 0.1, 0.5], "4 numbers"),
        ([0.5, 0.1, 0.2, 0.4], "inverted"),
        ([10, 20, 200, 300], "pixel coordinates"),
        ([0.1, float("nan"), 0.2, 0.3], "NaN"),
        ([0.1, 0.1, 0.2, 0.2], None),
    ],
)
def test_box_problem(box, problem):
    found = box_problem(box)
    assert (found is None) if problem is None else (problem in found)


def test_load_boxes_names_file_image_and_box(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"img-a": [[0.1, 0.1, 0.2, 0.2]], "img-b": [[3, 4, 50, 60]]}))
    with pytest.raises(CirflowError, match=r"b\.json: image 'img-b', box #0 .*pixel coordinates"):
        load_boxes(path)


def test_shard_selection_partitions_sorted_names():
    names = [f"n{i:02d}" for i in range(10)]
    parts = [shard_names(names[::-1], i, 3) for i in range(3)]
    assert sorted(sum(parts, [])) == names
    assert parts[0] == ["n00", "n03", "n06", "n09"]
    assert shard_names(names, 1, 2, limit=4) == ["n01", "n03"]
    with pytest.raises(CirflowError):
        shard_names(names, 3, 3)


def _run(root, split, n, out_dir, max_images=None):
    paths = []
    for i in range(n):
        path = out_dir / f"shard-{i}-of-{n}.json"
        run_shard(root, ShardSpec(split, i, n, max_images), METHOD, path, progress=False)
        paths.append(path)
    boxes, meta = out_dir / f"{split}.json", out_dir / f"{split}.meta.json"
    merge_shards(paths, boxes, meta)
    return boxes.read_bytes(), meta.read_bytes()


def test_one_vs_three_shards_byte_identical(mini_cirr, tmp_path):
    one = _run(mini_cirr, "train", 1, tmp_path / "one")
    three = _run(mini_cirr, "train", 3, tmp_path / "three")
    assert one == three
    boxes = json.loads(one[0])
    assert len(boxes) == 9 and sum(bool(v) for v in boxes.values()) >= 7
    for image_boxes in boxes.values():
        areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in image_boxes]
        assert areas == sorted(areas, reverse=True)
        assert all(box_problem(b) is None for b in image_boxes)


def test_max_images_caps_the_split(mini_cirr, tmp_path):
    boxes, _ = _run(mini_cirr, "val", 2, tmp_path / "capped", max_images=5)
    assert list(json.loads(boxes)) == sorted(json.loads(boxes))[:5]
    assert len(json.loads(boxes)) == 5


def test_bad_images_are_recorded_not_fatal(mini_cirr, tmp_path):
    split = json.loads((mini_cirr / "cirr/image_splits/split.rc2.val.json").read_text())
    names = sorted(split)
    (mini_cirr / split[names[0]]).write_bytes(b"")  # zero bytes
    data = (mini_cirr / split[names[1]]).read_bytes()
    (mini_cirr / split[names[1]]).write_bytes(data[: len(data) // 2])  # truncated
    (mini_cirr / split[names[2]]).write_bytes(b"this is not a png at all")  # corrupt
    (mini_cirr / split[names[3]]).unlink()  # missing
    boxes_bytes, meta_bytes = _run(mini_cirr, "val", 2, tmp_path / "bad")
    boxes, meta = json.loads(boxes_bytes), json.loads(meta_bytes)
    errors = {e["image"]: e["error"] for e in meta["errors"]}
    assert set(errors) == set(names[:4])
    assert "empty" in errors[names[0]]
    assert "file not found" in errors[names[3]]
    assert all(boxes[n] == [] for n in names[:4])
    assert all(n in meta["images"] for n in names[4:])
    assert meta["images"][names[4]]["size"][0] >= 120


def test_merge_refuses_mixed_shards(mini_cirr, tmp_path):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    run_shard(mini_cirr, ShardSpec("val", 0, 2), METHOD, a, progress=False)
    run_shard(mini_cirr, ShardSpec("test1", 1, 2), METHOD, b, progress=False)
    with pytest.raises(CirflowError, match="refusing to mix"):
        merge_shards([a, b], tmp_path / "m.json", tmp_path / "m.meta.json")
    assert not (tmp_path / "m.json").exists()


def test_failed_run_leaves_previous_output_intact(mini_cirr, tmp_path, monkeypatch):
    out = tmp_path / "shard.json"
    out.write_text("previous result")

    def explode(self, images):
        raise RuntimeError("detector crashed")

    monkeypatch.setattr(SaliencyDetector, "detect", explode)
    with pytest.raises(RuntimeError):
        run_shard(mini_cirr, ShardSpec("val", 0, 1), METHOD, out, progress=False)
    assert out.read_text() == "previous result"
    assert not list(tmp_path.glob(".shard.json.*")), "a temporary file was left behind"


def test_truncated_image_reported_even_after_lavis_import(tmp_path):
    from PIL import ImageFile

    from cirflow.data.images import read_image

    path = tmp_path / "t.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what `import lavis` does
    try:
        assert read_image(path).error is not None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
