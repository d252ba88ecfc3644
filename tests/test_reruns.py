"""Snakemake reruns exactly the stages that went stale (dry runs on a finished small demo)."""

import ast
import os

import pytest
import yaml
from conftest import SMALL_DEMO, planned_jobs

pytestmark = pytest.mark.slow

BOX_STAGES = {"detect_shard", "merge_boxes", "box_stats", "box_report"}
# Stage 2 and what follows it (the stage comparison and the results page; the box report never
# waits for training). Never the control: it reads no boxes and no region-only key.
STAGE2_ON = {
    "train:stage2": 1,
    "evaluate": 1,
    "compare_stages": 1,
    "results_report": 1,
}


@pytest.fixture
def finished(finished_demo_run):
    return finished_demo_run


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


def rewritten(workdir, relpath, change, *args):
    """Dry-run after `change` (text -> text) of a file, then put the file back as it was (its
    bytes and times)."""
    path = workdir / relpath
    original, stat = path.read_bytes(), path.stat()
    path.write_text(change(original.decode()))
    try:
        return planned_jobs(workdir, *args)
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def edited(workdir, relpath):
    """Dry-run after a change of code in a package or workflow file: a statement added to a
    Python file, anything to a template. (Snakemake compares code by its digest, a param: a
    comment or a bare `touch` reruns nothing.)"""
    if relpath.endswith(".py"):
        return rewritten(workdir, relpath, lambda text: text + "\n_EDITED = 1\n")
    return rewritten(workdir, relpath, lambda text: text + "\n<!-- an edit -->\n")


def text_only_edit(text):
    """`text` (a Python module) written again by `ast.unparse` (other quotes, line breaks and
    parentheses, no comments), every docstring reworded, a comment added: the same code."""
    tree = ast.parse(text)
    same = ast.dump(ast.parse(ast.unparse(tree)))
    assert same == ast.dump(tree), "ast.unparse changed the code"
    for node in ast.walk(tree):
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        if isinstance(node, kinds) and ast.get_docstring(node, clean=False) is not None:
            node.body[0].value.value = "Reworded. " + node.body[0].value.value
    return "# a comment\n" + ast.unparse(tree) + "\n"


def test_nothing_changed_nothing_runs(finished):
    assert planned_jobs(finished) == {}


@pytest.mark.parametrize("module", ["cirflow/train/pretrain.py", "cirflow/data/transforms.py"])
def test_comments_docstrings_and_formatting_rerun_nothing(finished, module):
    """Code counts by its digest (rules/common.smk code_digest), which leaves them out: before,
    as file inputs, this reran the first stage, the features, every training and evaluation."""
    assert rewritten(finished, module, text_only_edit) == {}


def test_a_comment_in_a_workflow_script_or_rule_file_reruns_nothing(finished):
    """Snakemake's own `code` trigger would rerun a script's rules on any edit of the script
    (it compares the script's mtime): the workflow's profiles leave it out, the code param
    covers the script by content. A rule file's comments were never compared."""
    script = "workflow_scripts/train_stage.py"
    assert rewritten(finished, script, text_only_edit) == {}
    rules = "rules/train.smk"

    def comments(text):
        return "# a comment\n" + text.replace("    output:", "    # a comment\n    output:")

    assert rewritten(finished, rules, comments) == {}
    # Without the profile, Snakemake's trigger is back: the same edit reruns the script's rules.
    jobs = rewritten(finished, script, text_only_edit, "--workflow-profile", "none")
    assert {"train:stage1", "train:stage2", "train:stage2_control"} <= set(jobs)


def test_a_change_of_code_in_a_workflow_script_reruns_its_rules(finished):
    assert edited(finished, "workflow_scripts/compare_stages.py") == {
        "compare_stages": 1,
        "results_report": 1,
    }


def _reversed(node):
    """The same settings with the keys of every mapping in reverse order."""
    if isinstance(node, dict):
        return {k: _reversed(node[k]) for k in reversed(list(node))}
    return node


def test_reordered_and_restated_settings_rerun_nothing(finished):
    """The test config with every key order reversed, plus defaults restated in other spellings
    (`7e-4`, which PyYAML reads as a string; an integer written 0.0; a formatter's sorted block):
    the same settings, so nothing may rerun (not the demo dataset, not a training)."""
    config = yaml.safe_load((finished / "test_config.yaml").read_text())
    config["demo"]["seed"] = 0.0
    config.setdefault("model", {})["freeze_vit"] = None
    stage1 = config["train"]["stage1"]
    stage1.update({"learning_rate": "7e-4", "weight_decay": "5e-2", "loss_rtc": 0.40})
    config["boxes"] = {"postfilter": {"min_area": 2.0e-3, "max_boxes": 10}, "threads": 1}
    config["report"] = dict(sorted({"seed": 0, "thumb_size": 256, "samples_per_split": 12}.items()))
    text = yaml.safe_dump(_reversed(config), sort_keys=False)
    text = text.replace("'7e-4'", "7e-4").replace("'5e-2'", "5e-2")
    assert (
        "learning_rate: 7e-4" in text
        and yaml.safe_load(text)["train"]["stage1"]["learning_rate"] == "7e-4"
    )
    (finished / "reordered_config.yaml").write_text(text)
    assert planned_jobs(finished, "--configfile", "reordered_config.yaml") == {}


def test_detection_key_reruns_detection_and_what_follows(finished):
    jobs = with_config(finished, boxes__saliency__threshold_k=1.7)
    assert BOX_STAGES <= set(jobs)
    assert set(STAGE2_ON) <= set(jobs)
    assert "demo_dataset" not in jobs
    assert "train:stage1" not in jobs and "train:stage2_control" not in jobs
    assert jobs["evaluate"] == 1  # stage 2's only


def test_stage2_key_reruns_stage2_its_evaluation_and_the_comparison(finished):
    assert with_config(finished, train__stage2__loss_region=0.7) == STAGE2_ON


def test_pretraining_key_reruns_the_first_stage_features_training_and_evaluation(finished):
    jobs = with_config(finished, pretrain__learning_rate=1e-3)
    assert jobs["pretrain_backbone"] == 1
    assert jobs["image_features"] == 4  # config.yaml's shards: train 2, val 1, test1 1
    for rule in ("train:stage1", "train:stage2", "train:stage2_control", "evaluate"):
        assert rule in jobs, rule
    assert not {"demo_dataset", "detect_shard", "merge_boxes", "box_stats"} & set(jobs)


def test_stage2_key_reruns_neither_the_first_stage_nor_the_features(finished):
    jobs = with_config(finished, train__stage2__learning_rate=3e-4)
    assert "train:stage2" in jobs
    assert not {"pretrain_backbone", "image_features", "train:stage1"} & set(jobs)


def test_stage1_key_reruns_both_stages_but_no_detection(finished):
    jobs = with_config(finished, train__stage1__learning_rate=9e-4)
    assert jobs["train:stage1"] == 1 and jobs["train:stage2"] == 1
    assert jobs["train:stage2_control"] == 1
    assert not BOX_STAGES - {"box_report"} & set(jobs)


def test_report_key_reruns_only_the_report(finished):
    assert with_config(finished, report__seed=7) == {"box_report": 1}


def test_detection_code_reruns_detection_and_what_follows(finished):
    jobs = edited(finished, "cirflow/boxes/saliency.py")
    assert BOX_STAGES <= set(jobs)
    assert "train:stage2" in jobs
    assert "train:stage1" not in jobs


def test_transform_code_reruns_training_and_evaluation_only(finished):
    jobs = edited(finished, "cirflow/data/transforms.py")
    assert jobs == {
        # The first stage and the cached features go through the same transform.
        "pretrain_backbone": 1,
        "image_features": 4,
        "train:stage1": 1,
        "train:stage2": 1,
        "train:stage2_control": 1,
        "evaluate": 3,
        "compare_stages": 1,
        "results_report": 1,  # never the box report: it does not wait for training
    }


def test_demo_generator_code_reruns_the_demo_dataset(finished):
    # A module the rule's script reaches only through other demo modules.
    jobs = edited(finished, "cirflow/data/demo/scene.py")
    assert jobs["demo_dataset"] == 1


def test_report_code_reruns_only_the_report(finished):
    assert edited(finished, "cirflow/report/boxes/plots.py") == {"box_report": 1}
    assert edited(finished, "cirflow/report/boxes/templates/boxes_report.html") == {"box_report": 1}


def test_results_page_key_reruns_only_the_results_page(finished):
    assert with_config(finished, report__results__seed=7) == {"results_report": 1}
    assert with_config(finished, report__results__top=3) == {"results_report": 1}


def test_results_page_code_reruns_only_the_results_page(finished):
    for path in (
        "cirflow/report/results/page.py",
        "cirflow/report/results/figures.py",
        "cirflow/report/results/templates/results.html",
    ):
        assert edited(finished, path) == {"results_report": 1}, path


def test_the_pages_shared_code_reruns_both_pages(finished):
    for path in ("cirflow/report/html.py", "cirflow/report/templates/base.html"):
        assert edited(finished, path) == {"box_report": 1, "results_report": 1}, path


def test_the_ablation_summary_appearing_reruns_only_the_results_page(finished):
    """summary.csv is the page's param (its digest), not an input: the page reruns when it
    appears or changes, and rule all never runs the ablation for it."""
    summary = finished / "results/demo/ablation/summary.csv"
    summary.parent.mkdir(parents=True, exist_ok=True)
    try:
        summary.write_text("mode,box_source\n")
        assert planned_jobs(finished) == {"results_report": 1}
    finally:
        summary.unlink()
    assert planned_jobs(finished) == {}


def test_demo_config_is_the_small_one(finished):
    # Guards the fixture: the rerun tests must stay on the small demo.
    assert yaml.safe_load((finished / "test_config.yaml").read_text())["demo"] == SMALL_DEMO["demo"]
