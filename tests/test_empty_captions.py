"""An empty (or whitespace-only) caption is counted and logged, as unreadable images are: its
query is kept, as SPRC keeps it (it then has no words, only its reference image), and the count
and pairids are recorded beside the unreadable images in hparams.json and the details files."""

import json
import logging
import shutil

import pytest
import torch
from conftest import tiny_settings

from cirflow.data.cirr import CirrDataset, captions_file
from cirflow.train.loop import train

BLANK = ["", "   \t ", "..."]  # empty, whitespace only, nothing left once cleaned (blip_caption)


@pytest.fixture
def demo(tiny_demo, tmp_path):
    return shutil.copytree(tiny_demo, tmp_path / "demo")


def blank_captions(root, split, positions) -> list[int]:
    """Blank the captions of the triplets at `positions` (one of BLANK each); their pairids."""
    path = captions_file(root, split)
    triplets = json.loads(path.read_text())
    for k, position in enumerate(positions):
        triplets[position]["caption"] = BLANK[k % len(BLANK)]
    path.write_text(json.dumps(triplets))
    return [triplets[p]["pairid"] for p in positions]


def test_training_keeps_counts_and_logs_empty_captions(demo, tmp_path, caplog):
    train_blank = blank_captions(demo, "train", [1, 4, 6])
    val_blank = blank_captions(demo, "val", [2])
    caplog.set_level(logging.WARNING)
    out = tmp_path / "run"
    train(tiny_settings(demo, out))
    hp = json.loads((out / "hparams.json").read_text())
    counts = hp["unreadable"]
    assert counts["train"]["empty_captions"] == 3
    assert counts["train"]["empty_caption_pairids"] == train_blank
    assert counts["val"]["empty_captions"] == 1
    assert counts["val"]["empty_caption_pairids"] == val_blank
    n_train = len(CirrDataset(demo, "train").triplets)
    assert hp["train_triplets"] == counts["train"]["triplets_used"] == n_train  # all kept
    assert (
        f"train: 3 of {n_train} captions are empty (blank, whitespace or punctuation only)"
        in caplog.text
    )
    assert f"pairids {', '.join(map(str, train_blank))}" in caplog.text


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An (untrained) tiny model in the checkpoint format: evaluation needs no training."""
    from cirflow.model.checkpoints import write_best
    from cirflow.model.presets import get_preset
    from cirflow.model.sprc import SPRC

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt")
    write_best(
        SPRC(get_preset("tiny_scratch")), folder / "r/best.pt", folder / "best.pt", 1, {}, {}
    )
    return folder / "best.pt"


def test_evaluation_records_empty_captions_beside_the_unreadable_images(demo, checkpoint, tmp_path):
    from cirflow.evaluate.run import (
        ScoreFiles,
        SubmissionFiles,
        load_for_evaluation,
        score_split,
        submission_for_model,
    )
    from cirflow.evaluate.settings import EvalSettings

    val_blank = blank_captions(demo, "val", [0, 5])
    test_blank = blank_captions(demo, "test1", [3])
    settings = EvalSettings(device="cpu", batch_size=16, threads=1, progress=False)
    loaded = load_for_evaluation(checkpoint, settings)
    files = ScoreFiles(tmp_path / "val_metrics.json", tmp_path / "val_details.json")
    score_split(loaded, demo, settings, files)
    details = json.loads(files.details.read_text())
    assert details["empty_captions"] == 2 and details["empty_caption_pairids"] == val_blank
    assert details["queries"] == len(CirrDataset(demo, "val").triplets)  # every query kept
    assert details["unreadable_images"] == []
    written = SubmissionFiles(tmp_path / "r.json", tmp_path / "s.json", tmp_path / "d.json")
    submission_for_model(loaded, demo, settings, written)
    test_details = json.loads(written.details.read_text())
    assert test_details["empty_caption_pairids"] == test_blank
    assert str(test_blank[0]) in json.loads(written.recall.read_text())
