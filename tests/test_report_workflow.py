"""Rule box_report through the snakemake CLI on a small demo, and `snakemake --report`."""

from __future__ import annotations

import json

import pytest
from conftest import make_workflow_copy, run_snakemake
from test_report import SUMMARY_KEYS, parse, stat_cells

pytestmark = pytest.mark.slow

REPORT = "results/demo/report/boxes_saliency.html"


@pytest.fixture
def report_run(finished_demo_run):
    return finished_demo_run


def test_box_report_rule_writes_the_page_and_plots(report_run):
    page = parse(report_run / REPORT)
    for split in ("train", "val", "test1"):
        stats = json.loads(
            (report_run / f"results/demo/boxes/saliency/{split}.stats.json").read_text()
        )
        cells = stat_cells(page, f"saliency/{split}")
        for key in SUMMARY_KEYS:
            assert json.loads(cells[key][0]) == stats[key], (split, key)
    assert len([i for i in page.images if i["src"].startswith("data:image/jpeg")]) > 0
    plots = sorted(
        p.name for p in (report_run / "results/demo/report/boxes_saliency_plots").glob("*.png")
    )
    assert plots == ["box_area.png", "box_aspect_ratio.png", "boxes_per_image.png"]
    assert (report_run / "logs/demo/report/boxes_saliency.log").read_text().count("report written")
    assert (report_run / "benchmarks/runs/demo/report/boxes_saliency.tsv").exists()


def test_snakemake_report_shows_the_page_and_plots(report_run):
    run_snakemake(report_run, REPORT, "--report", "snakemake_report.html")
    html = (report_run / "snakemake_report.html").read_text()
    assert "Box validation" in html
    assert "boxes_saliency.html" in html
    assert "boxes_saliency_plots/boxes_per_image.png" in html
    assert "Key plots of the" in html  # the caption of rules/report/box_plots.rst


def test_changing_report_settings_reruns_only_the_report(report_run):
    import yaml

    unchanged = run_snakemake(report_run, REPORT, "-n")
    assert "Nothing to be done" in unchanged.stdout + unchanged.stderr
    config = yaml.safe_load((report_run / "test_config.yaml").read_text())
    config["report"] = {"seed": 1}
    (report_run / "other_config.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(report_run, REPORT, "-n", "--configfile", "other_config.yaml")
    out = proc.stdout + proc.stderr
    assert "rule box_report:" in out
    for rule in ("demo_dataset", "detect_shard", "merge_boxes", "box_stats"):
        assert f"rule {rule}:" not in out, rule


def test_several_methods_give_one_page_each_without_a_cycle(tmp_path):
    workdir = make_workflow_copy(tmp_path / "wf", {"boxes": {"methods": ["saliency", "yolo"]}})
    proc = run_snakemake(
        workdir,
        "-n",
        "results/demo/report/boxes_saliency.html",
        "results/demo/report/boxes_yolo.html",
    )
    out = proc.stdout + proc.stderr
    assert out.count("rule box_report:") == 2
