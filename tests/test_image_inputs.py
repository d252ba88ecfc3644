"""Images are inputs (through the image manifests, rules/common.smk): a fixed image, or images
added to a root that lacked them, rerun exactly the jobs that read them, and the rerun recovers.
"""

import json
import re
import shutil

import pytest
import yaml
from conftest import SMALL_DEMO, make_workflow_copy, planned_jobs, run_snakemake

from cirflow.data.sharding import shard_names

pytestmark = pytest.mark.slow

MANIFESTS = "results/demo/manifests"
FEATURES = "results/demo/features"
STAGE1 = "results/demo/models/stage1"
DETECTOR = "results/demo/detector/detector.pt"


def manifest_mtimes(workdir, ds="demo"):
    return {
        p.relative_to(workdir): p.stat().st_mtime_ns
        for p in sorted((workdir / f"results/{ds}/manifests").rglob("*.json"))
    }


def planned(workdir, *args):
    """The jobs `snakemake -n` plans: [{"rule", "wildcards" (dict), "reason"}]."""
    proc = run_snakemake(workdir, "-n", *args)
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout + proc.stderr)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        reason = re.search(r"^\s+reason: (.*)$", block, re.M)
        jobs.append(
            {
                "rule": rule,
                "wildcards": dict(w.split("=", 1) for w in wildcards.group(1).split(", "))
                if wildcards
                else {},
                "reason": reason.group(1) if reason else "",
            }
        )
    return jobs


def shards_of(jobs, rule):
    """(split, shard, n) of each planned job of `rule`."""
    return sorted(
        (j["wildcards"]["split"], int(j["wildcards"]["shard"]), int(j["wildcards"]["n"]))
        for j in jobs
        if j["rule"] == rule
    )


def job_inputs(workdir, *args):
    """(rule, wildcards, the manifests among its inputs as (split, shard, n)) of each job
    `snakemake -n` plans."""
    proc = run_snakemake(workdir, "-n", *args)
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout + proc.stderr)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        found = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        wildcards = dict(w.split("=", 1) for w in found.group(1).split(", ")) if found else {}
        inputs = re.search(r"^\s+input: (.*)$", block, re.M)
        manifests = sorted(
            (m[1], int(m[2]), int(m[3]))
            for m in re.finditer(
                r"results/\w+/manifests/(\w+)/shard-(\d+)-of-(\d+)\.json",
                inputs.group(1) if inputs else "",
            )
        )
        jobs.append((rule, wildcards, manifests))
    return jobs


def whole(*splits):
    return sorted((split, 0, 1) for split in splits)


def test_every_job_that_decodes_pixels_takes_its_images_manifests(tmp_path):
    """A dry run of a fresh workflow: the sharded jobs take their own shard's manifest, the
    other readers of pixels whole splits; training and evaluation only without cached
    features (with them, the feature shards carry the images)."""
    expected = {
        "pretrain_backbone": whole("train", "val"),
        "box_report": whole("train", "val", "test1"),
        "results_report": whole("val"),
        "gt_boxes": whole("train", "val", "test1"),
        "train_detector": whole("train", "val"),
    }
    config = {"boxes": {"methods": ["saliency", "yolo"], "yolo": {"weights": DETECTOR}}}
    workdir = make_workflow_copy(tmp_path / "wf", config)
    (workdir / "pixels.yaml").write_text("features:\n  enabled: false\n")
    with_features = job_inputs(workdir, "all", "ablation")
    without = job_inputs(workdir, "--configfile", "test_config.yaml", "pixels.yaml")
    seen = set()
    for rule, wildcards, manifests in with_features:
        seen.add(rule)
        if rule in ("detect_shard", "image_features"):
            shard = (wildcards["split"], int(wildcards["shard"]), int(wildcards["n"]))
            assert manifests == [shard], (rule, wildcards)
        elif rule in expected:
            assert manifests == expected[rule], rule
        else:  # with cached features: training and evaluation read no pixels
            assert manifests == [], (rule, wildcards)
    assert {"detect_shard", "image_features", "train", "ablation_train", *expected} <= seen
    for rule, wildcards, manifests in without:
        if rule == "train":
            assert manifests == whole("train", "val"), wildcards
        if rule == "evaluate":
            assert manifests == whole("val", "test1"), wildcards
    assert {"train", "evaluate"} <= {rule for rule, _, _ in without}
    assert "image_features" not in {rule for rule, _, _ in without}


def test_a_finished_run_plans_nothing_and_moves_no_manifest(finished_demo_run):
    before = manifest_mtimes(finished_demo_run)
    # Detection's and the features' shards of each split, and each whole split.
    assert {str(p.parent.name) + "/" + p.name for p in before} == {
        "train/shard-0-of-1.json",
        "train/shard-0-of-2.json",
        "train/shard-1-of-2.json",
        "val/shard-0-of-1.json",
        "test1/shard-0-of-1.json",
    }
    for _ in range(2):
        assert planned_jobs(finished_demo_run) == {}
        assert manifest_mtimes(finished_demo_run) == before


@pytest.fixture
def demo_copy(finished_demo_run, tmp_path):
    """A copy of the finished small demo (times kept: it is up to date too), to change images in."""
    dest = tmp_path / "demo"
    shutil.copytree(finished_demo_run, dest, symlinks=True)
    assert planned_jobs(dest) == {}
    return dest


def test_fixing_a_corrupt_image_reruns_its_shards_and_recovers(demo_copy, finished_demo_run):
    """The issue's first case: an image overwritten with garbage is listed as unreadable in its
    feature shard's index (1 of the demo's 90 train images: over train.max_unreadable_fraction,
    so training would stop); once the image is restored, a plain `snakemake` reruns that shard
    and training succeeds, with the original run's numbers."""
    root = demo_copy / "results/demo/dataset"
    split = json.loads((root / "cirr/image_splits/split.rc2.train.json").read_text())
    name = shard_names(split, 1, 2)[0]
    image = root / split[name]
    original = image.read_bytes()
    image.write_bytes(b"\x00 not an image " * 100)

    jobs = planned(demo_copy)
    # Detection: exactly the shard holding the image (boxes.shards.train is 2), then its merge.
    assert shards_of(jobs, "detect_shard") == [("train", 1, 2)]
    assert [j["wildcards"]["split"] for j in jobs if j["rule"] == "merge_boxes"] == ["train"]
    # Features: every shard, because the demo's first stage (pretrain_backbone, an input of
    # every feature shard) learns from the train images; with it held fixed, only the shard
    # holding the image, for its images.
    assert "pretrain_backbone" in {j["rule"] for j in jobs}
    assert len(shards_of(jobs, "image_features")) == 4
    assert not {"demo_dataset", "image_manifest"} & {j["rule"] for j in jobs}
    features = [str(p.relative_to(demo_copy)) for p in demo_copy.glob(f"{FEATURES}/*/*.npy")]
    held = planned(demo_copy, "--allowed-rules", "image_features", "--", *features)
    assert shards_of(held, "image_features") == [("train", 1, 2)]
    assert held[0]["reason"] == f"Updated input files: {MANIFESTS}/train/shard-1-of-2.json"

    # The shard as a run with the garbage image leaves it (the training would then stop).
    run_snakemake(demo_copy, f"{FEATURES}/train/shard-1-of-2.npy")
    index = demo_copy / f"{FEATURES}/train/shard-1-of-2.index.json"
    assert [e["image"] for e in json.loads(index.read_text())["unreadable"]] == [name]

    # Fixed (a new mtime, as a copy gives): no --forcerun needed.
    image.write_bytes(original)
    jobs = planned(demo_copy, f"{STAGE1}/best.pt")
    assert ("train", 1, 2) in shards_of(jobs, "image_features")
    assert [j["wildcards"]["stage"] for j in jobs if j["rule"] == "train"] == ["stage1"]
    run_snakemake(demo_copy, f"{STAGE1}/best.pt")
    assert json.loads(index.read_text())["unreadable"] == []
    for path in (
        f"{FEATURES}/train/shard-1-of-2.npy",
        "results/demo/backbone/backbone.pth",
        f"{STAGE1}/train_metrics.csv",
        f"{STAGE1}/validation_metrics.csv",
    ):
        assert (demo_copy / path).read_bytes() == (finished_demo_run / path).read_bytes(), path
    # What the fix leaves to do: the train boxes' shard and all that follows.
    rest = planned_jobs(demo_copy)
    assert rest["detect_shard"] == 1 and "train:stage2" in rest


def test_images_added_to_a_root_that_lacked_them_rerun_detection(finished_demo_run, tmp_path):
    """The issue's second case: a CIRR root holding only its annotations fails in merge_boxes,
    naming the root; after the images are copied in, a plain `snakemake` plans detection again
    and succeeds."""
    demo_root = finished_demo_run / "results/demo/dataset"
    root = tmp_path / "cirr_root"
    shutil.copytree(demo_root / "cirr", root / "cirr")
    config = {
        "dataset": {"name": "cirr", "cirr_root": str(root)},
        # Any CIRR preset: the workflow stops at the boxes.
        "model": {"preset": "pretrain"},
    }
    workdir = make_workflow_copy(tmp_path / "wf", config)
    target = "results/cirr/boxes/saliency/train.json"

    failed = run_snakemake(workdir, target, check=False)
    assert failed.returncode != 0
    log = (workdir / "logs/cirr/boxes/saliency/train.merge.log").read_text()
    assert "images cannot be read" in log and f"is the dataset root {root} complete" in log
    assert planned_jobs(workdir, target) == {"merge_boxes": 1}

    for folder in ("train", "dev", "test1"):
        shutil.copytree(demo_root / folder, root / folder)
    jobs = planned(workdir, target)
    assert shards_of(jobs, "detect_shard") == [("train", 0, 2), ("train", 1, 2)]
    assert all(
        "results/cirr/manifests/train/" in j["reason"] for j in jobs if j["rule"] == "detect_shard"
    )
    run_snakemake(workdir, target)
    # The same images as the demo's: the same boxes.
    demo_boxes = finished_demo_run / "results/demo/boxes/saliency/train.json"
    assert (workdir / target).read_bytes() == demo_boxes.read_bytes()
    assert planned_jobs(workdir, target) == {}


def test_demo_config_is_the_small_one(finished_demo_run):
    # Guards the fixture: these tests must stay on the small demo.
    config = yaml.safe_load((finished_demo_run / "test_config.yaml").read_text())
    assert config["demo"] == SMALL_DEMO["demo"]
