"""The embedded demo dataset generator: determinism, CIRR layout, consistency, boxes, CLI."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cirflow import cli
from cirflow.data import demo
from cirflow.data.cirr import EDIT_TYPES, SPLITS, CirrDataset, edits_file, load_edit_types
from cirflow.data.demo.family import (
    MAX_ASPECT,
    MAX_WIDTH,
    MIN_ASPECT,
    MIN_WIDTH,
    description_rng,
    family_rng,
    make_family,
)
from cirflow.data.demo.geometry import MARGIN
from cirflow.data.demo.scene import COLORS, MAX_OBJECTS, SHAPES, SIZES
from cirflow.data.demo.wording import NUMBERS, SIZE_WORDS, describe
from cirflow.data.descriptions import DESCRIPTIONS_FILE, load_descriptions
from cirflow.errors import CirflowError

COUNTS = {"train": 42, "val": 21, "test1": 19}  # not multiples of 4: partial last families
KWARGS = {
    "train_triplets": COUNTS["train"],
    "val_triplets": COUNTS["val"],
    "test1_triplets": COUNTS["test1"],
}
TRAIN_KEYS = ["pairid", "reference", "target_hard", "target_soft", "caption", "img_set"]
TEST1_KEYS = ["pairid", "reference", "caption", "img_set"]
PATH_RE = {
    "train": re.compile(r"^\./train/(\d+)/(train-(\d+)-(\d)-img[01])\.png$"),
    "val": re.compile(r"^\./dev/(dev-(\d+)-(\d)-img[01])\.png$"),
    "test1": re.compile(r"^\./test1/(test1-(\d+)-(\d)-img[01])\.png$"),
}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _load(root: Path):
    captions = {
        s: json.loads((root / f"cirr/captions/cap.rc2.{s}.json").read_text()) for s in SPLITS
    }
    splits = {
        s: json.loads((root / f"cirr/image_splits/split.rc2.{s}.json").read_text()) for s in SPLITS
    }
    return captions, splits


def _family(name: str) -> str:
    return name.split("-")[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "dataset"
    demo.generate_demo(root, demo.DemoSpec(seed=0, **KWARGS), workers=2, progress=False)
    return root


def test_same_seed_same_bytes_whatever_the_workers(dataset, tmp_path):
    again = tmp_path / "again"
    demo.generate_demo(again, demo.DemoSpec(seed=0, **KWARGS), workers=1, progress=False)
    first, second = _files(dataset), _files(again)
    assert sorted(first) == sorted(second)
    # The descriptions and the edit-type sidecars are among the files compared.
    assert DESCRIPTIONS_FILE in first
    assert {f"cirr/captions/edits.rc2.{s}.json" for s in SPLITS} <= set(first)
    different = [name for name in first if first[name] != second[name]]
    assert different == []


def test_other_seed_other_data(dataset, tmp_path):
    other = tmp_path / "other"
    demo.generate_demo(other, demo.DemoSpec(seed=1, **KWARGS), workers=1, progress=False)
    first, second = _files(dataset), _files(other)
    assert first["boxes_gt.json"] != second["boxes_gt.json"]
    assert first[DESCRIPTIONS_FILE] != second[DESCRIPTIONS_FILE]
    for split in SPLITS:
        name = f"cirr/captions/cap.rc2.{split}.json"
        assert first[name] != second[name]
    common_images = [n for n in first if n.endswith(".png") and n in second]
    assert common_images
    assert all(first[n] != second[n] for n in common_images)


def test_cirr_layout(dataset):
    captions, splits = _load(dataset)
    for split in SPLITS:
        assert len(captions[split]) == COUNTS[split]
        for name, rel in splits[split].items():
            match = PATH_RE[split].match(rel)
            assert match, rel
            assert name in match.groups()
            assert (dataset / rel).is_file()
        for t in captions[split]:
            if split == "test1":
                assert list(t) == TEST1_KEYS
                assert list(t["img_set"]) == ["id", "members", "reference_rank"]
            else:
                assert list(t) == TRAIN_KEYS
                assert list(t["img_set"]) == ["id", "members", "reference_rank", "target_rank"]
                assert t["target_soft"] == {t["target_hard"]: 1.0}
            assert isinstance(t["pairid"], int)
            assert isinstance(t["img_set"]["id"], int)
            assert isinstance(t["caption"], str) and t["caption"]
    # Train images spread over several numbered folders, one folder per family.
    folders = {PATH_RE["train"].match(rel).group(1) for rel in splits["train"].values()}
    assert len(folders) > 1
    # The project's own loader accepts it.
    for split in SPLITS:
        ds = CirrDataset(dataset, split)
        assert len(ds.triplets) == COUNTS[split]
        assert ds.missing_images() == []


def test_pairids_unique_over_all_splits(dataset):
    captions, _ = _load(dataset)
    ids = [t["pairid"] for s in SPLITS for t in captions[s]]
    assert len(ids) == len(set(ids)) == sum(COUNTS.values())


def test_triplets_consistent_with_split_files(dataset):
    captions, splits = _load(dataset)
    for split in SPLITS:
        used = set()
        for t in captions[split]:
            members = t["img_set"]["members"]
            assert len(members) == demo.IMAGES_PER_FAMILY == len(set(members))
            assert t["reference"] in splits[split]
            assert all(m in splits[split] for m in members)
            assert members[t["img_set"]["reference_rank"]] == t["reference"]
            # One family per image set: the members are each other's hard distractors.
            assert {_family(m) for m in members} == {_family(t["reference"])}
            assert str(t["img_set"]["id"]) == _family(t["reference"])
            used.update(members)
            used.add(t["reference"])
            if split != "test1":
                target = t["target_hard"]
                assert target in splits[split] and target != t["reference"]
                assert members[t["img_set"]["target_rank"]] == target
                used.add(target)
        assert used == set(splits[split])
        # No (reference, caption) asked twice with different answers.
        keys = Counter((t["reference"], t["caption"]) for t in captions[split])
        assert max(keys.values()) == 1


def test_family_members_are_distinct_images(dataset):
    _, splits = _load(dataset)
    families: dict[str, list[str]] = {}
    for name in splits["val"]:
        families.setdefault(_family(name), []).append(name)
    for names in families.values():
        arrays = [np.asarray(Image.open(dataset / splits["val"][n])) for n in names]
        assert len({a.shape for a in arrays}) == 1  # same size and background
        for i in range(len(arrays)):
            for j in range(i + 1, len(arrays)):
                assert not np.array_equal(arrays[i], arrays[j])


def test_image_sizes_within_bounds(dataset):
    _, splits = _load(dataset)
    sizes = set()
    for split in SPLITS:
        for rel in splits[split].values():
            with Image.open(dataset / rel) as image:
                assert image.format == "PNG" and image.mode == "RGB"
                w, h = image.size
            assert MIN_WIDTH <= w <= MAX_WIDTH
            assert MIN_ASPECT <= w / h <= MAX_ASPECT
            sizes.add((w, h))
    assert len(sizes) > 10  # varied


def test_ground_truth_boxes(dataset):
    _, splits = _load(dataset)
    boxes = json.loads((dataset / "boxes_gt.json").read_text())
    assert set(boxes) == {n for s in SPLITS for n in splits[s]}
    for name, image_boxes in boxes.items():
        assert 1 <= len(image_boxes) <= MAX_OBJECTS
        areas = []
        for x1, y1, x2, y2 in image_boxes:
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1, name
            areas.append((x2 - x1) * (y2 - y1))
        assert areas == sorted(areas, reverse=True)
        assert min(areas) > 0.005  # objects are not specks


def test_boxes_cover_the_objects(dataset):
    """Inside each box the image differs from the rest of its family's background: an object."""
    _, splits = _load(dataset)
    boxes = json.loads((dataset / "boxes_gt.json").read_text())
    for name, rel in list(splits["val"].items())[:12]:
        image = np.asarray(Image.open(dataset / rel)).astype(float)
        h, w, _ = image.shape
        outside = np.ones((h, w), bool)
        for x1, y1, x2, y2 in boxes[name]:
            outside[int(y1 * h) : int(np.ceil(y2 * h)), int(x1 * w) : int(np.ceil(x2 * w))] = False
        background = np.median(image[outside], axis=0)
        for x1, y1, x2, y2 in boxes[name]:
            cx, cy = int((x1 + x2) / 2 * w), int((y1 + y2) / 2 * h)
            assert np.linalg.norm(image[cy, cx] - background) > 40, name


def test_manifest(dataset):
    manifest = json.loads((dataset / "demo_manifest.json").read_text())
    assert manifest["seed"] == 0
    assert manifest["version"] == demo.GENERATOR_VERSION
    assert manifest["triplets"] == COUNTS
    assert manifest["images"] == {
        s: -(-COUNTS[s] // demo.TRIPLETS_PER_FAMILY) * demo.IMAGES_PER_FAMILY for s in SPLITS
    }
    assert sum(manifest["edits"].values()) == sum(COUNTS.values())
    # The manifest counts the sidecars' types and lists the files beside the CIRR ones.
    sidecar_types = Counter(
        e for s in SPLITS for e in json.loads((dataset / edits_file(".", s)).read_text()).values()
    )
    assert manifest["edits"] == {e: sidecar_types[e] for e in EDIT_TYPES}
    files = manifest["files"]
    assert (dataset / files["descriptions"]).is_file()
    assert files["descriptions"] == DESCRIPTIONS_FILE
    for split in SPLITS:
        assert dataset / files["edit_types"][split] == edits_file(dataset, split)


def test_caption_vocabulary_covers_every_caption(dataset):
    vocab = demo.caption_vocabulary()
    assert vocab == sorted(set(vocab))
    assert all(re.fullmatch(r"[a-z]+", w) for w in vocab)
    words = set(vocab)
    captions, _ = _load(dataset)
    for split in SPLITS:
        for t in captions[split]:
            assert set(t["caption"].split()) <= words, t["caption"]
            assert t["caption"] == " ".join(t["caption"].split())
    # Many more families than the dataset holds, without rendering: every template is drawn.
    seen = set()
    for i in range(200):
        family = make_family(np.random.default_rng([7, i]))
        for v in family.variants:
            for caption in (v.forward, v.backward):
                assert set(caption.split()) <= words, caption
                seen.update(caption.split())
    assert len(seen) > 0.9 * len(words)
    for must in ("red", "circle", "triangles", "add", "remove", "move", "bigger", "three"):
        assert must in words


def test_captions_name_the_edit():
    """Each variant differs from the base by exactly the edit its caption states."""
    for i in range(100):
        family = make_family(np.random.default_rng([3, i]))
        base = family.base
        assert 1 <= len(base) <= MAX_OBJECTS
        assert len({(o.color, o.shape) for o in base}) == len(base)
        assert len(family.variants) == demo.IMAGES_PER_FAMILY - 1
        for v in family.variants:
            assert 1 <= len(v.scene) <= MAX_OBJECTS
            assert len({o.cell for o in v.scene}) == len(v.scene)  # never two in one cell
            if v.edit == "add":
                (new,) = set(v.scene) - set(base)
                assert new.color in v.forward and new.shape in v.forward
            elif v.edit == "remove":
                (gone,) = set(base) - set(v.scene)
                assert gone.shape in v.forward or gone.color in v.forward
            elif v.edit == "color":
                (new,) = set(v.scene) - set(base)
                (old,) = set(base) - set(v.scene)
                assert new.color in v.forward.split() and old.color in v.backward.split()
            elif v.edit == "count":
                assert len(v.scene) > len(base)
                (copy, *_) = set(v.scene) - set(base)
                for caption in (v.forward, v.backward):
                    assert copy.color in caption.split() and copy.shape in caption


def test_small_and_empty_splits(tmp_path):
    spec = demo.DemoSpec(seed=3, train_triplets=5, val_triplets=1, test1_triplets=0)
    manifest = demo.generate_demo(tmp_path, spec, progress=False)
    assert manifest["triplets"] == {"train": 5, "val": 1, "test1": 0}
    assert manifest["images"] == {"train": 12, "val": 6, "test1": 0}
    captions, splits = _load(tmp_path)
    assert captions["test1"] == [] and splits["test1"] == {}


def test_bad_arguments(tmp_path):
    with pytest.raises(CirflowError, match="train_triplets"):
        demo.generate_demo(tmp_path, demo.DemoSpec(train_triplets=-1), progress=False)
    with pytest.raises(CirflowError, match="seed"):
        demo.generate_demo(tmp_path, demo.DemoSpec(seed=-5), progress=False)


def test_progress_bar_on_stderr(tmp_path, capsys):
    spec = demo.DemoSpec(train_triplets=4, val_triplets=4, test1_triplets=4)
    demo.generate_demo(tmp_path, spec, workers=1)
    captured = capsys.readouterr()
    assert "demo dataset" in captured.err
    assert captured.out == ""


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["demo-data", "--out", str(out), "--seed", "2", "--train-triplets", "8"]
    argv += ["--val-triplets", "4", "--test1-triplets", "4", "--no-progress"]
    assert cli.main(argv) == 0
    manifest = json.loads((out / "demo_manifest.json").read_text())
    assert manifest["seed"] == 2
    assert manifest["triplets"] == {"train": 8, "val": 4, "test1": 4}
    assert cli.main(["demo-data", "--out", str(out), "--val-triplets", "-3"]) == 2
    assert "val_triplets" in capsys.readouterr().err


def test_smaller_rerun_leaves_no_stale_images(tmp_path):
    out = tmp_path / "demo"
    spec = demo.DemoSpec(seed=0, train_triplets=12, val_triplets=8, test1_triplets=8)
    demo.generate_demo(out, spec, progress=False)
    spec = demo.DemoSpec(seed=0, train_triplets=4, val_triplets=4, test1_triplets=4)
    demo.generate_demo(out, spec, progress=False)
    listed = set()
    for split in ("train", "val", "test1"):
        split_map = json.loads((out / f"cirr/image_splits/split.rc2.{split}.json").read_text())
        listed |= {(out / rel).resolve() for rel in split_map.values()}
    on_disk = {p.resolve() for p in out.rglob("*.png")}
    assert on_disk == listed


def test_never_clears_a_folder_that_is_not_a_demo(tmp_path):
    precious = tmp_path / "real" / "train" / "0" / "photo.png"
    precious.parent.mkdir(parents=True)
    precious.write_bytes(b"user data")
    spec = demo.DemoSpec(seed=0, train_triplets=4, val_triplets=4, test1_triplets=4)
    demo.generate_demo(tmp_path / "real", spec, progress=False)
    assert precious.read_bytes() == b"user data"


# --- scene descriptions and edit types --------------------------------------------------------

SIZE_OF_WORD = {w: size for size, words in SIZE_WORDS.items() for w in words}


def _parse_description(text: str) -> list[tuple[str, str, str, int]]:
    """(size, colour, shape, cell) of every object a description names, in its order. Position
    words are read as keywords (top/upper, bottom/lower, left, right; else the middle)."""
    objects = []
    for phrase in text.split(" and "):
        words = phrase.split()
        (i,) = [k for k, w in enumerate(words) if w in SHAPES]
        assert i == 3 and words[0] == ("an" if words[1][0] in "aeiou" else "a"), phrase
        size, color, shape = SIZE_OF_WORD[words[1]], words[2], words[3]
        assert color in COLORS, phrase
        where = set(words[4:])
        row = 0 if where & {"top", "upper"} else 2 if where & {"bottom", "lower"} else 1
        col = 0 if "left" in where else 2 if "right" in where else 1
        objects.append((size, color, shape, 3 * row + col))
    return objects


def _box_cell(box: list[float]) -> int:
    """The grid cell that holds a ground-truth box's centre."""
    cw = (1 - 2 * MARGIN) / 3
    col, row = (int(((a + b) / 2 - MARGIN) // cw) for a, b in ((box[0], box[2]), (box[1], box[3])))
    return 3 * min(max(row, 0), 2) + min(max(col, 0), 2)


def _edit_between(ref: list[tuple], target: list[tuple]) -> str:
    """The edit that turns the parsed reference scene into the parsed target scene."""
    gone, new = set(ref) - set(target), set(target) - set(ref)
    if len(gone) == 1 and len(new) == 1:
        ((g,), (n,)) = gone, new
        differ = [
            field
            for field, a, b in zip(("resize", "color", "shape", "move"), g, n, strict=True)
            if a != b
        ]
        assert len(differ) == 1, (ref, target)
        return differ[0]
    pairs_ref, pairs_target = {o[1:3] for o in ref}, {o[1:3] for o in target}
    if new and not gone:
        return "count" if all(o[1:3] in pairs_ref for o in new) else "add"
    if gone and not new:
        return "count" if all(o[1:3] in pairs_target for o in gone) else "remove"
    raise AssertionError(f"no single edit between {ref} and {target}")


def test_descriptions_cover_every_image_of_every_split(dataset):
    _, splits = _load(dataset)
    text = (dataset / DESCRIPTIONS_FILE).read_text()
    descriptions = json.loads(text)
    assert list(descriptions) == sorted(descriptions)  # keys sorted
    assert set(descriptions) == {n for s in SPLITS for n in splits[s]}
    assert load_descriptions(dataset) == descriptions
    val = load_descriptions(dataset, splits["val"])
    assert list(val) == list(splits["val"])


def test_descriptions_name_every_object_where_it_is(dataset):
    """One shape word per object (= boxes_gt.json's box count), row-major by cell, each at the
    cell its ground-truth box is in."""
    descriptions = load_descriptions(dataset)
    boxes = json.loads((dataset / "boxes_gt.json").read_text())
    for name, text in descriptions.items():
        words = text.split()
        assert sum(w in SHAPES for w in words) == len(boxes[name]), (name, text)
        objects = _parse_description(text)
        cells = [o[3] for o in objects]
        assert cells == sorted(set(cells)), text  # fixed order: row-major by cell
        assert sorted(cells) == sorted(_box_cell(b) for b in boxes[name]), (name, text)
        assert text == " ".join(words)  # single spaces, no punctuation


def test_descriptions_are_deterministic_and_vary_only_in_wording():
    """Same family -> same text; the description stream never changes the scenes or captions."""
    for i in range(30):
        a = make_family(family_rng(0, "train", i))
        b = make_family(family_rng(0, "train", i))
        assert [v.forward for v in a.variants] == [v.forward for v in b.variants]
        texts = [describe(description_rng(0, "train", i), a.base) for _ in range(2)]
        assert texts[0] == texts[1]
        assert _parse_description(texts[0]) == sorted(
            ((SIZES[o.size], o.color, o.shape, o.cell) for o in a.base), key=lambda o: o[3]
        )


def test_descriptions_use_only_vocabulary_words(dataset):
    """Every description word is one whole token of the tiny vocabulary (no [UNK], no pieces)."""
    from transformers import BertTokenizer

    from cirflow.model.presets import TINY_VOCAB_FILE
    from cirflow.model.vocab import build_tiny_vocab

    vocab = set(demo.description_vocabulary())
    assert vocab <= set(build_tiny_vocab())
    tokenizer = BertTokenizer(vocab_file=str(TINY_VOCAB_FILE), do_lower_case=True)
    texts = list(load_descriptions(dataset).values())
    # Many more scenes than the dataset holds, without rendering: every phrasing is drawn.
    for i in range(200):
        family = make_family(np.random.default_rng([11, i]))
        rng = np.random.default_rng([11, i, 1])
        texts += [describe(rng, s) for s in (family.base, *(v.scene for v in family.variants))]
    seen = set()
    for text in texts:
        words = text.split()
        assert set(words) <= vocab, text
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids and len(ids) == len(words), text
        seen.update(words)
    assert seen == vocab, sorted(vocab - seen)


def _sidecar(root: Path, split: str) -> dict[str, str]:
    return json.loads(edits_file(root, split).read_text())


def test_edit_type_sidecar_matches_the_captions(dataset):
    captions, _ = _load(dataset)
    for split in SPLITS:
        sidecar = _sidecar(dataset, split)
        assert list(sidecar) == [str(t["pairid"]) for t in captions[split]]
        assert set(sidecar.values()) <= set(EDIT_TYPES)
        assert load_edit_types(dataset, split) == {int(k): v for k, v in sidecar.items()}
    # The caption files stay exactly CIRR's: no extra field anywhere.
    for t in captions["val"]:
        assert "edit" not in json.dumps(t)


def test_edit_types_are_what_the_scenes_show(dataset):
    """Reference -> target, read from the two images' descriptions, is the recorded edit (a
    variant -> base triplet of an `add` is a `remove`), and the caption's words fit it."""
    captions, _ = _load(dataset)
    descriptions = load_descriptions(dataset)
    number_words = {*NUMBERS.values(), "another", "duplicate", "single"}
    resize_words = {
        *SIZE_OF_WORD,
        "bigger",
        "larger",
        "enlarge",
        "smaller",
        "shrink",
        "size",
        "scale",
    }
    place_words = {"top", "bottom", "left", "right", "center", "centre", "middle", "upper", "lower"}
    seen = Counter()
    for split in ("train", "val"):
        sidecar = _sidecar(dataset, split)
        for t in captions[split]:
            edit = sidecar[str(t["pairid"])]
            ref = _parse_description(descriptions[t["reference"]])
            target = _parse_description(descriptions[t["target_hard"]])
            assert _edit_between(ref, target) == edit, (t["caption"], ref, target)
            words = set(t["caption"].split())
            gone, new = set(ref) - set(target), set(target) - set(ref)
            if edit == "color":
                assert next(iter(new))[1] in words, t["caption"]  # the colour it changes to
            elif edit == "shape":
                assert next(iter(new))[2] in words, t["caption"]  # the shape it becomes
            elif edit == "add":
                (obj,) = new
                assert {obj[1], obj[2]} <= words, t["caption"]
            elif edit == "remove":
                (obj,) = gone
                assert obj[1] in words or obj[2] in words, t["caption"]
            elif edit == "count":
                assert words & number_words, t["caption"]
            elif edit == "resize":
                assert words & resize_words, t["caption"]
            else:
                assert words & place_words, t["caption"]
            seen[edit] += 1
    assert set(seen) == set(EDIT_TYPES)
