"""Training on FashionIQ: each step's caption drawn per triplet from a (seed, epoch) generator
(reproducible, resumable, different across epochs), plain shuffled batches, and a short run of
the loop that validates with FashionIQ's protocol and keeps the best epoch by average_recall."""

import csv
import json

import pytest
import torch
from conftest import write_mini_cirr, write_mini_fashioniq

from cirflow.data.captions import blip_caption
from cirflow.data.datasets import open_split
from cirflow.data.fashioniq_captions import TRAINING_FORMS, caption_in_form
from cirflow.data.tables import ImageTable, TripletData
from cirflow.errors import CirflowError
from cirflow.evaluate.fashioniq_recall import metric_keys
from cirflow.train.config import TrainSettings, fingerprint
from cirflow.train.loop import Trainer


class CharTokenizer:
    """Text -> its code points, so that a batch's captions can be read back."""

    pad_token_id = 0

    def __call__(self, texts, truncation=True, max_length=64):
        return {"input_ids": [[ord(c) for c in t[:max_length]] for t in texts]}


def decode(batch) -> list[str]:
    return [
        "".join(chr(i) for i, m in zip(ids, mask, strict=True) if m)
        for ids, mask in zip(batch.input_ids.tolist(), batch.attention_mask.tolist(), strict=True)
    ]


@pytest.fixture(scope="module")
def fiq_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fiq")
    write_mini_fashioniq(root, n_images=8)
    return root


def train_data(root, cache="memory"):
    dataset = open_split("fashioniq", root, "train")
    table = ImageTable(dataset, 16, cache, num_workers=0, progress=False)
    return TripletData(dataset, table, CharTokenizer(), 200)


def epoch_captions(data, seed, epoch, num_workers=0) -> dict[int, str]:
    """pairid -> the caption its triplet trained with in that epoch."""
    out = {}
    for batch in data.batches(4, seed=seed, epoch=epoch, num_workers=num_workers):
        for i, text in zip(batch.indices.tolist(), decode(batch), strict=True):
            out[data.triplets[i]["pairid"]] = text
    return out


def test_each_step_trains_with_one_of_the_four_forms_of_its_triplets_captions(fiq_root):
    data = train_data(fiq_root)
    captions = epoch_captions(data, seed=0, epoch=0)
    assert len(captions) == 24  # 3 categories x 8 triplets, batches of 4: none dropped
    by_pairid = {t["pairid"]: t["captions"] for t in data.triplets}
    for pairid, text in captions.items():
        forms = {blip_caption(caption_in_form(by_pairid[pairid], f)) for f in TRAINING_FORMS}
        assert text in forms


def test_captions_are_reproducible_under_a_seed_and_resumable(fiq_root):
    first = epoch_captions(train_data(fiq_root), seed=3, epoch=1)
    # A fresh run (a resumed one builds its data afresh) draws epoch 1 the same, without epoch 0.
    again = epoch_captions(train_data(fiq_root), seed=3, epoch=1)
    assert first == again
    # Decoded in DataLoader workers (images not kept in memory): the same draws travel along.
    streamed = epoch_captions(train_data(fiq_root, cache="none"), seed=3, epoch=1, num_workers=1)
    assert streamed == first


def test_captions_change_across_epochs_and_seeds(fiq_root):
    data = train_data(fiq_root)
    epoch0, epoch1 = epoch_captions(data, 0, 0), epoch_captions(data, 0, 1)
    assert sum(epoch0[p] != epoch1[p] for p in epoch0) >= 6
    other_seed = epoch_captions(data, 1, 0)
    assert sum(epoch0[p] != other_seed[p] for p in epoch0) >= 6


def test_evaluation_queries_use_the_evaluation_caption_tokenised_once(fiq_root):
    dataset = open_split("fashioniq", fiq_root, "val")
    data = TripletData(dataset, ImageTable(dataset, 16, "memory", 0, False), CharTokenizer(), 200)
    batch = next(data.query_batches(64))
    assert decode(batch) == [blip_caption(t["caption"]) for t in data.triplets]


def test_img_set_batching_is_refused_on_fashioniq(fiq_root, tmp_path):
    with pytest.raises(CirflowError, match="batching img_set .* have none .* use random"):
        next(train_data(fiq_root).batches(4, batching="img_set"))
    settings = TrainSettings(
        cirr_root=str(fiq_root), out=str(tmp_path), stage="stage1", dataset="fashioniq",
        batching="img_set",
    )  # fmt: skip
    with pytest.raises(CirflowError, match=r"train\.stage1\.batching img_set .* use random"):
        settings.check()


def test_the_fingerprint_hashes_fashioniq_train_files(fiq_root, tmp_path):
    settings = TrainSettings(cirr_root=str(fiq_root), out=str(tmp_path), dataset="fashioniq")
    before = fingerprint(settings)
    path = fiq_root / "captions" / "cap.toptee.train.json"
    text = path.read_text()
    try:
        path.write_text(text.replace("colour 3", "colour 33"))
        assert fingerprint(settings) != before
    finally:
        path.write_text(text)
    assert fingerprint(settings) == before


def test_a_cirr_runs_fingerprint_is_what_it_was_before_fashioniq(tmp_path):
    write_mini_cirr(tmp_path)
    settings = TrainSettings(
        cirr_root=str(tmp_path), out="o", preset="tiny_scratch", stage="stage1"
    )
    # The branch point's code (2b29195) gave these: a CIRR run's last.pt from before FashionIQ
    # still resumes (the dataset field stays out of a CIRR fingerprint).
    assert fingerprint(settings) == "2d03dffe720d6c33"
    assert fingerprint(settings, ["train-1-0-img1"]) == "8569b4085a85ebed"


def test_training_validates_with_fashioniq_metrics_and_keeps_the_best_average_recall(
    fiq_root, tmp_path
):
    settings = TrainSettings(
        cirr_root=str(fiq_root), out=str(tmp_path), dataset="fashioniq", preset="tiny_scratch",
        num_epochs=2, batch_size=8, learning_rate=1e-3, num_workers=0, progress=False,
        threads=2, batching="random",
    )  # fmt: skip
    state = Trainer(settings).run()
    with open(tmp_path / "validation_metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", *metric_keys()]
    scores = [float(r["average_recall"]) for r in rows]
    assert state.best_epoch == 1 + max(range(len(scores)), key=lambda i: (scores[i], -i))
    best = torch.load(tmp_path / "best.pt", map_location="cpu", weights_only=False)
    assert best["metrics"]["average_recall"] == pytest.approx(max(scores), abs=0.01)
    hparams = json.loads((tmp_path / "hparams.json").read_text())
    assert hparams["settings"]["dataset"] == "fashioniq"
    assert hparams["train_triplets"] == 24


def test_the_first_stage_groups_fashioniq_images_by_the_triplets_linking_them(fiq_root):
    from cirflow.train.pretrain import image_families

    families = image_families(open_split("fashioniq", fiq_root, "train"))
    # Each category's triplets chain its 8 images (i -> i + 1): one family per category.
    assert sorted(sorted(f) for f in families) == [
        sorted(f"{c}-train-{i}" for i in range(8)) for c in ("dress", "shirt", "toptee")
    ]
