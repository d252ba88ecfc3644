"""The workflow end to end through the snakemake CLI on a small demo."""

import json

import pytest
from conftest import make_workflow_copy, run_snakemake

pytestmark = pytest.mark.slow


@pytest.fixture
def finished_run(finished_demo_run):
    return finished_demo_run


def test_demo_run_produces_boxes_and_stats(finished_run):
    results = finished_run / "results" / "demo"
    for split in ("train", "val", "test1"):
        boxes = json.loads((results / f"boxes/saliency/{split}.json").read_text())
        stats = json.loads((results / f"boxes/saliency/{split}.stats.json").read_text())
        split_file = json.loads(
            (results / f"dataset/cirr/image_splits/split.rc2.{split}.json").read_text()
        )
        assert sorted(boxes) == sorted(split_file)
        assert stats["images"] == len(split_file)
        assert stats["total_boxes"] == sum(len(v) for v in boxes.values())
        assert stats["pct_with_boxes"] > 50
    assert (finished_run / "logs/demo/demo_dataset.log").exists()


def test_nothing_to_do_after_a_full_run(finished_run):
    proc = run_snakemake(finished_run, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_bad_config_type_names_the_key(tmp_path):
    workdir = make_workflow_copy(tmp_path / "wf", {"boxes": {"shards": "many"}})
    proc = run_snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "boxes.shards: 'many' is not of type 'object'" in out
