"""The FashionIQ reader on the real annotation files, its errors on bad input, and the caption
combination rules of SPRC's training and evaluation (docs/fashioniq.md)."""

import json
import logging
import random
from collections import Counter

import numpy as np
import pytest

from cirflow.data.captions import blip_caption
from cirflow.data.fashioniq import (
    CATEGORIES,
    PAIRID_STRIDE,
    SPLITS,
    captions_file,
    category_images,
    category_triplets,
    load_triplets,
    resolve_image,
    resolve_images,
    split_file,
    val_gallery,
)
from cirflow.data.fashioniq_captions import (
    TRAINING_FORMS,
    caption_in_form,
    evaluation_caption,
    training_caption,
    training_captions,
    training_form,
)
from cirflow.errors import CirflowError

# (dress, shirt, toptee) in the real files.
TRIPLETS = {
    "train": (5985, 5988, 6027),
    "val": (2017, 2038, 1961),
    "test": (2024, 2038, 2056),
}
VAL_GALLERY = (3817, 6346, 5373)


# --- the real files ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_real_triplet_counts(shared_fashioniq, split):
    counts = tuple(len(category_triplets(shared_fashioniq, c, split)) for c in CATEGORIES)
    assert counts == TRIPLETS[split]
    together = load_triplets(shared_fashioniq, split)
    assert len(together) == sum(TRIPLETS[split])
    assert len({t["pairid"] for t in together}) == len(together)
    assert all(("target_hard" in t) == (split != "test") for t in together)


def test_real_val_gallery_sizes(shared_fashioniq):
    sizes = tuple(len(val_gallery(shared_fashioniq, c)) for c in CATEGORIES)
    assert sizes == VAL_GALLERY
    # No name twice: the gallery's size is its number of distinct images.
    assert tuple(len(set(val_gallery(shared_fashioniq, c))) for c in CATEGORIES) == VAL_GALLERY


def test_real_normalised_form(shared_fashioniq):
    dress = category_triplets(shared_fashioniq, "dress", "val")
    assert dress[0] == {
        "pairid": 0,
        "reference": "B005X4PL1G",
        "category": "dress",
        "captions": ["is shiny and silver with shorter sleeves", "fit and flare"],
        "target_hard": "B0084Y8XIU",
    }
    toptee = category_triplets(shared_fashioniq, "toptee", "val")
    assert toptee[5]["pairid"] == 2 * PAIRID_STRIDE + 5
    test = category_triplets(shared_fashioniq, "dress", "test")
    assert test[0]["reference"] == "B007E66YTO" and "target_hard" not in test[0]


def test_real_val_targets_and_references_are_in_their_val_split(shared_fashioniq):
    """A finding recorded in docs/fashioniq.md: in these files every val target and candidate
    is in its category's val image split (so every val query can be ranked; SPRC asserts it)."""
    for category in CATEGORIES:
        gallery = set(val_gallery(shared_fashioniq, category))
        triplets = category_triplets(shared_fashioniq, category, "val")
        assert not [t["target_hard"] for t in triplets if t["target_hard"] not in gallery]
        assert not [t["reference"] for t in triplets if t["reference"] not in gallery]
        # The caption images are a strict part of the gallery (protocol 2 would rank fewer).
        named = {t["reference"] for t in triplets} | {t["target_hard"] for t in triplets}
        assert named < gallery


def test_real_shirt_and_toptee_share_images(shared_fashioniq):
    """Recorded in docs/fashioniq.md: the categories are not disjoint, so images of one
    category's training split sit in another category's val gallery."""
    shirt_train = set(category_images(shared_fashioniq, "shirt", "train"))
    toptee_val = set(category_images(shared_fashioniq, "toptee", "val"))
    shirt_val = set(category_images(shared_fashioniq, "shirt", "val"))
    dress_all = {n for s in SPLITS for n in category_images(shared_fashioniq, "dress", s)}
    assert len(shirt_train & toptee_val) == 392
    assert len(shirt_val & toptee_val) == 121
    assert not dress_all & (shirt_train | toptee_val | shirt_val)


# --- errors on a hand-made layout -------------------------------------------------------------


def write_layout(root):
    """A FashionIQ root with every category and split: 2 triplets each over 4 images."""
    for category in CATEGORIES:
        for split in SPLITS:
            names = [f"{category[0].upper()}{split[:2].upper()}{i:07d}" for i in range(4)]
            rows = [
                {"target": names[1], "candidate": names[0], "captions": ["is red.", "longer"]},
                {"target": names[3], "candidate": names[2], "captions": ["is blue", " shorter"]},
            ]
            if split == "test":
                rows = [{k: v for k, v in r.items() if k != "target"} for r in rows]
            for path, data in (
                (captions_file(root, category, split), rows),
                (split_file(root, category, split), names),
            ):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(data))
    return root


@pytest.fixture
def layout(tmp_path):
    return write_layout(tmp_path / "fiq")


def edit_captions(root, category, split, change):
    path = captions_file(root, category, split)
    entries = json.loads(path.read_text())
    change(entries)
    path.write_text(json.dumps(entries))


def test_hand_made_layout_reads(layout):
    assert len(load_triplets(layout, "train")) == 6
    test = load_triplets(layout, "test", ("shirt",))
    assert [t["pairid"] for t in test] == [PAIRID_STRIDE, PAIRID_STRIDE + 1]


def test_missing_category_file_is_named_with_the_expected_layout(layout):
    captions_file(layout, "shirt", "val").unlink()
    with pytest.raises(CirflowError) as err:
        load_triplets(layout, "val")
    message = str(err.value)
    assert "FashionIQ captions file not found" in message
    assert str(captions_file(layout, "shirt", "val")) in message
    assert "dress, shirt, toptee" in message and "train, val, test" in message
    split_file(layout, "toptee", "val").unlink()
    with pytest.raises(CirflowError, match=r"image split file not found: .*split\.toptee\.val"):
        val_gallery(layout, "toptee")


@pytest.mark.parametrize(
    "captions",
    [["only one"], ["a", "b", "c"], ["a", None], "a and b", None],
    ids=["one", "three", "not-a-string", "a-string", "null"],
)
def test_entry_without_exactly_two_string_captions(layout, captions):
    edit_captions(layout, "dress", "train", lambda e: e[1].update(captions=captions))
    with pytest.raises(CirflowError, match=r"cap\.dress\.train\.json: entry #1: field 'captions' "):
        load_triplets(layout, "train")


def test_entry_without_captions_field(layout):
    edit_captions(layout, "dress", "val", lambda e: e[0].pop("captions"))
    with pytest.raises(CirflowError, match=r"cap\.dress\.val\.json: entry #0 has no field 'cap"):
        category_triplets(layout, "dress", "val")


@pytest.mark.parametrize("split", ["train", "val"])
def test_missing_target_outside_test(layout, split):
    edit_captions(layout, "toptee", split, lambda e: e[1].pop("target"))
    with pytest.raises(
        CirflowError,
        match=rf"cap\.toptee\.{split}\.json: entry #1 has no field 'target' \(only test",
    ):
        category_triplets(layout, "toptee", split)


@pytest.mark.parametrize(
    "name",
    ["../B000000000", "a/b", "..", "x\\y", "", 7],
    ids=["dotdot", "sep", "up", "bs", "", "int"],
)
def test_names_that_leave_the_images_folder_are_refused(layout, name):
    edit_captions(layout, "shirt", "val", lambda e: e[1].update(candidate=name))
    with pytest.raises(CirflowError, match=r"entry #1, field 'candidate': image name"):
        category_triplets(layout, "shirt", "val")
    path = split_file(layout, "shirt", "val")
    path.write_text(json.dumps(["B000000001", name]))
    with pytest.raises(CirflowError, match=r"split\.shirt\.val\.json: entry #1: image name"):
        val_gallery(layout, "shirt")
    with pytest.raises(CirflowError, match="image name"):
        resolve_image(layout, name)


def test_image_split_must_be_a_list_of_names(layout):
    split_file(layout, "dress", "val").write_text(json.dumps({"B000000001": "x.png"}))
    with pytest.raises(CirflowError, match="expected a JSON list of image names, got a dict"):
        val_gallery(layout, "dress")


def test_unknown_category_or_split(layout):
    with pytest.raises(CirflowError, match="unknown FashionIQ category 'shoes'"):
        category_triplets(layout, "shoes", "val")
    with pytest.raises(CirflowError, match="unknown FashionIQ split 'test1'"):
        load_triplets(layout, "test1")


def test_resolve_image_png_jpg_and_neither(tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    (images / "PNGONLY.png").write_bytes(b"p")
    (images / "JPGONLY.jpg").write_bytes(b"j")
    (images / "BOTH.png").write_bytes(b"p")
    (images / "BOTH.jpg").write_bytes(b"j")
    assert resolve_image(tmp_path, "PNGONLY") == images / "PNGONLY.png"
    assert resolve_image(tmp_path, "JPGONLY") == images / "JPGONLY.jpg"
    assert resolve_image(tmp_path, "BOTH") == images / "BOTH.png"  # SPRC's .png first
    with pytest.raises(CirflowError) as err:
        resolve_image(tmp_path, "NOWHERE")
    assert str(images / "NOWHERE.png") in str(err.value)
    assert str(images / "NOWHERE.jpg") in str(err.value)

    caplog.set_level(logging.INFO)
    found = resolve_images(tmp_path, ["PNGONLY", "JPGONLY", "BOTH", "NOWHERE"], "dress val")
    assert found.jpg == ["JPGONLY"] and found.missing == ["NOWHERE"]
    assert found.paths == {
        "PNGONLY": images / "PNGONLY.png",
        "JPGONLY": images / "JPGONLY.jpg",
        "BOTH": images / "BOTH.png",
    }
    lines = [r.getMessage() for r in caplog.records]
    assert sum("1 of 4 images found as .jpg" in m for m in lines) == 1
    assert sum("1 of 4 images missing" in m and "NOWHERE" in m for m in lines) == 1


# --- caption combination (SPRC's rules) -------------------------------------------------------

# Real val entries (category, position in cap.{category}.val.json) and the text SPRC's evaluation
# gives them, written by hand from its rule: strip '.?, ', capitalise the first, join with " and ".
EVALUATION_EXPECTED = {
    ("dress", 0): "Is shiny and silver with shorter sleeves and fit and flare",
    ("dress", 3): "Is a plain white feminine t shirt and is a tan shirt",  # trailing '.'
    ("dress", 6): "Is gold and strapless and button front longer sleeves",  # leading ' '
    ("shirt", 12): "Is a black t shirt with writing on it and is black and has less graphics",
    ("shirt", 14): "Red and grey stripes and has longer sleeves and is a full button up",
    # The second caption keeps its capitals; the first loses all but its first letter's.
    ("toptee", 3): "The shirt is black with the cat in hat and has the Cat in the Hat on it",
    ("toptee", 4): "Has longer lace sleeves in white and Is longer sleeved",
    # A trailing '?' is stripped as well.
    ("shirt", 623): "Has diferente words on it and has words got missionaries",
    ("shirt", 1778): "Has shorter sleeves and is red and got honda",
    # An empty first caption: the text starts with " and " (blip_caption then strips the space).
    ("shirt", 1928): " and is grey with a design on the back",
}


def test_evaluation_caption_on_real_val_entries(shared_fashioniq):
    for (category, position), expected in EVALUATION_EXPECTED.items():
        triplet = category_triplets(shared_fashioniq, category, "val")[position]
        assert evaluation_caption(triplet["captions"]) == expected, (category, position)
    # What the model then reads, after LAVIS's blip_caption processor (as SPRC applies it).
    assert blip_caption(EVALUATION_EXPECTED[("toptee", 3)]) == (
        "the shirt is black with the cat in hat and has the cat in the hat on it"
    )
    assert blip_caption(EVALUATION_EXPECTED[("shirt", 1928)]) == (
        "and is grey with a design on the back"
    )


def test_evaluation_caption_strips_only_sprcs_characters():
    # No real caption ends in ',': exactly '.', '?', ',' and ' ' go, from both ends only.
    assert evaluation_caption([" ,is red.. ", "?longer, ?"]) == "Is red and longer"
    assert evaluation_caption(["is red!", "(blue)"]) == "Is red! and (blue)"
    assert evaluation_caption(["is a t-shirt. v-neck", "x"]) == "Is a t-shirt. v-neck and x"
    assert evaluation_caption(["\tIS RED", "Blue!\n"]) == "\tis red and Blue!\n"


def test_training_form_follows_sprcs_branches_and_strict_bounds():
    assert [training_form(u) for u in (0.0, 0.2499, 0.3, 0.4999, 0.6, 0.7499, 0.8, 0.9999)] == [
        "cap1 and cap2",
        "cap1 and cap2",
        "cap2 and cap1",
        "cap2 and cap1",
        "cap1",
        "cap1",
        "cap2",
        "cap2",
    ]
    # SPRC compares strictly: a draw of exactly 0.25 or 0.5 falls through to the last branch.
    assert [training_form(u) for u in (0.25, 0.5, 0.75)] == ["cap2", "cap2", "cap2"]


class FixedDraws:
    def __init__(self, *draws):
        self.draws = list(draws)

    def random(self):
        return self.draws.pop(0)


def test_training_caption_each_branch_on_a_real_train_entry(shared_fashioniq):
    captions = category_triplets(shared_fashioniq, "toptee", "train")[0]["captions"]
    assert captions == ["has no sleeves and is light pink", " pink"]
    expected = {
        0.1: "Has no sleeves and is light pink and pink",
        0.3: "Pink and has no sleeves and is light pink",
        0.6: "Has no sleeves and is light pink",
        0.9: "Pink",
    }
    for draw, text in expected.items():
        assert training_caption(captions, FixedDraws(draw)) == text, draw


def test_training_captions_on_real_train_reach_every_branch_reproducibly(shared_fashioniq):
    batch = [t["captions"] for t in load_triplets(shared_fashioniq, "train")]
    texts = training_captions(batch, random.Random(7))
    # One draw per triplet in batch order: the same stream picks the same forms.
    shadow = random.Random(7)
    forms = [training_form(shadow.random()) for _ in batch]
    assert texts == [caption_in_form(c, f) for c, f in zip(batch, forms, strict=True)]
    counts = Counter(forms)
    assert set(counts) == set(TRAINING_FORMS)
    for form in TRAINING_FORMS:  # 18,000 draws: each form within ~5 standard deviations of 1/4
        assert abs(counts[form] / len(batch) - 0.25) < 0.016, counts
    assert training_captions(batch, random.Random(7)) == texts
    assert training_captions(batch, random.Random(8)) != texts
    # Python's global generator seeded alike (SPRC draws with random.random()) picks the same.
    state = random.getstate()
    try:
        random.seed(7)
        assert [training_form(random.random()) for _ in batch] == forms
    finally:
        random.setstate(state)
    # A numpy Generator works as well, reproducibly.
    by_numpy = training_captions(batch[:500], np.random.default_rng(3))
    assert by_numpy == training_captions(batch[:500], np.random.default_rng(3))
    assert len(set(by_numpy)) > 400
