"""The seed's command-line habits: `cirflow boxes generate` and `cirflow boxes stats`."""

import json

from cirflow.cli import main


def test_generate_one_split_like_the_seed(mini_cirr, tmp_path, capsys):
    out = tmp_path / "x.json"
    rc = main(
        [
            "boxes",
            "generate",
            "--cirr-root",
            str(mini_cirr),
            "--method",
            "saliency",
            "--split",
            "train",
            "--max-images",
            "5",
            "--output",
            str(out),
        ]
    )
    assert rc == 0
    boxes = json.loads(out.read_text())
    assert len(boxes) == 5
    assert (tmp_path / "x.meta.json").exists()
    assert "Total images: 5" in capsys.readouterr().out


def test_generate_all_splits(mini_cirr, tmp_path):
    rc = main(
        [
            "boxes",
            "generate",
            "--cirr-root",
            str(mini_cirr),
            "--all-splits",
            "--output",
            str(tmp_path / "out" / "boxes_{split}.json"),
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("boxes_*[!a].json")) == [
        "boxes_test1.json",
        "boxes_train.json",
        "boxes_val.json",
    ]


def test_stats_on_the_seeds_full_file_match_an_independent_count(shared_cirr, tmp_path, capsys):
    path = shared_cirr / "seed_boxes_yolo_train_full.json"
    raw = json.loads(path.read_text())
    images = len(raw)
    with_boxes = sum(1 for v in raw.values() if len(v) > 0)
    total = sum(len(v) for v in raw.values())
    rc = main(["boxes", "stats", str(path), "--json", str(tmp_path / "s.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"Total images: {images}" in out
    assert f"Images with boxes: {with_boxes} ({100 * with_boxes / images:.1f}%)" in out
    assert f"Total boxes: {total}" in out
    assert f"Avg boxes per image: {total / images:.2f}" in out
    stats = json.loads((tmp_path / "s.json").read_text())
    assert (stats["images"], stats["images_with_boxes"], stats["total_boxes"]) == (
        images,
        with_boxes,
        total,
    )
    assert stats["invalid_boxes"] == 0
    assert sum(int(k) * v for k, v in stats["boxes_per_image_hist"].items()) == total
    assert sum(stats["area_hist"]["counts"]) == total


def test_stats_on_the_shipped_seed_sample(test_data, capsys):
    assert main(["boxes", "stats", str(test_data / "seed_boxes_yolo_train_100.json")]) == 0
    assert "Total images: 100" in capsys.readouterr().out


def test_stats_counts_invalid_boxes(tmp_path, capsys):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"a": [[0.1, 0.1, 0.5, 0.5], [5, 5, 50, 50]], "b": []}))
    assert main(["boxes", "stats", str(path), "--print-json"]) == 0
    out = capsys.readouterr().out
    assert "Invalid boxes: 1" in out


def test_bad_box_file_is_a_clean_error(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    assert main(["boxes", "stats", str(path)]) == 2
    assert "broken.json" in capsys.readouterr().err


def test_missing_root_is_a_clean_error(tmp_path, capsys):
    rc = main(
        [
            "boxes",
            "generate",
            "--cirr-root",
            str(tmp_path / "none"),
            "--split",
            "val",
            "--output",
            str(tmp_path / "o.json"),
        ]
    )
    assert rc == 2
    assert "dataset root not found" in capsys.readouterr().err
