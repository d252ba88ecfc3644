"""The embedded FashionIQ demo generator: FashionIQ's layout and shapes, determinism, captions
that name their edits truthfully and single out the target, boxes that cover each edit."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from cirflow.data import demo_fashioniq as fiq
from cirflow.data.box_format import box_problem
from cirflow.data.demo_fashioniq.garment import (
    ATTRIBUTES,
    COLORS,
    LENGTHS,
    SLEEVES,
    edit_types,
    luma,
)
from cirflow.data.demo_fashioniq.generate import Job, family_jobs, plan_family
from cirflow.data.demo_fashioniq.render import render, seed_boxes
from cirflow.data.descriptions import DESCRIPTIONS_FILE, load_descriptions
from cirflow.errors import CirflowError

CATEGORIES, SPLITS = ("dress", "shirt", "toptee"), ("train", "val", "test")
# Not multiples of 3 triplets per family: every split ends with a partial family.
SPEC = fiq.FashionIQDemoSpec(seed=0, train_triplets=20, val_triplets=13, test_triplets=7)
COUNTS = {"train": 20, "val": 13, "test": 7}
FAMILIES = {s: -(-n // fiq.TRIPLETS_PER_FAMILY) for s, n in COUNTS.items()}
ENTRY_KEYS = {
    "train": ["target", "candidate", "captions"],
    "val": ["target", "candidate", "captions"],
}
ENTRY_KEYS["test"] = ["candidate", "captions"]
REAL_FASHIONIQ = REPO.parent / "shared" / "fashioniq"
# The parts each edit changes the pixels of (boxes_gt.json holds their boxes).
EDITED_PARTS = {
    "color": ("garment",),
    "pattern": ("garment",),
    "sleeves": ("sleeve_left", "sleeve_right"),
    "length": ("skirt",),
    "neckline": ("neckline",),
    "graphic": ("graphic",),
}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _read(root: Path, kind: str, category: str, split: str):
    folder, prefix = {"cap": ("captions", "cap"), "edits": ("captions", "edits")}.get(
        kind, ("image_splits", "split")
    )
    return json.loads((root / folder / f"{prefix}.{category}.{split}.json").read_text())


def _family_of(name: str) -> str:
    return name.rsplit("-", 1)[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fiq") / "dataset"
    fiq.generate_fashioniq_demo(root, replace(SPEC, workers=2), progress=False)
    return root


def _plans(spec: fiq.FashionIQDemoSpec):
    """The generator's own record of every family of `spec`: {(category, split): [plan, ...]}."""
    plans: dict[tuple[str, str], list] = {}
    for job in family_jobs(spec):
        plans.setdefault((job.category, job.split), []).append(plan_family(job))
    return plans


@pytest.fixture(scope="module")
def record():
    """{image name: (garment, its family's plan)} for every image of SPEC."""
    out = {}
    for plans in _plans(SPEC).values():
        for plan in plans:
            for name, garment in zip(plan.names, plan.garments, strict=True):
                out[name] = (garment, plan)
    return out


# --- layout, counts, shapes -------------------------------------------------------------------


def test_spec_defaults_and_sizes():
    spec = fiq.FashionIQDemoSpec()
    assert (spec.seed, spec.train_triplets, spec.val_triplets, spec.test_triplets) == (
        0,
        1200,
        200,
        100,
    )
    assert spec.image_size == 96 and spec.workers is None
    jobs = family_jobs(spec)
    val_images = sum(
        fiq.IMAGES_PER_FAMILY for j in jobs if (j.category, j.split) == ("dress", "val")
    )
    assert 380 <= val_images <= 420  # a val gallery of ~400 images for 200 queries per category


def test_layout_and_counts(dataset):
    files = set(_files(dataset))
    expected = {"boxes_gt.json", DESCRIPTIONS_FILE, "demo_manifest.json"}
    names = []
    for c in CATEGORIES:
        for s in SPLITS:
            expected |= {
                f"captions/cap.{c}.{s}.json",
                f"captions/edits.{c}.{s}.json",
                f"image_splits/split.{c}.{s}.json",
            }
            split = _read(dataset, "split", c, s)
            assert len(_read(dataset, "cap", c, s)) == COUNTS[s]
            assert len(split) == FAMILIES[s] * fiq.IMAGES_PER_FAMILY == len(set(split))
            names += split
    expected |= {f"images/{n}.png" for n in names}
    assert files == expected  # nothing missing, nothing else
    assert len(names) == len(set(names))  # an image is in one category and split only
    for name in names[:: max(1, len(names) // 20)]:
        with Image.open(dataset / "images" / f"{name}.png") as image:
            assert image.format == "PNG" and image.mode == "RGB"
            assert image.size == (SPEC.image_size, SPEC.image_size)


def test_files_have_fashioniq_shapes(dataset):
    for c in CATEGORIES:
        for s in SPLITS:
            split = _read(dataset, "split", c, s)
            assert isinstance(split, list) and all(isinstance(n, str) and n for n in split)
            for entry in _read(dataset, "cap", c, s):
                assert list(entry) == ENTRY_KEYS[s]
                assert all(isinstance(entry[k], str) for k in ENTRY_KEYS[s][:-1])
                captions = entry["captions"]
                assert isinstance(captions, list) and len(captions) == 2
                assert all(isinstance(t, str) and t for t in captions)


def _shape(value) -> object:
    """A JSON value's shape: types of its keys' values, list lengths of strings."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return ("list", len(value), {type(v).__name__ for v in value})
    return type(value).__name__


def test_files_load_as_the_real_fashioniq_ones(dataset):
    """Key sets and types of an entry, and the split files' element type, as a real copy's."""
    if not (REAL_FASHIONIQ / "captions" / "cap.dress.val.json").is_file():
        pytest.skip(f"real FashionIQ annotation files not found at {REAL_FASHIONIQ}")
    for split in SPLITS:
        real = json.loads((REAL_FASHIONIQ / f"captions/cap.dress.{split}.json").read_text())
        ours = _read(dataset, "cap", "dress", split)
        assert type(ours) is type(real) is list
        assert _shape(ours[0]) == _shape(real[0])
        assert list(ours[0]) == list(real[0])  # same keys, same order
        real_split = json.loads(
            (REAL_FASHIONIQ / f"image_splits/split.dress.{split}.json").read_text()
        )
        ours_split = _read(dataset, "split", "dress", split)
        assert type(real_split) is type(ours_split) is list
        assert {type(n) for n in real_split} == {type(n) for n in ours_split} == {str}


def test_candidates_and_targets_are_in_their_category_split(dataset):
    for c in CATEGORIES:
        for s in SPLITS:
            split = set(_read(dataset, "split", c, s))
            used = set()
            for entry in _read(dataset, "cap", c, s):
                assert entry["candidate"] in split
                used.add(entry["candidate"])
                if s != "test":
                    assert entry["target"] in split and entry["target"] != entry["candidate"]
                    assert _family_of(entry["target"]) == _family_of(entry["candidate"])
                    used.add(entry["target"])
            # The split holds more than the triplets' images: the gallery's distractors.
            assert len(split) > len(used)


def test_test_entries_have_no_target(dataset):
    for c in CATEGORIES:
        entries = _read(dataset, "cap", c, "test")
        assert entries and all("target" not in e for e in entries)
        assert all("target" in e for s in ("train", "val") for e in _read(dataset, "cap", c, s))


def test_manifest(dataset):
    manifest = json.loads((dataset / "demo_manifest.json").read_text())
    assert manifest["generator"] == "cirflow.data.demo_fashioniq"
    assert manifest["version"] == fiq.GENERATOR_VERSION
    assert (manifest["seed"], manifest["image_size"]) == (0, 96)
    assert manifest["triplets"] == {c: COUNTS for c in CATEGORIES}
    assert manifest["images"] == {
        c: {s: FAMILIES[s] * fiq.IMAGES_PER_FAMILY for s in SPLITS} for c in CATEGORIES
    }
    boxes = json.loads((dataset / "boxes_gt.json").read_text())
    assert manifest["boxes"] == sum(len(b) for b in boxes.values())
    for c in CATEGORIES:
        listed = [e for s in SPLITS for e in _read(dataset, "edits", c, s).values()]
        counted = Counter(t for e in listed for t in e)
        assert manifest["edits"][c] == {t: counted[t] for t in edit_types(c)}
        assert manifest["two_edit_triplets"][c] == sum(len(e) == 2 for e in listed)
        for s in SPLITS:
            assert (dataset / manifest["files"]["edit_types"][c][s]).is_file()


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_same_bytes_whatever_the_workers(dataset, tmp_path):
    again = tmp_path / "again"
    fiq.generate_fashioniq_demo(again, replace(SPEC, workers=1), progress=False)
    first, second = _files(dataset), _files(again)
    assert sorted(first) == sorted(second)
    assert [n for n in first if first[n] != second[n]] == []


def test_other_seed_other_data(dataset, tmp_path):
    other = tmp_path / "other"
    fiq.generate_fashioniq_demo(other, replace(SPEC, seed=1, workers=1), progress=False)
    first, second = _files(dataset), _files(other)
    for name in ("boxes_gt.json", DESCRIPTIONS_FILE, "captions/cap.shirt.val.json"):
        assert first[name] != second[name]
    pngs = [n for n in first if n.endswith(".png")]
    assert sum(first[n] != second[n] for n in pngs) > 0.9 * len(pngs)


# --- families, captions, edits --------------------------------------------------------------


def test_record_matches_the_files(dataset, record):
    """The generator's plan (used by the tests below) is what was written."""
    plans = _plans(SPEC)
    for (c, s), family_plans in plans.items():
        assert _read(dataset, "split", c, s) == [n for p in family_plans for n in p.names]
        entries = _read(dataset, "cap", c, s)
        triplets = [t for p in family_plans for t in p.triplets]
        assert [e["candidate"] for e in entries] == [t[0] for t in triplets]
        assert [e["captions"] for e in entries] == [t[2] for t in triplets]
        if s != "test":
            assert [e["target"] for e in entries] == [t[1] for t in triplets]


def test_edit_sidecar_names_the_attributes_that_differ(dataset, record):
    for c in CATEGORIES:
        for s in SPLITS:
            entries = _read(dataset, "cap", c, s)
            edits = _read(dataset, "edits", c, s)
            assert list(edits) == [str(i) for i in range(len(entries))]
            plan_triplets = [t for p in _plans(SPEC)[(c, s)] for t in p.triplets]
            for i, entry in enumerate(entries):
                target = entry.get("target", plan_triplets[i][1])
                (cand, _), (tgt, _) = record[entry["candidate"]], record[target]
                differ = [a for a in ATTRIBUTES if getattr(cand, a) != getattr(tgt, a)]
                assert edits[str(i)] == differ
                assert 1 <= len(differ) <= 2 and set(differ) <= set(edit_types(c))


def test_family_members_are_distinct_images(dataset, record):
    families: dict[str, list[str]] = {}
    for c in CATEGORIES:
        for name in _read(dataset, "split", c, "val"):
            families.setdefault(_family_of(name), []).append(name)
    assert len(families) == len(CATEGORIES) * FAMILIES["val"]
    for names in families.values():
        assert len(names) == fiq.IMAGES_PER_FAMILY
        assert len({record[n][0] for n in names}) == len(names)  # distinct garments
    for c in CATEGORIES:  # many more families, without rendering
        for index in range(150):
            plan = plan_family(Job(5, c, "train", index, fiq.TRIPLETS_PER_FAMILY, 96, "."))
            assert len(set(plan.garments)) == fiq.IMAGES_PER_FAMILY, plan.garments
        arrays = [np.asarray(Image.open(dataset / "images" / f"{n}.png")) for n in names]
        for i in range(len(arrays)):
            for j in range(i + 1, len(arrays)):
                assert not np.array_equal(arrays[i], arrays[j]), (names[i], names[j])


# What a caption says, read with its own small grammar (independent of the generator's
# templates): claims ("is", attribute, value) / ("not", attribute, value) on a garment, or
# ("rel", attribute, direction) on the change from the candidate to the target.
ACCENT_NOUNS = {"stripes", "dots", "polka", "flowers", "floral", "star", "circle"}


def _absolute(text: str) -> set[tuple[str, str, str]]:
    claims = set()
    words = text.split()
    for i, w in enumerate(words):
        if w in COLORS:
            follows = words[i + 1] if i + 1 < len(words) else ""
            claims.add(("accent", w) if follows in ACCENT_NOUNS else ("color", w))
    claims = {("is", *c) for c in claims}
    if re.search(r"\bno pattern\b|\bplain\b|\bsolid\b", text):
        claims.add(("is", "pattern", "solid"))
    for pattern, value in (("striped|stripes", "stripes"), ("dotted|dots", "dots")):
        if re.search(rf"\b({pattern})\b", text):
            claims.add(("is", "pattern", value))
    if re.search(r"\b(floral|flowers?)\b", text):
        claims.add(("is", "pattern", "floral"))
    if re.search(r"\bsleeveless\b|\bno sleeves\b|\bsleeves removed\b", text):
        claims.add(("is", "sleeves", "none"))
    elif re.search(r"\bshort sleeve", text):
        claims.add(("is", "sleeves", "short"))
    elif re.search(r"\blong sleeve", text):
        claims.add(("is", "sleeves", "long"))
    elif re.search(r"\bsleeves\b", text) and not re.search(r"(longer|shorter) sleeves", text):
        claims.add(("not", "sleeves", "none"))
    rest = re.sub(r"\b(short|long|shorter|longer) sleeve[sd]?\b", "", text)
    if re.search(r"\bshort\b|\bmini\b|above the knee", rest):
        claims.add(("is", "length", "short"))
    elif re.search(r"knee length|\bmidi\b", rest):
        claims.add(("is", "length", "knee"))
    elif re.search(r"\blong\b|\bmaxi\b|floor length", rest):
        claims.add(("is", "length", "long"))
    if re.search(r"\bno collar\b", text):
        claims.add(("not", "neckline", "collar"))
    elif re.search(r"\bcollar", text):
        claims.add(("is", "neckline", "collar"))
    if re.search(r"\b(round|crew|scoop) neck", text):
        claims.add(("is", "neckline", "round"))
    if re.search(r"\bv neck", text):
        claims.add(("is", "neckline", "v"))
    if re.search(r"\bno (logo|graphic|star|circle)\b|\blogo removed\b", text):
        claims.add(("is", "graphic", "none"))
    else:
        for graphic in ("star", "circle"):
            if re.search(rf"\b{graphic}\b", text):
                claims.add(("is", "graphic", graphic))
    return claims


def _relative(text: str) -> set[tuple[str, str, str]]:
    claims = set()
    if re.search(r"\bdarker\b", text):
        claims.add(("rel", "color", "darker"))
    if re.search(r"\b(lighter|brighter)\b", text):
        claims.add(("rel", "color", "lighter"))
    for word in ("longer", "shorter"):
        if re.search(rf"\b{word} sleeves\b", text):
            claims.add(("rel", "sleeves", word))
        rest = re.sub(r"\b(longer|shorter) sleeves\b", "", text)
        if re.search(rf"\bmuch {word}\b", rest):
            claims.add(("rel", "length", "much " + word))
        elif re.search(rf"\b{word}\b", rest):
            claims.add(("rel", "length", word))
    if re.search(r"\b(lower|deeper) neckline\b", text):
        claims.add(("rel", "neckline", "lower"))
    if re.search(r"\bhigher neckline\b", text):
        claims.add(("rel", "neckline", "higher"))
    return claims


def _read_caption(caption: str) -> tuple[set, set]:
    """(claims on the target, claims on the candidate): each clause ("and" / "with") is read
    apart; what follows "instead of" or "not" in a clause describes the candidate, and what the
    target is not."""
    on_target, on_candidate = set(), set()
    for clause in re.split(r" and | with ", caption):
        negated = re.match(r"(is )?not ", clause)
        if negated:
            parts = ["is", clause[negated.end() :]]
        else:
            parts = re.split(r" instead of | not ", clause, maxsplit=1)
        on_target |= _absolute(parts[0]) | _relative(parts[0])
        if len(parts) == 2:
            was = _absolute(parts[1])
            on_candidate |= was
            # ... and what the target no longer is ("is not striped" names the pattern)
            on_target |= {("not", a, v) for k, a, v in was if k == "is" and a != "accent"}
    return on_target, on_candidate


def _holds(claim, garment, accent, candidate=None) -> bool:
    kind, attribute, value = claim
    if attribute == "accent":
        return accent == value
    if kind == "is":
        return getattr(garment, attribute) == value
    if kind == "not":
        return getattr(garment, attribute) != value
    before, after = getattr(candidate, attribute), getattr(garment, attribute)
    if attribute == "color":
        step = luma(after) - luma(before)
        return step <= -0.19 if value == "darker" else step >= 0.19
    if attribute == "neckline":
        return (before, after) == (("round", "v") if value == "lower" else ("v", "round"))
    order = SLEEVES if attribute == "sleeves" else LENGTHS
    step = order.index(after) - order.index(before)
    return {"longer": step > 0, "shorter": step < 0, "much longer": step == 2}.get(
        value, step == -2
    )


def _check_triplet(candidate, target, captions, members, accent) -> None:
    """The captions are true of the candidate and target, name only edited attributes among
    those that differ, name every edit between them, and one of them singles out the target
    among the family (with the candidate's other attributes unchanged)."""
    edits = {a for a in ATTRIBUTES if getattr(candidate, a) != getattr(target, a)}
    assert len(captions) == 2 and captions[0] != captions[1], captions
    read = [_read_caption(c) for c in captions]
    named_sets = []
    for caption, (on_target, on_candidate) in zip(captions, read, strict=True):
        assert caption == " ".join(caption.split()) and caption == caption.lower()
        assert caption.split()[0] in ("is", "has"), caption
        for claim in on_target:
            assert _holds(claim, target, accent, candidate), (caption, claim, candidate, target)
        for claim in on_candidate:
            assert _holds(claim, candidate, accent), (caption, claim, candidate, target)
        named = {a for _, a, _ in on_target if a != "accent"} & edits
        assert named, (caption, edits)  # every caption names at least one edit
        named_sets.append(named)
    assert set().union(*named_sets) == edits, (captions, edits)
    identifying = 0
    for on_target, _ in read:
        named = {a for _, a, _ in on_target}
        fits = [
            m
            for m in members
            if all(_holds(c, m, accent, candidate) for c in on_target)
            and all(getattr(m, a) == getattr(candidate, a) for a in ATTRIBUTES if a not in named)
        ]
        identifying += fits == [target]
    assert identifying >= 1, (captions, candidate, target)


def test_captions_name_the_edits_and_single_out_the_target(dataset, record):
    for c in CATEGORIES:
        for s in ("train", "val"):
            for entry in _read(dataset, "cap", c, s):
                candidate, plan = record[entry["candidate"]]
                target, _ = record[entry["target"]]
                members = list(plan.garments)
                _check_triplet(candidate, target, entry["captions"], members, plan.family.accent)


def test_captions_of_many_families():
    """Without rendering: 150 families per category, every caption template drawn, each edit
    type of each category seen, one or two edits, a change caption naming one of two edits."""
    seen_edits = Counter()
    partial = 0
    for c in CATEGORIES:
        for index in range(150):
            plan = plan_family(Job(7, c, "train", index, fiq.TRIPLETS_PER_FAMILY, 96, "."))
            family = plan.family
            for variant in family.variants:
                seen_edits[(c, variant.edits)] += 1
                for a, b, captions in (
                    (family.base, variant.garment, variant.forward),
                    (variant.garment, family.base, variant.backward),
                ):
                    _check_triplet(a, b, captions, plan.garments, family.accent)
                    named = [
                        {x for _, x, _ in _read_caption(t)[0]} & set(variant.edits)
                        for t in captions
                    ]
                    partial += len(variant.edits) == 2 and min(len(n) for n in named) == 1
    for c in CATEGORIES:
        singles = {e for (cat, e) in seen_edits if cat == c and len(e) == 1}
        assert singles == {(t,) for t in edit_types(c)}
        assert sum(n for (cat, e), n in seen_edits.items() if cat == c and len(e) == 2) > 100
    assert partial > 50


def test_vocabularies_cover_every_caption_and_description(dataset):
    captions_vocab, description_vocab = fiq.caption_vocabulary(), fiq.description_vocabulary()
    for vocab in (captions_vocab, description_vocab):
        assert vocab == sorted(set(vocab)) and all(re.fullmatch(r"[a-z]+", w) for w in vocab)
    seen = set()
    for c in CATEGORIES:
        for s in SPLITS:
            for entry in _read(dataset, "cap", c, s):
                for caption in entry["captions"]:
                    assert set(caption.split()) <= set(captions_vocab), caption
                    seen.update(caption.split())
    for c in CATEGORIES:
        for index in range(100):
            plan = plan_family(Job(11, c, "val", index, fiq.TRIPLETS_PER_FAMILY, 96, "."))
            for v in plan.family.variants:
                for caption in (*v.forward, *v.backward):
                    assert set(caption.split()) <= set(captions_vocab), caption
                    seen.update(caption.split())
    assert len(seen) > 0.95 * len(captions_vocab)
    for text in load_descriptions(dataset).values():
        assert set(text.split()) <= set(description_vocab), text


# --- boxes and pixels -----------------------------------------------------------------------


def _labelled_boxes(garment, plan, size=SPEC.image_size):
    family = plan.family
    return render(garment, family.look, family.pattern, family.accent, family.background, size)


def _pixels(dataset: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(dataset / "images" / f"{name}.png")).astype(int)


def test_boxes_are_valid_and_in_the_seed_format(dataset, record):
    boxes = json.loads((dataset / "boxes_gt.json").read_text())
    assert set(boxes) == set(record)
    for name, image_boxes in boxes.items():
        assert 2 <= len(image_boxes) <= 6  # the garment and its neckline at least
        for box in image_boxes:
            assert box_problem(box) is None, (name, box)
        areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in image_boxes]
        assert areas == sorted(areas, reverse=True)


def test_boxes_cover_each_edit(dataset, record):
    """Where candidate and target differ, the pixels lie in the boxes of the edited parts (in
    the candidate or the target); those parts are smaller than the garment for every edit but
    colour and pattern; and boxes_gt.json holds exactly the parts' boxes."""
    boxes = json.loads((dataset / "boxes_gt.json").read_text())
    size = SPEC.image_size
    checked = Counter()
    for c in CATEGORIES:
        for s in ("train", "val"):
            for entry in _read(dataset, "cap", c, s):
                names = (entry["candidate"], entry["target"])
                (candidate, plan), (target, _) = record[names[0]], record[names[1]]
                parts = []
                for name, garment in zip(names, (candidate, target), strict=True):
                    image, labelled = _labelled_boxes(garment, plan)
                    assert np.array_equal(np.asarray(image), _pixels(dataset, name))
                    assert seed_boxes(labelled) == boxes[name]
                    parts.append(labelled)
                edits = [a for a in ATTRIBUTES if getattr(candidate, a) != getattr(target, a)]
                covered = np.zeros((size, size), bool)
                for edit in edits:
                    for labelled in parts:
                        for part in EDITED_PARTS[edit]:
                            if part not in labelled:
                                continue
                            x1, y1, x2, y2 = labelled[part]
                            if edit not in ("color", "pattern"):
                                garment_box = labelled["garment"]
                                assert (x2 - x1) * (y2 - y1) < 0.8 * (
                                    (garment_box[2] - garment_box[0])
                                    * (garment_box[3] - garment_box[1])
                                )
                            # one pixel of slack: the edges are anti-aliased
                            covered[
                                max(0, int(y1 * size) - 1) : int(np.ceil(y2 * size)) + 1,
                                max(0, int(x1 * size) - 1) : int(np.ceil(x2 * size)) + 1,
                            ] = True
                diff = np.abs(_pixels(dataset, names[0]) - _pixels(dataset, names[1])).max(axis=2)
                changed = diff > 8
                assert changed.any(), names
                assert not (changed & ~covered).any(), (names, edits)
                checked.update(edits)
    assert set(checked) == set(ATTRIBUTES)  # every edit type checked


def test_every_edit_is_visible_at_the_models_64_px(dataset, record):
    """At the tiny model's input (bicubic to 64 x 64), a triplet's candidate and target still
    differ clearly: at least 20 pixels by more than 40 grey levels on a channel (a collar's
    flaps, the smallest edit, change ~30)."""
    for c in CATEGORIES:
        for s in ("train", "val"):
            for entry in _read(dataset, "cap", c, s):
                small = [
                    np.asarray(
                        Image.open(dataset / "images" / f"{entry[k]}.png").resize(
                            (64, 64), Image.Resampling.BICUBIC
                        )
                    ).astype(int)
                    for k in ("candidate", "target")
                ]
                changed = np.abs(small[0] - small[1]).max(axis=2) > 40
                assert changed.sum() >= 20, (entry, int(changed.sum()))


# --- descriptions -------------------------------------------------------------------------------


def test_descriptions_name_every_image_and_its_attributes(dataset, record):
    descriptions = json.loads((dataset / DESCRIPTIONS_FILE).read_text())
    assert list(descriptions) == sorted(descriptions) and set(descriptions) == set(record)
    assert load_descriptions(dataset) == descriptions
    for name, text in descriptions.items():
        garment, plan = record[name]
        on_garment, _ = _read_caption(text)
        for claim in on_garment:
            assert _holds(claim, garment, plan.family.accent), (text, claim, garment)
        named = {a for _, a, _ in on_garment}
        wanted = {"color", "sleeves", "neckline"} | (
            {"length"} if garment.category == "dress" else set()
        )
        wanted |= {"graphic"} if garment.graphic != "none" else set()
        wanted |= {"pattern"}
        assert wanted <= named, (text, garment)


# --- reruns and arguments -----------------------------------------------------------------------


def test_smaller_rerun_leaves_no_stale_images(tmp_path):
    out = tmp_path / "demo"
    fiq.generate_fashioniq_demo(out, replace(SPEC, train_triplets=9, workers=1), progress=False)
    small = replace(SPEC, train_triplets=3, val_triplets=3, test_triplets=0, workers=1)
    fiq.generate_fashioniq_demo(out, small, progress=False)
    listed = {n for c in CATEGORIES for s in SPLITS for n in _read(out, "split", c, s)}
    assert {p.stem for p in (out / "images").glob("*.png")} == listed
    assert all(_read(out, "cap", c, "test") == [] for c in CATEGORIES)


def test_never_clears_a_folder_that_is_not_its_demo(tmp_path):
    precious = tmp_path / "real" / "images" / "B00ABC.png"
    precious.parent.mkdir(parents=True)
    precious.write_bytes(b"user data")
    (tmp_path / "real" / "demo_manifest.json").write_text('{"generator": "cirflow.data.demo"}')
    small = fiq.FashionIQDemoSpec(train_triplets=3, val_triplets=3, test_triplets=3, workers=1)
    fiq.generate_fashioniq_demo(tmp_path / "real", small, progress=False)
    assert precious.read_bytes() == b"user data"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"train_triplets": -1}, "train_triplets"),
        ({"seed": 1.5}, "seed"),
        ({"image_size": 16}, "image_size"),
        ({"workers": 0}, "workers"),
        ({"val_triplets": True}, "val_triplets"),
    ],
)
def test_bad_spec(kwargs, message):
    with pytest.raises(CirflowError, match=message):
        fiq.FashionIQDemoSpec(**kwargs)


def test_progress_bar_on_stderr(tmp_path, capsys):
    small = fiq.FashionIQDemoSpec(train_triplets=3, val_triplets=0, test_triplets=0, workers=1)
    fiq.generate_fashioniq_demo(tmp_path, small)
    captured = capsys.readouterr()
    assert "FashionIQ demo" in captured.err and captured.out == ""
