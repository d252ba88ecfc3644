"""Image manifests (cirflow/data/manifest.py): what they hold, how they are cut into shards, and
that the refresh at each parse rewrites exactly the manifests whose images changed."""

import json
import os

import pytest

from cirflow.data.cirr import CirrDataset, split_file
from cirflow.data.manifest import (
    FORMAT,
    manifest_path,
    manifest_text,
    refresh_manifests,
    write_manifest,
)
from cirflow.data.sharding import shard_names
from cirflow.errors import CirflowError

# An mtime long past: a rewrite within the file system's timestamp granularity still shows.
OLD_NS = 1_000_000_000_000_000_000


def read(path):
    return json.loads(path.read_text())


def age(paths):
    """Set each file's mtime to OLD_NS; return {path: mtime}."""
    for path in paths:
        os.utime(path, ns=(OLD_NS, OLD_NS))
    return {path: OLD_NS for path in paths}


def mtimes(paths):
    return {path: path.stat().st_mtime_ns for path in paths}


def test_a_manifest_holds_each_images_size_and_mtime_and_null_when_missing(mini_cirr, tmp_path):
    ds = CirrDataset(mini_cirr, "train", with_captions=False)
    missing = ds.image_names()[3]
    ds.image_path(missing).unlink()
    path = tmp_path / "m.json"
    assert write_manifest(path, mini_cirr, "train")
    manifest = read(path)
    assert manifest["format"] == FORMAT
    assert (manifest["split"], manifest["shard"], manifest["num_shards"]) == ("train", 0, 1)
    assert list(manifest["images"]) == ds.image_names()  # sorted, every image of the split
    for name, entry in manifest["images"].items():
        if name == missing:
            assert entry is None
        else:
            st = ds.image_path(name).stat()
            assert entry == [st.st_size, st.st_mtime_ns]
    # One image per line (a diff shows which changed), and the same text written twice is not
    # written again.
    assert len(path.read_text().splitlines()) == len(ds.images) + 2
    assert not write_manifest(path, mini_cirr, "train")


def test_manifest_shards_are_the_detection_and_feature_shards(mini_cirr, tmp_path):
    from cirflow.boxes.shards import BoxMethod, ShardSpec, run_shard
    from cirflow.model.features import FeatureShard

    ds = CirrDataset(mini_cirr, "val")
    for n in (1, 2, 4):
        for i in range(n):
            path = tmp_path / f"shard-{i}-of-{n}.json"
            write_manifest(path, mini_cirr, "val", i, n)
            names = list(read(path)["images"])
            assert names == shard_names(ds.images, i, n)
            assert names == FeatureShard("val", i, n).names(ds)
            boxes = run_shard(
                mini_cirr, ShardSpec("val", i, n), BoxMethod("saliency", {}, {}), None, False
            )["boxes"]
            assert names == list(boxes)
    with pytest.raises(CirflowError, match="shard 2 of 2 does not exist"):
        manifest_text("val", 2, 2, {})


def test_refresh_makes_missing_manifests_then_rewrites_only_changed_ones(mini_cirr, tmp_path):
    folder = tmp_path / "manifests"
    counts = {"train": {1, 2}, "val": {1}}
    made = refresh_manifests(folder, mini_cirr, counts)
    paths = [manifest_path(folder, "train", i, n) for i, n in ((0, 1), (0, 2), (1, 2))]
    paths.append(manifest_path(folder, "val"))
    assert sorted(c.path for c in made) == sorted(paths) and all(c.created for c in made)
    for path in paths:
        assert not write_manifest(path, mini_cirr, path.parent.name, *_shard_of(path))
    before = age(paths)
    # Nothing changed: nothing is written, no mtime moves.
    assert refresh_manifests(folder, mini_cirr, counts) == []
    assert mtimes(paths) == before

    # One train image overwritten (other bytes, other size): its shard and the whole split only.
    ds = CirrDataset(mini_cirr, "train", with_captions=False)
    name = shard_names(ds.images, 1, 2)[0]
    ds.image_path(name).write_bytes(b"not an image")
    changes = refresh_manifests(folder, mini_cirr, counts)
    changed = {manifest_path(folder, "train", 0, 1), manifest_path(folder, "train", 1, 2)}
    assert {c.path for c in changes} == changed
    assert all(c.images == (name,) and not c.created for c in changes)
    assert name in str(changes[0]) and "1 image changed" in str(changes[0])
    after = mtimes(paths)
    assert {p for p in paths if after[p] != OLD_NS} == changed
    assert read(manifest_path(folder, "train", 1, 2))["images"][name][0] == len(b"not an image")

    # Vanished, then back with its old mtime: each is a change.
    age(paths)
    stat = ds.image_path(name).stat()
    ds.image_path(name).unlink()
    assert {c.path for c in refresh_manifests(folder, mini_cirr, counts)} == changed
    assert read(manifest_path(folder, "train", 1, 2))["images"][name] is None
    age(paths)
    ds.image_path(name).write_bytes(b"not an image")
    os.utime(ds.image_path(name), ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert {c.path for c in refresh_manifests(folder, mini_cirr, counts)} == changed
    assert {p for p in paths if mtimes(paths)[p] != OLD_NS} == changed


def test_refresh_keeps_a_manifest_of_another_shard_count_up_to_date(mini_cirr, tmp_path):
    """A manifest already there is refreshed though the config no longer cuts the split so."""
    folder = tmp_path / "manifests"
    refresh_manifests(folder, mini_cirr, {"test1": {3}})
    age(folder.glob("test1/*.json"))
    ds = CirrDataset(mini_cirr, "test1", with_captions=False)
    ds.image_path(ds.image_names()[0]).unlink()
    changes = refresh_manifests(folder, mini_cirr, {"test1": {1}})
    assert {c.path.name for c in changes} == {"shard-0-of-1.json", "shard-0-of-3.json"}


def test_refresh_never_breaks_a_parse(mini_cirr, tmp_path):
    """A missing or invalid split file, a missing root, a manifest that cannot be read: left
    as they are (the jobs that need them report the problem); the other splits still refresh."""
    folder = tmp_path / "manifests"
    counts = {"train": {1}, "val": {1}, "test1": {1}}
    refresh_manifests(folder, mini_cirr, counts)
    paths = [manifest_path(folder, split) for split in counts]
    age(paths)
    for split in ("train", "val", "test1"):
        ds = CirrDataset(mini_cirr, split, with_captions=False)
        ds.image_path(ds.image_names()[0]).unlink()
    train_split = split_file(mini_cirr, "train").read_bytes()
    split_file(mini_cirr, "train").unlink()
    split_file(mini_cirr, "val").write_text("{not json")
    test1 = manifest_path(folder, "test1")
    test1.unlink()
    test1.mkdir()  # there, but not a file
    assert refresh_manifests(folder, mini_cirr, counts) == []
    assert mtimes(paths[:2]) == {p: OLD_NS for p in paths[:2]}
    assert refresh_manifests(folder, tmp_path / "no_root", counts) == []
    assert refresh_manifests(tmp_path / "none_yet", tmp_path / "no_root", counts) == []
    assert not (tmp_path / "none_yet").exists()

    # The split file back: the next refresh brings its manifest up to date.
    split_file(mini_cirr, "train").write_bytes(train_split)
    changes = refresh_manifests(folder, mini_cirr, counts)
    assert [c.path for c in changes] == [paths[0]]
    assert None in read(paths[0])["images"].values()


def _shard_of(path):
    shard, num_shards = path.stem.removeprefix("shard-").split("-of-")
    return int(shard), int(num_shards)
