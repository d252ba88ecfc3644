"""Box quality on hand-made cases: recall/precision at IoU 0.5, mean best IoU, CLI, stats."""

import json

import pytest

from cirflow.boxes.quality import box_quality, iou_matrix, match_image, quality_for_files
from cirflow.boxes.stats import stats_for_file
from cirflow.cli import main
from cirflow.errors import CirflowError

A = [0.0, 0.0, 0.5, 0.5]
A_SHIFTED = [0.25, 0.0, 0.75, 0.5]  # IoU with A: 0.125 / 0.375 = 1/3
B = [0.5, 0.5, 1.0, 1.0]
B_NEAR = [0.5, 0.5, 1.0, 0.9]  # IoU with B: 0.2 / 0.25 = 0.8


def test_iou_matrix_by_hand():
    m = iou_matrix([A, B], [A, A_SHIFTED, B_NEAR])
    assert m.shape == (2, 3)
    assert m[0, 0] == pytest.approx(1.0)
    assert m[0, 1] == pytest.approx(1 / 3)
    assert m[0, 2] == pytest.approx(0.0)
    assert m[1, 2] == pytest.approx(0.8)
    assert iou_matrix([], [A]).shape == (0, 1)


def test_perfect_predictions():
    q = box_quality({"x": [A, B]}, {"x": [B, A]})
    assert q["recall"] == 1.0 and q["precision"] == 1.0 and q["mean_best_iou"] == 1.0
    assert q["matched"] == 2 and q["images_all_gt_found"] == 1


def test_one_to_one_matching_two_predictions_on_one_box():
    # Both predictions overlap A at IoU >= 0.5, but only one may match it.
    q = box_quality({"x": [A, [0.0, 0.0, 0.5, 0.4]]}, {"x": [A]})
    assert q["matched"] == 1
    assert q["recall"] == 1.0 and q["precision"] == 0.5


def test_greedy_matching_takes_the_best_pair_first():
    matched, best = match_image([A, B], [B_NEAR, A_SHIFTED], 0.5)
    assert matched == 1  # A_SHIFTED is below 0.5 with A
    assert best == pytest.approx([1 / 3, 0.8])


def test_threshold_and_mean_best_iou():
    gt = {"x": [A], "y": [B]}
    pred = {"x": [A_SHIFTED], "y": [B_NEAR]}
    q = box_quality(pred, gt)
    assert q["recall"] == 0.5 and q["precision"] == 0.5
    assert q["mean_best_iou"] == pytest.approx((1 / 3 + 0.8) / 2, abs=1e-4)
    assert box_quality(pred, gt, iou_threshold=0.3)["recall"] == 1.0


def test_missing_predictions_and_images_without_ground_truth():
    gt = {"x": [A], "y": [B], "other-split": [A]}
    pred = {"x": [], "y": [B], "no-gt": [A]}
    q = box_quality(pred, gt)
    assert q["images"] == 2 and q["images_without_gt"] == 1
    assert q["images_without_predictions"] == 1
    assert q["recall"] == 0.5 and q["precision"] == 1.0
    assert q["mean_best_iou"] == 0.5
    with pytest.raises(CirflowError, match="none of the 1 images of the prediction file"):
        box_quality({"z": [A]}, gt)


def test_quality_cli_and_stats_json(tmp_path, capsys):
    pred, gt = tmp_path / "val.json", tmp_path / "boxes_gt.json"
    pred.write_text(json.dumps({"x": [A_SHIFTED, B], "y": []}))
    gt.write_text(json.dumps({"x": [A, B], "y": [B]}))
    assert main(["boxes", "quality", str(pred), str(gt), "--json", str(tmp_path / "q.json")]) == 0
    printed = capsys.readouterr().out
    assert "Recall@0.5: 33.3%" in printed and "Precision@0.5: 50.0%" in printed
    q = json.loads((tmp_path / "q.json").read_text())
    assert q == quality_for_files(pred, gt)
    assert q["gt_boxes"] == 3 and q["pred_boxes"] == 2 and q["matched"] == 1
    stats = stats_for_file(pred, gt_path=gt)
    assert stats["quality"] == q
    assert "quality" not in stats_for_file(pred)


def test_bad_ground_truth_names_the_file(tmp_path):
    pred, gt = tmp_path / "p.json", tmp_path / "gt.json"
    pred.write_text(json.dumps({"x": [A]}))
    gt.write_text(json.dumps({"x": [[10, 10, 50, 50]]}))
    assert main(["boxes", "quality", str(pred), str(gt)]) == 2
