"""The stage comparison page (rule stage_report), and the box report that no longer waits for
training."""

import json
import re

import pytest
from conftest import make_workflow_copy, planned_jobs

from cirflow.errors import CirflowError
from cirflow.report.stages import build_stage_report

METRICS = ("recall_at1", "recall_at5", "group_recall_at1", "arithmetic_mean")


@pytest.fixture
def inputs(tmp_path):
    stage1 = dict(zip(METRICS, (10.0, 30.0, 40.0, 25.5), strict=True))
    control = dict(zip(METRICS, (11.0, 29.5, 40.5, 25.0), strict=True))
    stage2 = dict(zip(METRICS, (12.5, 29.0, 41.0, 26.0), strict=True))
    (tmp_path / "stage1.json").write_text(json.dumps(stage1))
    (tmp_path / "control.json").write_text(json.dumps(control))
    (tmp_path / "stage2.json").write_text(json.dumps(stage2))
    lines = ["metric,stage1,stage2_control,stage2,delta_vs_control,delta_vs_stage1"] + [
        f"{k},{stage1[k]:.2f},{control[k]:.2f},{stage2[k]:.2f},"
        f"{stage2[k] - control[k]:+.2f},{stage2[k] - stage1[k]:+.2f}"
        for k in METRICS
    ]
    (tmp_path / "comparison.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_the_page_shows_the_stages_the_control_and_the_deltas(inputs):
    out = inputs / "report/stages.html"
    result = build_stage_report(
        inputs / "comparison.csv",
        inputs / "stage1.json",
        inputs / "stage2.json",
        out,
        control_json=inputs / "control.json",
    )
    html = out.read_text()
    assert result["metrics"] == len(METRICS)
    rows = re.findall(r"<tr[^>]*><td>([^<]+)</td>((?:<td[^>]*>[^<]*</td>)+)</tr>", html)
    cells = {m: re.findall(r">([^<]*)</td>", rest) for m, rest in rows}
    assert cells["recall_at1"] == ["10.00", "11.00", "12.50", "+1.50", "+2.50"]
    assert cells["recall_at5"] == ["30.00", "29.50", "29.00", "-0.50", "-1.00"]
    assert "sanity check" in html and "docs/design.md §11" in html
    # Self-contained: nothing to fetch.
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)


def test_a_stale_or_broken_comparison_is_an_error(inputs):
    out = inputs / "stages.html"
    metrics = json.loads((inputs / "stage2.json").read_text())
    metrics["recall_at1"] = 50.0
    (inputs / "stage2.json").write_text(json.dumps(metrics))
    with pytest.raises(CirflowError, match="stale comparison"):
        build_stage_report(
            inputs / "comparison.csv", inputs / "stage1.json", inputs / "stage2.json", out
        )
    (inputs / "comparison.csv").write_text("")
    with pytest.raises(CirflowError, match="empty"):
        build_stage_report(
            inputs / "comparison.csv", inputs / "stage1.json", inputs / "stage2.json", out
        )
    assert not out.exists()


def test_the_removed_report_key_says_what_replaced_it(repo):
    import yaml

    from cirflow.config import config_errors

    config = yaml.safe_load((repo / "config.yaml").read_text())
    config["report"]["training_comparison"] = True
    (error,) = config_errors(config, repo / "schemas/config.schema.yaml")
    assert error.startswith("report.training_comparison: removed") and "stages.html" in error


def test_the_box_report_never_waits_for_training(tmp_path):
    workdir = make_workflow_copy(tmp_path / "wf")
    jobs = planned_jobs(workdir, "results/demo/report/boxes_saliency.html")
    assert "box_report" in jobs
    assert not {"train_stage1", "train_stage2", "evaluate", "compare_stages"} & set(jobs)
    everything = planned_jobs(workdir)
    assert everything["stage_report"] == 1 and everything["box_report"] == 1


def test_the_page_reads_the_columns_compare_stages_writes():
    from cirflow.evaluate.run import COMPARISON_COLUMNS
    from cirflow.report.stages import COLUMNS

    assert COLUMNS == COMPARISON_COLUMNS
