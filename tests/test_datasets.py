"""The dataset seam (cirflow/data/datasets.py): one split of CIRR or FashionIQ behind one
interface, the FashionIQ split's images and triplets, and the manifests that read it."""

import json

import pytest
from conftest import write_mini_cirr, write_mini_fashioniq

from cirflow.data import datasets
from cirflow.data.cirr import CirrDataset
from cirflow.data.datasets import (
    DatasetRoot,
    as_dataset_root,
    layout_of,
    open_split,
    root_of_annotation_file,
    split_images,
)
from cirflow.data.fashioniq_captions import evaluation_caption
from cirflow.data.manifest import refresh_manifests, write_manifest
from cirflow.errors import CirflowError


@pytest.fixture()
def fiq(tmp_path):
    root = tmp_path / "fiq"
    return root, write_mini_fashioniq(root)


def test_layouts_of_the_configured_names():
    assert {n: layout_of(n) for n in ("cirr", "demo", "fashioniq", "demo_fashioniq")} == {
        "cirr": "cirr",
        "demo": "cirr",
        "fashioniq": "fashioniq",
        "demo_fashioniq": "fashioniq",
    }
    with pytest.raises(CirflowError, match="dataset.name: unknown dataset 'fashion'"):
        layout_of("fashion")


def test_a_cirr_split_is_the_cirr_dataset(tmp_path):
    write_mini_cirr(tmp_path)
    opened = open_split("cirr", tmp_path, "val")
    assert isinstance(opened, CirrDataset) and opened.kind == "cirr"
    direct = CirrDataset(tmp_path, "val")
    assert (opened.images, opened.triplets) == (direct.images, direct.triplets)
    # A plain path is a CIRR root: every caller from before FashionIQ keeps working.
    assert as_dataset_root(tmp_path) == DatasetRoot("cirr", tmp_path)


def test_a_fashioniq_split_holds_the_three_categories_images_once(fiq):
    root, names = fiq
    val = open_split("fashioniq", root, "val")
    assert val.kind == "fashioniq"
    expected = [n for c in ("dress", "shirt", "toptee") for n in names[(c, "val")]]
    # shared-val is listed by shirt and by toptee: one image.
    assert list(val.images) == list(dict.fromkeys(expected))
    assert len(val.images) == 3 * 6 + 1
    assert val.images["shirt-val-2"] == "images/shirt-val-2.png"
    assert val.image_path("shared-val") == root / "images" / "shared-val.png"
    assert val.category_names("toptee") == names[("toptee", "val")]
    assert val.missing_images() == []


def test_a_fashioniq_image_found_only_as_jpg_has_its_jpg_path(fiq):
    root, _ = fiq
    train = open_split("fashioniq", root, "train")
    assert train.images["dress-train-0"] == "images/dress-train-0.jpg"
    (root / "images" / "dress-train-1.png").unlink()
    assert open_split("fashioniq", root, "train").missing_images() == ["dress-train-1"]


def test_fashioniq_triplets_are_normalised_with_the_evaluation_caption(fiq):
    root, _ = fiq
    val = open_split("fashioniq", root, "val")
    assert len(val.triplets) == 18
    first_shirt = next(t for t in val.triplets if t["category"] == "shirt")
    assert first_shirt == {
        "pairid": 100000,
        "reference": "shirt-val-0",
        "target_hard": "shirt-val-1",
        "category": "shirt",
        "captions": ["is colour 0.", "Has Longer sleeves"],
        "caption": "Is colour 0 and Has Longer sleeves",
    }
    assert first_shirt["caption"] == evaluation_caption(first_shirt["captions"])
    test = open_split("fashioniq", root, "test")
    assert all("target_hard" not in t for t in test.triplets)
    assert open_split("fashioniq", root, "val", with_captions=False).triplets == []


def test_a_fashioniq_triplet_naming_an_image_outside_the_split_is_an_error(fiq):
    root, _ = fiq
    path = root / "captions" / "cap.toptee.val.json"
    entries = json.loads(path.read_text())
    entries[3]["target"] = "dress-train-2"
    path.write_text(json.dumps(entries))
    with pytest.raises(CirflowError) as err:
        open_split("fashioniq", root, "val")
    message = str(err.value)
    assert str(path) in message and "entry #3" in message and "'dress-train-2'" in message
    assert "split.toptee.val.json" in message


def test_unknown_split_and_missing_root_are_named(fiq, tmp_path):
    root, _ = fiq
    with pytest.raises(CirflowError, match="unknown FashionIQ split 'test1'"):
        open_split("fashioniq", root, "test1")
    with pytest.raises(CirflowError, match="FashionIQ dataset root not found"):
        open_split("fashioniq", tmp_path / "nowhere", "val")
    with pytest.raises(CirflowError, match="unknown dataset layout 'coco'"):
        open_split("coco", root, "val")


def test_annotation_files_and_the_root_above_them(fiq, tmp_path):
    root, _ = fiq
    files = datasets.annotation_files("fashioniq", root, "val")
    assert [f.relative_to(root).as_posix() for f in files] == [
        *(f"image_splits/split.{c}.val.json" for c in ("dress", "shirt", "toptee")),
        *(f"captions/cap.{c}.val.json" for c in ("dress", "shirt", "toptee")),
    ]
    assert root_of_annotation_file(files[0]) == DatasetRoot("fashioniq", root)
    cirr_file = tmp_path / "c" / "cirr" / "image_splits" / "split.rc2.val.json"
    assert root_of_annotation_file(cirr_file) == DatasetRoot("cirr", tmp_path / "c")
    # CIRR's rules always listed its split file, then its captions file.
    assert [p.name for p in datasets.annotation_files("cirr", tmp_path, "val")] == [
        "split.rc2.val.json",
        "cap.rc2.val.json",
    ]
    with pytest.raises(CirflowError, match="expected an image split file"):
        root_of_annotation_file(tmp_path / "captions" / "cap.dress.val.json")


def test_manifests_of_a_fashioniq_split_stat_its_images(fiq, tmp_path):
    root, _ = fiq
    dataset = DatasetRoot("fashioniq", root)
    assert split_images("fashioniq", root, "val") == open_split("fashioniq", root, "val").images
    out = tmp_path / "m" / "val.json"
    assert write_manifest(out, dataset, "val")
    images = json.loads(out.read_text())["images"]
    assert len(images) == 19 and all(v is not None for v in images.values())
    # A vanished image is a changed manifest (the jobs reading it rerun).
    folder = tmp_path / "manifests"
    refresh_manifests(folder, dataset, {"val": [1]})
    (root / "images" / "dress-val-4.png").unlink()
    changes = refresh_manifests(folder, dataset, {"val": [1]})
    assert [c.images for c in changes] == [("dress-val-4",)]
