"""The one CSV writer (`cirflow.io.csv_text`) in the three formats the workflow writes: the
per-epoch metrics, comparison.csv and the ablation's summary.csv, byte for byte."""

from __future__ import annotations

import json
import math

from cirflow.evaluate.ablation import summary_csv
from cirflow.evaluate.comparison import compare_stages
from cirflow.evaluate.recall import METRIC_KEYS
from cirflow.io import csv_text, fixed_cell, plain_cell
from cirflow.train.history import RunState, write_tables


def test_per_epoch_csvs_keep_integers_and_write_numbers_to_6_digits(tmp_path):
    state = RunState(
        epoch=2,
        train_rows=[
            {"epoch": 1, "loss_itc": 1.23456789, "loss_rtc": 3, "loss_align": 1e-7},
            {"epoch": 2, "loss_itc": 123456789.0, "loss_rtc": -0.25, "loss_align": math.nan},
        ],
        val_rows=[{"epoch": 1, **{k: 100 / 3 for k in METRIC_KEYS}}],
    )
    write_tables(tmp_path, state, with_region=True)
    # loss_region and loss_total are missing from the rows: empty cells.
    assert (tmp_path / "train_metrics.csv").read_text() == (
        "epoch,loss_itc,loss_rtc,loss_align,loss_region,loss_total\n"
        "1,1.23457,3,1e-07,,\n"
        "2,1.23457e+08,-0.25,nan,,\n"
    )
    assert (tmp_path / "validation_metrics.csv").read_text() == (
        "epoch," + ",".join(METRIC_KEYS) + "\n1" + ",33.3333" * len(METRIC_KEYS) + "\n"
    )


def test_comparison_csv_signs_its_deltas_and_leaves_a_missing_control_empty(tmp_path):
    stage1 = {k: 10.0 + i for i, k in enumerate(METRIC_KEYS)}
    stage2 = {k: v + (1.25 if i % 2 else -2.5) for i, (k, v) in enumerate(stage1.items())}
    (tmp_path / "s1.json").write_text(json.dumps(stage1))
    (tmp_path / "s2.json").write_text(json.dumps(stage2))
    compare_stages(tmp_path / "s1.json", tmp_path / "s2.json", tmp_path / "comparison.csv")
    lines = (tmp_path / "comparison.csv").read_text().split("\n")
    assert lines[0] == "metric,stage1,stage2_control,stage2,delta_vs_control,delta_vs_stage1"
    assert lines[1] == "group_recall_at1,10.00,,7.50,,-2.50"
    assert lines[2] == "group_recall_at2,11.00,,12.25,,+1.25"
    assert lines[-2].startswith("geometric_mean,20.00,,17.50,,-2.50")
    assert lines[-1] == "" and len(lines) == len(METRIC_KEYS) + 2


def test_ablation_summary_leaves_nan_cells_empty_and_signs_its_deltas():
    nan = math.nan
    rows = [
        {"mode": "none", "box_source": "-", "metric": "recall_at1", "seeds": 1}
        | {"mean": 41.234, "sd": nan, "delta_vs_none": nan, "delta_vs_none_sd": nan},
        {"mode": "tokens", "box_source": "yolo", "metric": "recall_at1", "seeds": 2}
        | {"mean": 40.0, "sd": 0.125, "delta_vs_none": -1.234, "delta_vs_none_sd": 0.5},
        {"mode": "tokens", "box_source": "yolo", "metric": "recall_at5", "seeds": 2}
        | {"mean": 80.0, "sd": 1.0, "delta_vs_none": 0.0, "delta_vs_none_sd": 0.0},
    ]
    assert summary_csv(rows) == (
        "mode,box_source,metric,seeds,mean,sd,delta_vs_none,delta_vs_none_sd\n"
        "none,-,recall_at1,1,41.23,,,\n"
        "tokens,yolo,recall_at1,2,40.00,0.12,-1.23,0.50\n"
        "tokens,yolo,recall_at5,2,80.00,1.00,+0.00,0.00\n"
    )


def test_cell_formats():
    assert [plain_cell(v) for v in (None, "", "a", 7, True, 0.1 + 0.2)] == [
        "",
        "",
        "a",
        "7",
        "True",
        "0.3",
    ]
    assert fixed_cell(2)(math.nan) == "nan"  # comparison.csv writes NaN as Python does
    assert fixed_cell(2, signed=True)(math.nan) == "+nan"
    assert fixed_cell(1, blank_nan=True)(math.nan) == ""
    assert fixed_cell(3, signed=True)(None) == ""
    assert csv_text([], ["a", "b"]) == "a,b\n"
