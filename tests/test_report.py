"""The box validation report: page content equals the stats, checks, sampling, CLI."""

from __future__ import annotations

import json
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import write_mini_cirr

from cirflow.boxes.stats import compute_stats
from cirflow.cli import main as cirflow_main
from cirflow.report.boxes import (
    MethodFiles,
    build_boxes_report,
    build_method_report,
    load_source,
    stats_entry_from_path,
)
from cirflow.report.boxes.checks import image_checks
from cirflow.report.boxes.grids import Sampling, select_groups
from cirflow.report.boxes.sources import infer_method, infer_split

SUMMARY_KEYS = (
    "images",
    "images_with_boxes",
    "pct_with_boxes",
    "total_boxes",
    "boxes_per_image",
    "invalid_boxes",
    "errors",
)


class PageParser(HTMLParser):
    """Collects the elements carrying data-* attributes (with their text) and every <img>."""

    def __init__(self):
        super().__init__()
        self.cells: list[tuple[dict, str]] = []
        self.images: list[dict] = []
        self.links: list[str] = []
        self._open: list[tuple[str, dict, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
            return
        if tag in ("a", "link") and "href" in attrs:
            self.links.append(attrs["href"])
        if tag in ("meta", "br", "input"):
            return
        self._open.append((tag, attrs, []))

    def handle_endtag(self, tag):
        while self._open:
            open_tag, attrs, text = self._open.pop()
            if self._open:
                self._open[-1][2].extend(text)
            if any(k.startswith("data-") for k in attrs):
                self.cells.append((attrs, "".join(text).strip()))
            if open_tag == tag:
                break

    def handle_data(self, data):
        if self._open:
            self._open[-1][2].append(data)


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def stat_cells(page: PageParser, source_id: str) -> dict[str, tuple[str, str]]:
    return {
        a["data-stat"]: (a.get("data-value"), text)
        for a, text in page.cells
        if a.get("data-source") == source_id and "data-stat" in a
    }


def expected_text(key: str, value) -> str:
    if key == "pct_with_boxes":
        return f"{value:.2f}%"
    if key == "boxes_per_image":
        return f"{value:.2f}"
    return f"{value:,}"


# --------------------------------------------------------------------------- fixture dataset


def _save_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))
    return path


@pytest.fixture
def report_inputs(tmp_path):
    return make_report_inputs(tmp_path)


def make_report_inputs(tmp_path: Path) -> dict:
    """A mini CIRR dataset and, per split (train, val), workflow-style box outputs holding every
    kind of problem: no boxes, an invalid box, unsorted boxes, duplicates, a whole-image box, an
    unreadable image recorded by detection and one that only fails when the report draws it."""
    root = tmp_path / "data"
    names = write_mini_cirr(root)
    files = {"boxes": [], "meta": [], "stats": [], "split_files": []}
    for split in ("train", "val"):
        split_names = names[split]
        boxes = {n: [[0.1, 0.1, 0.5, 0.6], [0.6, 0.6, 0.7, 0.75]] for n in split_names}
        meta_images = {
            n: {
                "size": [200, 150],
                "scores": [0.9, 0.4],
                "labels": ["cat", "dog"],
                "source": "yolo",
            }
            for n in split_names
        }
        boxes[split_names[0]] = []
        meta_images[split_names[0]].update(scores=[], labels=[])
        boxes[split_names[1]] = [[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 1.7, 0.9]]  # pixel-like
        boxes[split_names[2]] = [[0.6, 0.6, 0.7, 0.7], [0.1, 0.1, 0.5, 0.6]]  # unsorted
        boxes[split_names[3]] = [[0.1, 0.1, 0.5, 0.6], [0.1, 0.1, 0.5, 0.59]]  # duplicate
        boxes[split_names[4]] = [[0.0, 0.0, 1.0, 1.0]]  # whole image
        meta_images[split_names[4]].update(scores=[0.5], labels=["person"])
        # Unreadable at detection time: recorded in the sidecar, no entry in images.
        unreadable = split_names[5]
        boxes[unreadable] = []
        del meta_images[unreadable]
        ds_split = {"train": "train", "val": "val"}[split]
        rel = json.loads((root / f"cirr/image_splits/split.rc2.{ds_split}.json").read_text())
        (root / rel[unreadable]).write_bytes(b"")
        # Broken after detection: only the report finds out.
        broken = root / rel[split_names[6]]
        broken.write_bytes(broken.read_bytes()[:60])
        # In the split file but not in the box file.
        del boxes[split_names[8]], meta_images[split_names[8]]
        meta = {
            "method": "yolo",
            "split": split,
            "images": meta_images,
            "errors": [{"image": unreadable, "error": "empty file (0 bytes)"}],
        }
        stats = compute_stats(boxes, meta)
        stats["quality"] = {
            "recall": 0.75,
            "precision": 0.5,
            "mean_best_iou": 0.61234,
            "gt_boxes": 12,
        }
        out = tmp_path / "results/demo/boxes/yolo"
        files["boxes"].append(str(_save_json(out / f"{split}.json", boxes)))
        files["meta"].append(str(_save_json(out / f"{split}.meta.json", meta)))
        files["stats"].append(str(_save_json(out / f"{split}.stats.json", stats)))
        files["split_files"].append(str(root / f"cirr/image_splits/split.rc2.{split}.json"))
    return {"root": root, "names": names, "tmp": tmp_path, **files}


def method_files(inputs: dict, compare_stats=()) -> MethodFiles:
    """Rule box_report's inputs from `make_report_inputs`."""
    return MethodFiles(
        boxes=inputs["boxes"],
        metas=inputs["meta"],
        stats=inputs["stats"],
        split_files=inputs["split_files"],
        compare_stats=compare_stats,
    )


def _workflow_report(inputs, out_dir: Path, compare_stats=()) -> dict:
    return build_method_report(
        method_files(inputs, compare_stats),
        out_dir / "boxes_yolo.html",
        plots_dir=out_dir / "boxes_yolo_plots",
        settings={"samples_per_split": 4, "extra_per_group": 3, "seed": 0},
        method="yolo",
    )


# --------------------------------------------------------------------------- tests


def test_page_numbers_equal_the_stats_json(report_inputs, tmp_path):
    result = _workflow_report(report_inputs, tmp_path / "report")
    page = parse(Path(result["html"]))
    assert result["sources"] == ["yolo/train", "yolo/val"]
    for split, stats_path in zip(("train", "val"), report_inputs["stats"], strict=True):
        stats = json.loads(Path(stats_path).read_text())
        cells = stat_cells(page, f"yolo/{split}")
        for key in SUMMARY_KEYS:
            value, text = cells[key]
            assert json.loads(value) == stats[key], key
            assert text == expected_text(key, stats[key]), key
        assert stats["invalid_boxes"] == 1 and stats["errors"] == 1
        quality = {a["data-quality"]: a["data-value"] for a, _ in page.cells if "data-quality" in a}
        assert float(quality["recall"]) == stats["quality"]["recall"]
        assert float(quality["mean_best_iou"]) == stats["quality"]["mean_best_iou"]
    html = Path(result["html"]).read_text()
    assert "Quality against ground-truth boxes" in html
    assert result["images_missing"] == []


def test_checks_unreadable_and_invalid_boxes_are_listed(report_inputs, tmp_path):
    result = _workflow_report(report_inputs, tmp_path / "report")
    page = parse(Path(result["html"]))
    html = Path(result["html"]).read_text()
    checks = {}
    for attrs, text in page.cells:
        if "data-check" in attrs:
            checks.setdefault(attrs["data-check"], []).append(int(text.replace(",", "")))
    # Per split (train, val): one image of each kind.
    assert checks["invalid"] == [1, 1]
    assert checks["unsorted"] == [1, 1]
    assert checks["duplicate"] == [1, 1]
    assert checks["whole_image"] == [1, 1]
    assert checks["not_in_box_file"] == [1, 1]
    assert checks["not_in_split_file"] == [0, 0]
    names = report_inputs["names"]
    assert names["val"][5] in html and "empty file (0 bytes)" in html
    assert "pixel coordinates instead of normalised?" in html
    # The flagged grid shows the invalid-box image first.
    assert f"{names['val'][1]}</div>" in html


def test_broken_image_found_while_drawing_is_reported(report_inputs, tmp_path):
    out = tmp_path / "report"
    files = MethodFiles(
        boxes=report_inputs["boxes"][1:],
        metas=report_inputs["meta"][1:],
        stats=report_inputs["stats"][1:],
        split_files=report_inputs["split_files"][1:],
    )
    build_method_report(
        files,
        out / "page.html",
        settings={"samples_per_split": 50, "extra_per_group": 0},
        method="yolo",
    )
    html = (out / "page.html").read_text()
    broken = report_inputs["names"]["val"][6]
    assert f"{broken}</td><td>cannot decode image" in html
    assert "found while drawing this page" in html


def test_page_is_self_contained_and_deterministic(report_inputs, tmp_path):
    first = _workflow_report(report_inputs, tmp_path / "a")
    second = _workflow_report(report_inputs, tmp_path / "b")
    a, b = Path(first["html"]).read_bytes(), Path(second["html"]).read_bytes()
    assert a == b
    page = parse(Path(first["html"]))
    assert page.images, "no image in the page"
    assert all(
        img["src"].startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))
        for img in page.images
    )
    assert not [link for link in page.links if link.startswith(("http:", "https:", "//"))]
    thumbs = [img for img in page.images if img["src"].startswith("data:image/jpeg")]
    assert first["images_drawn"] == len({img["alt"] for img in thumbs}) > 0
    plots = sorted(p.name for p in (tmp_path / "a/boxes_yolo_plots").iterdir())
    assert plots == ["box_area.png", "box_aspect_ratio.png", "boxes_per_image.png", "classes.png"]
    for name in plots:
        assert (tmp_path / "a/boxes_yolo_plots" / name).read_bytes() == (
            tmp_path / "b/boxes_yolo_plots" / name
        ).read_bytes()


def test_sample_depends_only_on_seed_and_content():
    names = [f"train-{i}-0-img0" for i in range(500)]
    boxes = {n: [[0.1, 0.1, 0.2, 0.2]] * (i % 4) for i, n in enumerate(names)}
    flags = {names[7]: ["tiny"], names[3]: ["invalid"]}
    groups = select_groups(names, boxes, flags, {names[1]}, Sampling(12, 5, seed=0), "train")
    again = select_groups(
        list(reversed(names)), boxes, flags, {names[1]}, Sampling(12, 5, 0), "train"
    )
    other = select_groups(names, boxes, flags, {names[1]}, Sampling(12, 5, seed=1), "train")
    by_key = {g["key"]: g["names"] for g in groups}
    assert by_key == {g["key"]: g["names"] for g in again}
    assert by_key["sample"] != {g["key"]: g["names"] for g in other}["sample"]
    assert len(by_key["sample"]) == 12 and names[1] not in by_key["sample"]
    assert all(len(boxes[n]) == 3 for n in by_key["most"])
    assert all(not boxes[n] for n in by_key["none"]) and names[1] not in by_key["none"]
    assert by_key["flagged"] == [names[3], names[7]]


def test_image_checks():
    assert image_checks([], None) == []
    assert image_checks([[0.1, 0.1, 0.9, 0.9]], True) == []
    assert image_checks([[0.1, 0.1, 0.9, 0.9]], False) == ["no_meta"]
    assert image_checks([[0, 0, 10, 10]], True) == ["invalid"]
    assert image_checks([[0.1, 0.1, 0.2, 0.2], [0.1, 0.1, 0.9, 0.9]], True) == ["unsorted"]
    assert "duplicate" in image_checks([[0.1, 0.1, 0.9, 0.9], [0.1, 0.1, 0.9, 0.89]], True)
    assert image_checks([[0, 0, 1, 1], [0.5, 0.5, 0.51, 0.51]], True) == ["whole_image", "tiny"]


def test_split_and_method_inference():
    assert infer_split(["train-1-0-img0", "train-2-1-img1"]) == "train"
    assert infer_split(["dev-1-0-img0"]) == "val"
    assert infer_split(["test1-5-1-img0"]) == "test1"
    assert infer_split(["cat.jpg"]) is None
    assert infer_method(Path("seed_boxes_yolo_train_full.json"), None) == "yolo"
    assert infer_method(Path("results/demo/boxes/saliency/val.json"), None) == "saliency"
    assert infer_method(Path("x.json"), {"method": "hybrid"}) == "hybrid"
    assert infer_method(Path("my_boxes.json"), None) == "my_boxes"


def test_image_names_are_escaped(tmp_path):
    box_file = _save_json(
        tmp_path / "evil.json", {"<script>alert(1)</script>": [[0.1, 0.1, 0.5, 0.5]], "a&b": []}
    )
    out = tmp_path / "page.html"
    build_boxes_report([load_source(box_file)], out)
    html = out.read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a&amp;b" in html


def test_several_methods_are_compared_side_by_side(report_inputs, tmp_path):
    other_dir = tmp_path / "results/demo/boxes/saliency"
    other = {n: [[0.2, 0.2, 0.4, 0.4]] for n in report_inputs["names"]["val"]}
    other_stats = compute_stats(other)
    stats_path = _save_json(other_dir / "val.stats.json", other_stats)
    assert stats_entry_from_path(stats_path)["method"] == "saliency"
    result = _workflow_report(report_inputs, tmp_path / "report", compare_stats=[str(stats_path)])
    page = parse(Path(result["html"]))
    rows = {(a["data-method"], a["data-split"]) for a, _ in page.cells if "data-method" in a}
    assert rows == {("yolo", "train"), ("yolo", "val"), ("saliency", "val")}
    assert "methods_comparison.png" in [
        p.name for p in (tmp_path / "report/boxes_yolo_plots").iterdir()
    ]
    # Only one method: no comparison section.
    single = _workflow_report(report_inputs, tmp_path / "single")
    assert 'id="comparison"' not in Path(single["html"]).read_text()


def test_cli_on_a_seed_slice_without_images(test_data, tmp_path, capsys):
    box_file = test_data / "report" / "seed_boxes_yolo_train_slice300.json"
    out = tmp_path / "seed.html"
    assert cirflow_main(["boxes", "report", "--boxes", str(box_file), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "yolo/train: the images are missing" in printed
    html = out.read_text()
    assert "The images are missing: no dataset root was given" in html
    page = parse(out)
    stats = compute_stats(json.loads(box_file.read_text()))
    cells = stat_cells(page, "yolo/train")
    for key in SUMMARY_KEYS:
        assert json.loads(cells[key][0]) == stats[key]
    assert [img["src"][:15] for img in page.images] == ["data:image/png;"] * 3


def test_cli_on_the_seed_full_box_file_without_images(shared_cirr, tmp_path, capsys):
    """The seed's own 16,939-image file with the real split file and no images."""
    root = tmp_path / "cirr_root"
    (root / "cirr/image_splits").mkdir(parents=True)
    shutil.copy(shared_cirr / "split.rc2.train.json", root / "cirr/image_splits")
    box_file = shared_cirr / "seed_boxes_yolo_train_full.json"
    out = tmp_path / "seed_full.html"
    start = time.perf_counter()
    code = cirflow_main(
        ["boxes", "report", "--boxes", str(box_file), "--cirr-root", str(root), "--out", str(out)]
    )
    assert code == 0 and time.perf_counter() - start < 30
    assert "the images are missing" in capsys.readouterr().out
    html = out.read_text()
    assert "The images are missing: none of the 16,939 images" in html
    page = parse(out)
    stats = compute_stats(json.loads(box_file.read_text()))
    cells = stat_cells(page, "yolo/train")
    assert json.loads(cells["images"][0]) == stats["images"] == 16939
    for key in SUMMARY_KEYS:
        assert json.loads(cells[key][0]) == stats[key]
        assert cells[key][1] == expected_text(key, stats[key])
    plots = [img for img in page.images if img["src"].startswith("data:image/png")]
    assert len(plots) == len(page.images) == 3  # boxes/image, area, aspect; no thumbnails


def test_cli_rejects_mismatched_sidecars(tmp_path, capsys):
    box_file = _save_json(tmp_path / "a.json", {"train-1-0-img0": []})
    code = cirflow_main(
        [
            "boxes",
            "report",
            "--boxes",
            str(box_file),
            str(box_file),
            "--meta",
            str(box_file),
            "--out",
            str(tmp_path / "x.html"),
        ]
    )
    assert code == 2
    assert "--meta takes one file per --boxes file (2), got 1" in capsys.readouterr().err


def test_cli_adds_quality_against_ground_truth(tmp_path, capsys):
    box_file = _save_json(
        tmp_path / "val.json",
        {"dev-1-0-img0": [[0.1, 0.1, 0.5, 0.5]], "dev-2-0-img0": [[0.5, 0.5, 0.6, 0.6]]},
    )
    gt = _save_json(
        tmp_path / "boxes_gt.json",
        {"dev-1-0-img0": [[0.1, 0.1, 0.5, 0.5]], "dev-2-0-img0": [[0.1, 0.1, 0.3, 0.3]]},
    )
    out = tmp_path / "q.html"
    argv = ["boxes", "report", "--boxes", str(box_file), "--gt", str(gt), "--out", str(out)]
    assert cirflow_main(argv) == 0
    quality = {
        a["data-quality"]: a["data-value"] for a, _ in parse(out).cells if "data-quality" in a
    }
    assert float(quality["recall"]) == 0.5 and float(quality["precision"]) == 0.5
