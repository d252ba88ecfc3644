"""The run catalogue (cirflow/train/runs.py): the ablation's run names, which the rules parse
back (rules/common.smk), and the stages' params."""

import re

import pytest

from cirflow.errors import CirflowError
from cirflow.train.runs import (
    STAGES,
    ablation_runs,
    ablation_sources,
    parse_run,
    run_name,
    run_pattern,
)


def test_run_names_parse_back_to_their_mode_and_box_source():
    # A box source with an underscore in its name stays whole.
    for mode, source in [
        ("none", None),
        ("aux", "saliency"),
        ("tokens", "gt"),
        ("aux", "my_boxes"),
    ]:
        assert parse_run(run_name(mode, source)) == (mode, source)


@pytest.mark.parametrize("name", ["", "tokens", "tokens_", "all_gt", "none_gt", "_gt"])
def test_a_run_name_that_is_no_run_is_an_error_naming_it(name):
    with pytest.raises(CirflowError, match=re.escape(repr(name))):
        parse_run(name)


def test_ablation_runs_list_none_once_then_each_sources_modes():
    runs = ablation_runs(["none", "aux", "tokens"], ["saliency", "gt"])
    assert runs == ["none", "aux_saliency", "tokens_saliency", "aux_gt", "tokens_gt"]
    assert ablation_runs(["tokens"], ["gt"]) == ["tokens_gt"]
    with pytest.raises(CirflowError, match="needs a box source"):
        run_name("aux", None)


def test_the_run_wildcard_matches_exactly_the_runs():
    pattern = re.compile(run_pattern(["saliency", "yolo", "hybrid", "gt"]))
    for run in ablation_runs(["none", "aux", "tokens"], ["saliency", "yolo", "hybrid", "gt"]):
        assert pattern.fullmatch(run), run
    for not_a_run in ("none_gt", "aux", "tokens_sam", "stage1"):
        assert not pattern.fullmatch(not_a_run), not_a_run


def test_box_sources_default_to_the_methods_and_gt_only_on_the_demo():
    assert ablation_sources(None, ["saliency"], demo=True) == ["saliency", "gt"]
    assert ablation_sources(None, ["saliency", "yolo"], demo=False) == ["saliency", "yolo"]
    assert ablation_sources(["gt", "gt", "yolo"], ["saliency"], demo=True) == ["gt", "yolo"]
    with pytest.raises(CirflowError, match="gt .* only for the demo"):
        ablation_sources(["gt"], ["saliency"], demo=False)


def test_the_stages():
    assert STAGES == ("stage1", "stage2_control", "stage2")
