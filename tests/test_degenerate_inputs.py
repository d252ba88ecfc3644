"""Degenerate inputs are errors, not successes: a split whose images cannot be read, a box file
that gives (almost) no target a box, an empty box file in the report."""

import json
import shutil

import pytest

from cirflow.boxes.shards import BoxMethod, ShardSpec, merge_results, merge_shards, run_shard
from cirflow.data.cirr import CirrDataset
from cirflow.errors import CirflowError


def _shards(root, n, tmp_path):
    paths = []
    for i in range(n):
        path = tmp_path / f"shard-{i}-of-{n}.json"
        run_shard(
            root, ShardSpec("train", i, n), BoxMethod("saliency", {}, {}), path, progress=False
        )
        paths.append(path)
    return paths


def test_detection_fails_when_most_of_a_split_cannot_be_read(mini_cirr, tmp_path):
    ds = CirrDataset(mini_cirr, "train", with_captions=False)
    names = ds.image_names()
    for name in names[:5]:  # 5 of 9: each shard alone is at most half broken, the split is not
        ds.image_path(name).unlink()
    shards = _shards(mini_cirr, 2, tmp_path)
    per_shard = [len(json.loads(p.read_text())["errors"]) for p in shards]
    assert per_shard == [3, 2]  # 3 of 5 and 2 of 4
    out = tmp_path / "merged"
    with pytest.raises(CirflowError) as info:
        merge_shards(shards, out / "train.json", out / "train.meta.json")
    message = str(info.value)
    assert "5 of 9 images cannot be read" in message
    assert "boxes.max_unreadable_fraction = 0.5" in message
    assert f"{names[0]}: file not found" in message
    assert not out.exists()  # no all-[] box file left behind
    # At most half: boxes for the rest, the unreadable ones listed in the sidecar.
    merge_shards(shards, out / "train.json", out / "train.meta.json", max_unreadable_fraction=0.6)
    assert len(json.loads((out / "train.meta.json").read_text())["errors"]) == 5


def test_a_root_with_annotations_only_is_an_error(mini_cirr, tmp_path, capsys):
    from cirflow.cli import main

    bare = tmp_path / "bare"
    shutil.copytree(mini_cirr / "cirr", bare / "cirr")
    result = run_shard(
        bare, ShardSpec("val", 0, 1), BoxMethod("saliency", {}, {}), None, progress=False
    )
    assert len(result["errors"]) == 9
    with pytest.raises(CirflowError, match="9 of 9 images cannot be read") as info:
        merge_results([result], tmp_path / "val.json", tmp_path / "val.meta.json")
    # The message names the root the images were looked for in.
    assert f"is the dataset root {bare} complete (its images beside {bare}/cirr/)" in str(
        info.value
    )
    out = tmp_path / "cli.json"
    rc = main(
        ["boxes", "generate", "--cirr-root", str(bare), "--split", "val", "--output", str(out)]
    )
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "9 of 9 images cannot be read" in err and f"dataset root {bare} complete" in err


# ------------------------------------------------------------------------------------ stage 2
@pytest.fixture(scope="module")
def table(tiny_demo):
    from cirflow.data.tables import ImageTable

    return ImageTable(CirrDataset(tiny_demo, "train"), 64, "memory", 0, progress=False)


def test_stage2_refuses_a_box_file_that_boxes_too_few_targets(tiny_demo, table, tmp_path):
    from cirflow.data.regions import BoxFile

    targets = sorted({t["target_hard"] for t in CirrDataset(tiny_demo, "train").triplets})
    path = tmp_path / "train.json"

    def load(boxes, fraction=0.1):
        path.write_text(json.dumps(boxes))
        return BoxFile(path).load_training(table, 64, set(targets), min_targets_with_boxes=fraction)

    with pytest.raises(CirflowError, match=r"the box file is empty \(\{\}\)"):
        load({})
    with pytest.raises(CirflowError) as info:
        load({n: [] for n in table.names})
    assert f"only 0 of {len(targets)} training targets have a usable box" in str(info.value)
    # The data layer names its own parameter; the training names the user's key (below).
    assert "min_targets_with_boxes = 0.1" in str(info.value)
    box = [[0.1, 0.1, 0.6, 0.7]]
    enough = -(-len(targets) // 10)  # 10 % of the targets, rounded up
    few = {n: (box if n in targets[: enough - 1] else []) for n in table.names}
    with pytest.raises(CirflowError, match="fewer than min_targets_with_boxes"):
        load(few)
    _, counts = load(few, fraction=0.0)  # the check can be turned off
    assert counts["targets_with_boxes"] == enough - 1
    _, counts = load({n: (box if n in targets[:enough] else []) for n in table.names})
    assert counts["targets_with_boxes"] == enough


def test_stage2_training_stops_on_an_all_empty_box_file_before_any_step(tiny_demo, tmp_path):
    from cirflow.train.config import TrainSettings
    from cirflow.train.loop import train

    names = CirrDataset(tiny_demo, "train", with_captions=False).image_names()
    box_file = tmp_path / "train.json"
    box_file.write_text(json.dumps({n: [] for n in names}))
    settings = TrainSettings(
        cirr_root=str(tiny_demo),
        out=str(tmp_path / "stage2"),
        preset="tiny_scratch",
        num_epochs=1,
        batch_size=8,
        num_workers=0,
        progress=False,
        threads=1,
        region_mode="aux",
        box_file=str(box_file),
        stage="stage2",
    )
    with pytest.raises(CirflowError, match="train.stage2.min_targets_with_boxes"):
        train(settings)
    assert not (tmp_path / "stage2/last.pt").exists()


# ------------------------------------------------------------------------------------- report
def test_the_report_names_an_empty_box_file_as_empty(tmp_path, capsys):
    from cirflow.cli import main

    empty = tmp_path / "train.json"
    empty.write_text("{}")
    out = tmp_path / "page.html"
    assert main(["boxes", "report", "--boxes", str(empty), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "the box file is empty" in printed and "images are missing" not in printed
    html = out.read_text()
    assert f"The box file is empty: {empty} holds {{}}" in html
    assert "images are missing" not in html.lower()
