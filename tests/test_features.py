"""Cached ViT tokens (rule image_features): equal to a direct ViT forward, the same training as
from pixels, byte-stable, and where unreadable images are found and left out."""

import json

import numpy as np
import pytest
import torch

from cirflow.data.cirr import CirrDataset
from cirflow.data.feature_index import read_index
from cirflow.data.feature_store import FeatureStore, FeatureTable
from cirflow.data.tables import ImageTable
from cirflow.data.transforms import normalize
from cirflow.errors import CirflowError
from cirflow.model.config import ModelConfig
from cirflow.model.factory import build_model
from cirflow.model.features import FeatureSettings, FeatureShard, extract_shard
from cirflow.model.presets import get_preset
from cirflow.model.sprc import SPRC
from cirflow.train.config import TrainSettings
from cirflow.train.loop import train
from cirflow.train.pretrain import backbone_state


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from cirflow.data.demo import DemoSpec, generate_demo

    root = tmp_path_factory.mktemp("demo")
    generate_demo(root, DemoSpec(0, 32, 16, 8), workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A first-stage file in BLIP-2's layout (random weights: equality is what is tested)."""
    from cirflow.model.checkpoints import save_atomic

    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("backbone") / "backbone.pth"
    save_atomic({"model": backbone_state(SPRC(get_preset("tiny_scratch")))}, path)
    return path


def extract(preset, root, split, out_dir, n=2):
    paths = []
    for shard in range(n):
        path = out_dir / f"{split}/shard-{shard}-of-{n}.npy"
        settings = FeatureSettings(batch_size=5, progress=False)
        extract_shard(preset, root, FeatureShard(split, shard, n), path, settings)
        paths.append(str(path))
    return paths


def test_features_equal_a_direct_vit_forward(demo_root, backbone, tmp_path):
    preset = get_preset("tiny", weights=str(backbone))
    paths = extract(preset, demo_root, "val", tmp_path)
    dataset = CirrDataset(demo_root, "val")
    table = FeatureTable(dataset, FeatureStore(paths))
    assert table.names == list(dataset.images)  # split-file order, every image
    model = build_model(ModelConfig("tiny", weights=str(backbone))).eval()
    pixels = ImageTable(dataset, preset.image_size, "memory", 0, progress=False)
    picks = [0, 3, len(table) - 1]
    with torch.no_grad():
        direct = model.vit_tokens(normalize(pixels.get(picks)))
    cached = table.get(picks)
    assert cached.dtype == torch.float16 and cached.shape == direct.shape
    torch.testing.assert_close(cached.float(), direct, rtol=2e-3, atol=2e-3)
    # ... and what the model computes from them, through ln_vision.
    torch.testing.assert_close(
        model.image_tokens(cached.float()),
        model.image_tokens(normalize(pixels.get(picks))),
        rtol=1e-2,
        atol=1e-2,
    )
    # Sizes come with the features (stage 2 maps boxes without decoding images).
    assert [table.image_size(i) for i in picks] == [pixels.image_size(i) for i in picks]


def test_same_inputs_give_byte_identical_feature_files(demo_root, backbone, tmp_path):
    preset = get_preset("tiny", weights=str(backbone))
    a = extract(preset, demo_root, "test1", tmp_path / "a", n=1)
    b = extract(preset, demo_root, "test1", tmp_path / "b", n=1)
    for x, y in zip(a, b, strict=True):
        assert open(x, "rb").read() == open(y, "rb").read()
        assert read_index(x) == read_index(y)


def test_a_trainable_vit_refuses_cached_features(demo_root, tmp_path):
    with pytest.raises(CirflowError, match="frozen ViT"):
        extract_shard(
            get_preset("tiny_scratch"), demo_root, FeatureShard("val", 0, 1), tmp_path / "x.npy"
        )


def test_training_from_features_equals_training_from_pixels(demo_root, backbone, tmp_path):
    preset = get_preset("tiny", weights=str(backbone))
    features = {s: extract(preset, demo_root, s, tmp_path / "f") for s in ("train", "val")}
    common = dict(
        cirr_root=str(demo_root),
        preset="tiny",
        weights=str(backbone),
        num_epochs=2,
        batch_size=8,
        learning_rate=1e-3,
        num_workers=0,
        progress=False,
        threads=2,
        batching="img_set",
    )
    from_pixels = train(TrainSettings(out=str(tmp_path / "px"), **common))
    from_features = train(TrainSettings(out=str(tmp_path / "ft"), features=features, **common))
    for a, b in zip(from_pixels.train_rows, from_features.train_rows, strict=True):
        for key in ("loss_itc", "loss_rtc", "loss_align"):
            assert a[key] == pytest.approx(b[key], rel=2e-3, abs=1e-4), key
    for a, b in zip(from_pixels.val_rows, from_features.val_rows, strict=True):
        assert a["arithmetic_mean"] == pytest.approx(b["arithmetic_mean"], abs=3.0)
    hparams = json.loads((tmp_path / "ft/hparams.json").read_text())
    assert hparams["image_source"] == "features"
    assert hparams["unreadable"]["train"]["triplets_left_out"] == 0


def test_an_unreadable_image_is_listed_once_and_its_triplets_left_out(
    demo_root, backbone, tmp_path
):
    import shutil

    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    dataset = CirrDataset(root, "train")
    victim = dataset.triplets[0]["reference"]
    dataset.image_path(victim).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    preset = get_preset("tiny", weights=str(backbone))
    paths = extract(preset, root, "train", tmp_path / "f")
    listed = [e for p in paths for e in read_index(p)["unreadable"]]
    assert [e["image"] for e in listed] == [victim] and listed[0]["error"]
    assert victim not in {n for p in paths for n in read_index(p)["sizes"]}
    # Its row stays zero; the table still answers for every image of the split.
    table = FeatureTable(CirrDataset(root, "train"), FeatureStore(paths))
    assert not table.is_readable(victim)
    assert not table.get([table.index[victim]]).any()
    needing = sum(victim in (t["reference"], t["target_hard"]) for t in dataset.triplets)
    from cirflow.data.tables import TripletData

    model = SPRC(preset)  # only its tokenizer is used
    data = TripletData(CirrDataset(root, "train"), table, model.tokenizer, 24)
    assert len(data.left_out) == needing >= 1
    assert {victim} == {n for t in data.left_out for n in t["images"]}
    assert len(data) == len(dataset.triplets) - needing


def test_features_of_another_split_are_refused(demo_root, backbone, tmp_path):
    preset = get_preset("tiny", weights=str(backbone))
    paths = extract(preset, demo_root, "val", tmp_path, n=1)
    with pytest.raises(CirflowError, match="not in the test1 split"):
        FeatureTable(CirrDataset(demo_root, "test1"), FeatureStore(paths))


def test_memory_mapped_reads_touch_only_the_rows_asked_for(demo_root, backbone, tmp_path):
    preset = get_preset("tiny", weights=str(backbone))
    paths = extract(preset, demo_root, "val", tmp_path, n=1)
    store = FeatureStore(paths)
    assert isinstance(store.arrays[0], np.memmap)


def test_extraction_past_max_unreadable_fraction_is_an_error(demo_root, backbone, tmp_path):
    import shutil

    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    dataset = CirrDataset(root, "val")
    names = sorted(dataset.images)
    broken = names[: len(names) // 2 + 1]  # just past half, not all (that is another error)
    for name in broken:
        dataset.image_path(name).write_bytes(b"not an image")
    out = tmp_path / "f/val/shard-0-of-1.npy"
    settings = FeatureSettings(batch_size=5, max_unreadable_fraction=0.5, progress=False)
    preset = get_preset("tiny", weights=str(backbone))
    with pytest.raises(CirflowError) as info:
        extract_shard(preset, root, FeatureShard("val", 0, 1), out, settings)
    message = str(info.value)
    assert f"{len(broken)} of {len(names)} images cannot be read" in message
    assert "features.max_unreadable_fraction = 0.5" in message  # the workflow's key
    assert f"dataset root {root}" in message and broken[0] in message
    assert not out.exists() and not list(out.parent.iterdir())  # no array, no index, no temp
    # At that fraction's limit, the shard is made.
    loose = FeatureSettings(batch_size=5, max_unreadable_fraction=0.6, progress=False)
    index = extract_shard(preset, root, FeatureShard("val", 0, 1), out, loose)
    assert len(index["unreadable"]) == len(broken)


def test_a_full_disk_while_extracting_names_the_shard(demo_root, backbone, tmp_path, monkeypatch):
    """The array is a memory map: its blocks are reserved when it is made, so a full disk is
    an error naming the shard, not a SIGBUS in the middle of the split."""
    import errno
    import os

    from cirflow.model import features

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(features.os, "posix_fallocate", no_space, raising=False)
    out = tmp_path / "val/shard-0-of-1.npy"
    preset = get_preset("tiny", weights=str(backbone))
    settings = FeatureSettings(batch_size=5, progress=False)
    with pytest.raises(CirflowError) as info:
        extract_shard(preset, demo_root, FeatureShard("val", 0, 1), out, settings)
    assert f"cannot write {out}: no space left on the device" in str(info.value)
    assert "free on its file system" in str(info.value)
    assert not list(out.parent.iterdir())
