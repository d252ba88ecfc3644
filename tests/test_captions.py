"""Captions go through LAVIS's blip_caption preprocessing at training and evaluation, as in SPRC."""

import json

import pytest
from conftest import write_mini_cirr

from cirflow.data.captions import blip_caption

AWKWARD = [
    'Make it "RED"! (and bigger).',
    "Change the dog: to a cat; remove the ~leash~ #now*",
    "  leading and trailing  spaces  ",
    "tabs\tand\t\tdouble tabs, commas, and question marks?",
    "a newline\nin the middle and at the end\n",
    "trailing newline after a dot.\n",
    "\nleading newline",
    "ÜBER große Änderung: İstanbul",
    "...!!!",
    "",
    " ".join(f"w{i}" for i in range(60)),
    " ".join(f"w{i}." for i in range(55)),
    "hyphen-ated and apostrophe's stay, as do [brackets] and {braces} / slashes",
]


def test_steps_by_hand():
    """Expected strings written from the processor's steps, not from the code."""
    assert blip_caption('Make it "RED"! (and bigger).') == "make it red and bigger"
    assert blip_caption("Dog: cat; ~x~ #y*") == "dog cat x y"
    assert blip_caption("  two  spaces  ") == "two spaces"
    # A single tab is not a run of two whitespace characters: it stays (and is not a split point).
    assert blip_caption("a\tb") == "a\tb"
    assert blip_caption("a\t\tb") == "a b"
    assert blip_caption("ends with a newline\n") == "ends with a newline"
    # Commas, question marks, hyphens and apostrophes are kept.
    assert blip_caption("Is it red, or blue? it's dark-red") == "is it red, or blue? it's dark-red"
    words = [f"w{i}" for i in range(60)]
    assert blip_caption(" ".join(words)) == " ".join(words[:50])
    assert blip_caption(" ".join(words[:50])) == " ".join(words[:50])
    assert blip_caption(" ".join(words), max_words=3) == "w0 w1 w2"


@pytest.mark.parametrize("caption", AWKWARD)
def test_same_as_lavis_blip_caption(caption):
    from cirflow.model.lavis_modules import lavis_module

    processors = lavis_module("lavis.processors.blip_processors")
    lavis = processors.BlipCaptionProcessor()  # SPRC's configs: blip_caption, defaults
    assert blip_caption(caption) == lavis(caption)


def test_triplet_tables_tokenise_preprocessed_captions(tmp_path):
    """Training and evaluation tokenise through TripletData: the preprocessed caption, not the raw one."""
    import torch

    from cirflow.data.cirr import CirrDataset
    from cirflow.data.tables import ImageTable, TripletData
    from cirflow.model.lavis_parts import build_tokenizer
    from cirflow.model.presets import get_preset
    from cirflow.model.sprc import SPRC

    root = tmp_path / "cirr"
    write_mini_cirr(root)
    raw = 'Make the square "RED": (bigger)!'
    path = root / "cirr/captions/cap.rc2.val.json"
    triplets = json.loads(path.read_text())
    triplets[0]["caption"] = raw
    path.write_text(json.dumps(triplets))

    tokenizer = build_tokenizer(get_preset("tiny_scratch"))
    dataset = CirrDataset(root, "val")
    data = TripletData(dataset, ImageTable(dataset, 64, "none", progress=False), tokenizer, 24)
    expected = tokenizer(blip_caption(raw), truncation=True, max_length=24)["input_ids"]
    assert data.tokens[0] == expected
    assert data.tokens[0] != tokenizer(raw, truncation=True, max_length=24)["input_ids"]
    assert (
        tokenizer.decode(data.tokens[0], skip_special_tokens=True) == "make the square red bigger"
    )

    # SPRC.tokenize (benchmarks, tests) takes the same path.
    torch.manual_seed(0)
    model = SPRC(get_preset("tiny_scratch"))
    ids, mask = model.tokenize([raw])
    assert ids[0, : int(mask[0].sum())].tolist() == expected
