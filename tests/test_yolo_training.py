"""The demo detector: ultralytics dataset from the demo's ground truth, a (tiny) real training run,
and the trained weights used by the yolo method; the workflow wiring of the preset."""

import json

import pytest
import yaml
from PIL import Image

from cirflow.boxes.detector_training import train_detector, write_yolo_dataset
from cirflow.data.demo import DemoSpec, generate_demo

pytest.importorskip("ultralytics")


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate_demo(
        root, DemoSpec(seed=0, train_triplets=16, val_triplets=8, test1_triplets=4), workers=1
    )
    return root


def test_yolo_dataset_labels_are_the_ground_truth(tiny_demo, tmp_path):
    data_yaml = write_yolo_dataset(
        tiny_demo, tiny_demo / "boxes_gt.json", tmp_path / "yds", max_images=10, val_images=3
    )
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == {0: "object"} and data["train"] == "images/train"
    gt = json.loads((tiny_demo / "boxes_gt.json").read_text())
    train_images = sorted((tmp_path / "yds/images/train").iterdir())
    assert len(train_images) == 10
    assert len(list((tmp_path / "yds/images/val").iterdir())) == 3
    for img in train_images:
        assert img.name.startswith("train-")
        w, h = Image.open(img).size
        assert w > 0 and h > 0
        lines = (tmp_path / "yds/labels/train" / f"{img.stem}.txt").read_text().split()
        values = [float(v) for v in lines]
        assert len(values) == 5 * len(gt[img.stem])
        for k, (x1, y1, x2, y2) in enumerate(gt[img.stem]):
            c, cx, cy, bw, bh = values[5 * k : 5 * k + 5]
            assert c == 0
            assert cx == pytest.approx((x1 + x2) / 2, abs=1e-6)
            assert bw == pytest.approx(x2 - x1, abs=1e-6)
            assert cy == pytest.approx((y1 + y2) / 2, abs=1e-6)
            assert bh == pytest.approx(y2 - y1, abs=1e-6)


def test_train_detector_writes_weights_the_yolo_method_loads(tiny_demo, tmp_path):
    from cirflow.boxes.yolo import YoloDetector

    weights = tmp_path / "detector.pt"
    summary = train_detector(
        tiny_demo,
        tiny_demo / "boxes_gt.json",
        tmp_path / "out",
        weights,
        tmp_path / "summary.json",
        threads=2,
        epochs=1,
        imgsz=64,
        batch=8,
        max_images=16,
        val_images=4,
    )
    assert weights.is_file() and (tmp_path / "summary.json").is_file()
    assert summary["settings"]["epochs"] == 1 and summary["last_epoch"]["epoch"] == 1
    det = YoloDetector(weights=str(weights), conf=0.001, imgsz=64)
    assert dict(det.model.names) == {0: "object"}
    img = Image.open(next((tiny_demo / "dev").glob("*.png"))).convert("RGB")
    assert len(det.detect([img])) == 1


def test_preset_wires_the_trained_detector_into_detection(tmp_path, repo):
    from conftest import make_workflow_copy, planned_jobs

    snakefile = (repo / "Snakefile").read_text()
    if "rules/detector.smk" not in snakefile:
        pytest.skip("rules/detector.smk is not included in the Snakefile yet")
    preset = yaml.safe_load((repo / "config/presets/yolo_demo.yaml").read_text())
    work = make_workflow_copy(tmp_path / "wf", {"boxes": preset["boxes"]})
    jobs = planned_jobs(work, "--until", "detect_shard")
    assert jobs.get("train_detector") == 1
    assert jobs.get("detect_shard", 0) >= 3 * 3  # three methods, every split
    # Without the preset, the detector is never trained.
    work2 = make_workflow_copy(tmp_path / "wf2", {"boxes": {"methods": ["saliency"]}})
    assert "train_detector" not in planned_jobs(work2)
