"""Snakemake reruns exactly the stages that went stale (dry runs on a finished small demo)."""

import pytest
import yaml
from conftest import SMALL_DEMO, make_workflow_copy, planned_jobs, run_snakemake

pytestmark = pytest.mark.slow

BOX_STAGES = {"detect_shard", "merge_boxes", "box_stats", "box_report"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = make_workflow_copy(tmp_path_factory.mktemp("reruns"))
    run_snakemake(workdir)
    return workdir


def with_config(workdir, **changes):
    """Dry-run with extra config on top of the test config; return rule -> job count."""
    config = yaml.safe_load((workdir / "test_config.yaml").read_text())
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    (workdir / "changed_config.yaml").write_text(yaml.safe_dump(config))
    return planned_jobs(workdir, "--configfile", "changed_config.yaml")


def edited(workdir, relpath):
    """Dry-run after a real edit of a package source file. (A bare `touch` reruns nothing:
    Snakemake 9 compares the checksums of small inputs, so only a content change counts.)"""
    path = workdir / relpath
    original = path.read_bytes()
    path.write_bytes(original + b"\n# an edit\n")
    try:
        return planned_jobs(workdir)
    finally:
        path.write_bytes(original)


def test_nothing_changed_nothing_runs(finished):
    assert planned_jobs(finished) == {}


def test_detection_key_reruns_detection_and_what_follows(finished):
    jobs = with_config(finished, boxes__saliency__threshold_k=1.7)
    assert BOX_STAGES <= set(jobs)
    assert "demo_dataset" not in jobs
    assert "train_stage1" not in jobs


def test_report_key_reruns_only_the_report(finished):
    assert with_config(finished, report__seed=7) == {"box_report": 1}


def test_detection_code_reruns_detection_and_what_follows(finished):
    jobs = edited(finished, "cirflow/boxes/saliency.py")
    assert BOX_STAGES <= set(jobs)
    assert "train_stage1" not in jobs


def test_report_code_reruns_only_the_report(finished):
    assert edited(finished, "cirflow/report/plots.py") == {"box_report": 1}


def test_demo_config_is_the_small_one(finished):
    # Guards the fixture: the rerun tests must stay on the small demo.
    assert yaml.safe_load((finished / "test_config.yaml").read_text())["demo"] == SMALL_DEMO["demo"]
