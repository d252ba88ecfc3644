"""The run catalogue (cirflow/train/runs.py): the ablation's run names, which the rules parse
back (rules/common.smk), and the stages' params."""

import re

import pytest

from cirflow.errors import CirflowError
from cirflow.train.runs import (
    STAGES,
    AblationRun,
    ablation_runs,
    ablation_sources,
    run_pattern,
)

SOURCES = ["saliency", "yolo", "hybrid", "gt", "edited"]


@pytest.mark.parametrize(
    "run",
    [
        AblationRun("none"),
        AblationRun("aux", "saliency"),
        AblationRun("tokens", "gt"),
        AblationRun("token_loss", "gt"),  # a mode with an underscore
        AblationRun("aux", "my_boxes"),  # a box source with one
        AblationRun("token_loss", "edited", 6),
        AblationRun("none", None, 6),
    ],
)
def test_run_names_parse_back_to_their_run(run):
    assert AblationRun.parse(run.name) == run


@pytest.mark.parametrize(
    "name", ["", "tokens", "tokens_", "all_gt", "none_gt", "_gt", "none@", "none@0", "aux_gt@x"]
)
def test_a_run_name_that_is_no_run_is_an_error_naming_it(name):
    with pytest.raises(CirflowError, match=re.escape(repr(name))):
        AblationRun.parse(name)


def test_runs_that_cannot_be_are_refused():
    with pytest.raises(CirflowError, match="needs a box source"):
        AblationRun("aux")
    with pytest.raises(CirflowError, match="takes no box source"):
        AblationRun("none", "gt")
    # Per-triplet boxes cannot score a gallery image: only the modes that train on boxes.
    with pytest.raises(CirflowError, match="edited gives each triplet its own boxes"):
        AblationRun.parse("tokens_edited")
    assert AblationRun.parse("token_loss_edited").source == "edited"


def test_ablation_runs_list_none_once_then_each_sources_modes():
    cfg = {"modes": ["none", "aux", "tokens"], "runs": None}
    names = [r.name for r in ablation_runs(cfg, ["saliency", "gt"])]
    assert names == ["none", "aux_saliency", "tokens_saliency", "aux_gt", "tokens_gt"]
    # Or by name, in the order given, each once.
    cfg = {"modes": ["none"], "runs": ["none", "token_loss_edited", "none@6", "none"]}
    assert [r.name for r in ablation_runs(cfg, [])] == ["none", "token_loss_edited", "none@6"]


def test_the_run_wildcard_matches_exactly_the_runs():
    pattern = re.compile(run_pattern(SOURCES))
    modes = ["none", "aux", "token_loss", "tokens", "gated"]
    for run in ablation_runs({"modes": modes, "runs": None}, ["saliency", "yolo", "gt"]):
        assert pattern.fullmatch(run.name), run.name
    for name in ("token_loss_edited", "none@6", "gated_gt@12"):
        assert pattern.fullmatch(name), name
    for not_a_run in ("none_gt", "aux", "tokens_sam", "stage1", "none@0", "token_gt"):
        assert not pattern.fullmatch(not_a_run), not_a_run


def test_box_sources_default_to_the_methods_and_gt_only_on_the_demo():
    assert ablation_sources(None, ["saliency"], demo=True) == ["saliency", "gt"]
    assert ablation_sources(None, ["saliency", "yolo"], demo=False) == ["saliency", "yolo"]
    assert ablation_sources(["gt", "gt", "yolo"], ["saliency"], demo=True) == ["gt", "yolo"]
    for source in ("gt", "edited"):
        with pytest.raises(CirflowError, match=f"{source} exists only for the demo"):
            ablation_sources([source], ["saliency"], demo=False)


def test_the_stages():
    assert STAGES == ("stage1", "stage2_control", "stage2")
