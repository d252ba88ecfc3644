"""The CIRR reader on real annotation files and its errors on bad input."""

import json
import shutil

import pytest

from cirflow.data.cirr import (
    EDIT_TYPES,
    CirrDataset,
    edits_file,
    load_captions,
    load_edit_types,
    load_split_file,
)
from cirflow.errors import CirflowError


def test_real_split_and_caption_files(shared_cirr):
    val_split = load_split_file(shared_cirr / "split.rc2.val.json", "val")
    assert len(val_split) == 2297
    assert all(p.startswith("./dev/") for p in val_split.values())
    val = load_captions(shared_cirr / "cap.rc2.val.json", "val", val_split)
    assert len(val) == 4181
    assert all(len(t["img_set"]["members"]) == 6 for t in val)
    test1_split = load_split_file(shared_cirr / "split.rc2.test1.json", "test1")
    test1 = load_captions(shared_cirr / "cap.rc2.test1.json", "test1", test1_split)
    assert len(test1) == 4148 and "target_hard" not in test1[0]
    train = load_split_file(shared_cirr / "split.rc2.train.json", "train")
    assert len(train) == 16939
    assert train["train-11041-2-img0"] == "./train/34/train-11041-2-img0.png"


def test_dataset_on_shipped_slice(test_data):
    ds = CirrDataset(test_data / "cirr_slice", "val")
    assert len(ds.triplets) == 12
    t = ds.triplets[0]
    assert ds.image_path(t["reference"]).name == f"{t['reference']}.png"
    assert ds.image_path(t["reference"]).parent.name == "dev"
    # No images are shipped: every one is reported missing, none crashes.
    assert ds.missing_images() == ds.image_names()
    test1 = CirrDataset(test_data / "cirr_slice", "test1")
    assert all("target_hard" not in t for t in test1.triplets)
    train = CirrDataset(test_data / "cirr_slice", "train", with_captions=False)
    assert len(train.images) == 40


@pytest.fixture
def slice_copy(tmp_path, test_data):
    root = tmp_path / "cirr_root"
    shutil.copytree(test_data / "cirr_slice", root)
    return root


def test_missing_root_names_the_folder(tmp_path):
    with pytest.raises(CirflowError, match="dataset root not found: .*nowhere"):
        CirrDataset(tmp_path / "nowhere", "val")


def test_missing_annotation_file_named(slice_copy):
    (slice_copy / "cirr/captions/cap.rc2.val.json").unlink()
    with pytest.raises(CirflowError, match=r"CIRR captions file not found: .*cap\.rc2\.val\.json"):
        CirrDataset(slice_copy, "val")


def test_triplet_naming_unknown_image(slice_copy):
    path = slice_copy / "cirr/captions/cap.rc2.val.json"
    caps = json.loads(path.read_text())
    caps[3]["target_hard"] = "dev-999999-0-img0"
    path.write_text(json.dumps(caps))
    with pytest.raises(
        CirflowError, match=r"triplet #3 .*'target_hard' names image 'dev-999999-0-img0'"
    ):
        CirrDataset(slice_copy, "val")


def test_triplet_missing_field(slice_copy):
    path = slice_copy / "cirr/captions/cap.rc2.val.json"
    caps = json.loads(path.read_text())
    del caps[0]["caption"]
    path.write_text(json.dumps(caps))
    with pytest.raises(CirflowError, match=r"cap\.rc2\.val\.json: triplet #0 .*no field 'caption'"):
        CirrDataset(slice_copy, "val")


@pytest.mark.parametrize("bad", ["/etc/passwd", "../../outside.png", "./train/1/x.png"])
def test_bad_relative_path(slice_copy, bad):
    path = slice_copy / "cirr/image_splits/split.rc2.val.json"
    split = json.loads(path.read_text())
    split[next(iter(split))] = bad
    path.write_text(json.dumps(split))
    with pytest.raises(CirflowError, match="split.rc2.val.json: image .* path"):
        CirrDataset(slice_copy, "val")


def test_invalid_json_names_file_and_line(slice_copy):
    path = slice_copy / "cirr/image_splits/split.rc2.val.json"
    path.write_text('{"a": ')
    with pytest.raises(CirflowError, match=r"not valid JSON: .*split\.rc2\.val\.json \(line 1"):
        CirrDataset(slice_copy, "val")


def test_unknown_split():
    with pytest.raises(CirflowError, match="unknown CIRR split 'dev'"):
        CirrDataset(".", "dev")


# --- the edit-type sidecar (docs/design.md §3) --------------------------------------------------


def _write_sidecar(root, mapping):
    path = edits_file(root, "val")
    path.write_text(json.dumps(mapping))
    return path


def _val_pairids(root):
    return [t["pairid"] for t in json.loads((root / "cirr/captions/cap.rc2.val.json").read_text())]


def test_edit_types_absent_is_none(slice_copy):
    assert not edits_file(slice_copy, "val").exists()
    assert load_edit_types(slice_copy, "val") is None


def test_edit_types_load_as_int_pairids(slice_copy):
    pairids = _val_pairids(slice_copy)
    _write_sidecar(slice_copy, {str(p): EDIT_TYPES[p % 7] for p in pairids})
    assert load_edit_types(slice_copy, "val") == {p: EDIT_TYPES[p % 7] for p in pairids}
    # The triplets may be given instead of being read again.
    triplets = CirrDataset(slice_copy, "val").triplets
    assert load_edit_types(slice_copy, "val", triplets) == {p: EDIT_TYPES[p % 7] for p in pairids}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: list(m.items()), "expected a JSON object of pairid -> edit type"),
        (lambda m: {**m, "pair-1": "color"}, "key 'pair-1' is not a pairid"),
        (lambda m: {**m, next(iter(m)): ""}, "has no edit type"),
        (
            lambda m: dict(list(m.items())[1:]),
            "does not match the captions: no edit type for pairid",
        ),
        (lambda m: {**m, "999999": "move"}, r"pairid 999999 not in .*cap\.rc2\.val\.json"),
    ],
    ids=["not-an-object", "bad-key", "empty-type", "missing-pairid", "extra-pairid"],
)
def test_bad_edit_types_name_the_file(slice_copy, change, message):
    pairids = _val_pairids(slice_copy)
    _write_sidecar(slice_copy, change({str(p): "color" for p in pairids}))
    with pytest.raises(CirflowError, match=r"edits\.rc2\.val\.json.*" + message):
        load_edit_types(slice_copy, "val")
