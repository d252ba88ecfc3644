"""Config handling without Snakemake: types by schema, the error list, canonical rule params."""

import copy
import re

import pytest
import yaml

from cirflow.config import canonical, check_config, config_errors, load_schema, normalise_config
from cirflow.errors import CirflowError


@pytest.fixture(scope="module")
def schema(repo):
    return load_schema(repo / "schemas/config.schema.yaml")


@pytest.fixture
def config(repo):
    """config.yaml as Snakemake loads it (PyYAML)."""
    return yaml.safe_load((repo / "config.yaml").read_text())


def test_the_default_config_is_valid(config, schema):
    assert config_errors(normalise_config(config, schema), schema) == []


# ------------------------------------------------------------------------------------ canonical
def test_canonical_sorts_keys_at_every_level_and_keeps_list_order():
    a = {"b": 1, "a": {"y": [3, 1, {"q": 1, "p": 2}], "x": (1, 2)}, "c": -0.0}
    b = {"c": 0.0, "a": {"x": [1, 2], "y": [3, 1, {"p": 2, "q": 1}]}, "b": 1}
    assert repr(canonical(a)) == repr(canonical(b))
    assert list(canonical(a)) == ["a", "b", "c"]
    assert list(canonical(a)["a"]["y"][2]) == ["p", "q"]
    assert canonical(a)["a"]["y"][:2] == [3, 1]  # lists are ordered data: kept as they are
    assert repr(canonical({"x": [2, 1]})) != repr(canonical({"x": [1, 2]}))


def test_restated_numbers_give_the_same_params(config, schema):
    """`1e-3` (a string to PyYAML), `1.0e-3` and `0.001` are one value; an integral float and
    an int are one value where the schema says number or integer."""
    texts = {
        "plain": "train: {stage1: {learning_rate: 0.001, num_epochs: 16, loss_rtc: 1}}",
        "exponent": "train: {stage1: {learning_rate: 1e-3, num_epochs: 16.0, loss_rtc: 1.0}}",
        "dotted": "train: {stage1: {loss_rtc: 1, num_epochs: '16', learning_rate: 1.0e-3}}",
    }
    params = set()
    for text in texts.values():
        cfg = copy.deepcopy(config)
        override = yaml.safe_load(text)
        cfg["train"]["stage1"].update(override["train"]["stage1"])
        normalise_config(cfg, schema)
        assert config_errors(cfg, schema) == []
        params.add(repr(canonical(cfg["train"]["stage1"])))
    assert len(params) == 1
    stage1 = yaml.safe_load(texts["exponent"])["train"]["stage1"]
    assert stage1["learning_rate"] == "1e-3"  # what PyYAML gives: why normalise_config exists


def test_nested_config_strings_get_their_types(config, schema):
    """`--config train='{stage1: {...}}'` reaches the workflow as strings (BaseLoader)."""
    cfg = copy.deepcopy(config)
    cfg["train"]["stage1"].update(
        {"num_epochs": "3", "learning_rate": "2e-4", "grad_clip": "null", "batching": "random"}
    )
    cfg["train"]["amp"] = "false"
    cfg["boxes"]["yolo"].update({"batch_size": "16", "half": "true", "classes": ["0", "person"]})
    cfg["boxes"]["max_images"] = "null"
    normalise_config(cfg, schema)
    assert cfg["train"]["stage1"]["num_epochs"] == 3
    assert cfg["train"]["stage1"]["learning_rate"] == pytest.approx(2e-4)
    assert cfg["train"]["stage1"]["grad_clip"] is None
    assert cfg["train"]["stage1"]["batching"] == "random"
    assert cfg["train"]["amp"] is False
    assert cfg["boxes"]["yolo"]["batch_size"] == 16
    assert cfg["boxes"]["yolo"]["half"] is True
    # Items of type [integer, string]: a string is allowed, so it stays one.
    assert cfg["boxes"]["yolo"]["classes"] == ["0", "person"]
    assert cfg["boxes"]["max_images"] is None
    assert config_errors(cfg, schema) == []
    # Strings that stay strings where the schema allows them; nonsense is left for the errors.
    cfg["boxes"]["yolo"]["batch_size"] = "auto"
    cfg["boxes"]["yolo"]["device"] = "0"
    cfg["train"]["stage1"]["num_epochs"] = "many"
    normalise_config(cfg, schema)
    assert cfg["boxes"]["yolo"]["batch_size"] == "auto" and cfg["boxes"]["yolo"]["device"] == "0"
    assert config_errors(cfg, schema) == [
        "train.stage1.num_epochs: 'many' is not of type 'integer'"
    ]


# --------------------------------------------------------------------------------------- errors
def test_unknown_keys_at_top_level_and_nested_are_named(config, schema):
    cfg = copy.deepcopy(config)
    cfg["trian"] = {}
    cfg["train"]["stage2"]["lerning_rate"] = 1e-4
    cfg["boxes"]["saliency"]["treshold_k"] = 2
    assert config_errors(cfg, schema) == [
        "boxes.saliency.treshold_k: unknown key (did you mean 'threshold_k'?)",
        "train.stage2.lerning_rate: unknown key (did you mean 'learning_rate'?)",
        "trian: unknown key (did you mean 'train'?)",
    ]


def test_several_errors_are_listed_at_once(config, schema):
    cfg = copy.deepcopy(config)
    cfg["boxes"]["shards"] = "many"
    cfg["train"]["stage1"]["batch_size"] = 1
    cfg["model"]["preset"] = "huge"
    cfg["report"]["colour"] = "blue"
    with pytest.raises(CirflowError) as info:
        check_config(cfg, schema)
    lines = str(info.value).splitlines()[1:]
    assert [line.strip().split(":", 1)[0] for line in lines] == [
        "boxes.shards",
        "model.preset",
        "report.colour",
        "train.stage1.batch_size",
    ]
    assert "boxes.shards: 'many' is not of type 'object'" in str(info.value)


def test_cirr_root_is_required_for_dataset_cirr(config, schema):
    cfg = copy.deepcopy(config)
    cfg["dataset"]["name"] = "cirr"  # cirr_root stays null, as in config.yaml
    errors = config_errors(cfg, schema)
    assert len(errors) == 1 and errors[0].startswith(
        "dataset.cirr_root: required for dataset.name: cirr, but it is null"
    )
    assert "None is not of type" not in errors[0]
    del cfg["dataset"]["cirr_root"]
    assert config_errors(cfg, schema) == [
        "dataset.cirr_root: required for dataset.name: cirr, but not given"
    ]
    cfg["dataset"]["cirr_root"] = "/data/CIRR"
    assert config_errors(cfg, schema) == []
    # The demo needs no root.
    cfg["dataset"] = {"name": "demo", "cirr_root": None}
    assert config_errors(cfg, schema) == []


# ----------------------------------------------------------------------------------- the rules
ALLOWED_PARAMS = {
    # Strings and scalars need no canonical form; root_of_input is derived from an input.
    "root=dataset_root()",
    "cirr_root=root_of_input",
    "box_method=stage2_box_method()",
    'max_unreadable_fraction=config["boxes"]["max_unreadable_fraction"]',
    "region_mode=STAGE2_MODE",
    # Input functions of rules/common.smk that return canonical(...).
    "detect=detect_params",
    "evaluate=eval_params()",
    "train=train_run_params",
    "entries=ablation_entries_param",
    "report=box_report_params()",
    "config=results_page_config()",
    "ablation=ablation_summary()",
}


def test_every_rule_param_is_canonical(repo):
    """Snakemake compares params by repr: a dict param must go through canonical()."""
    common = (repo / "rules/common.smk").read_text()
    for name in (
        "detect_params",
        "eval_params",
        "train_params",
        "train_run_params",
        "box_report_params",
        "results_page_config",
        "ablation_summary",
        "ablation_entries_param",
    ):
        body = common.split(f"def {name}(", 1)[1].split("\ndef ", 1)[0]
        assert "return canonical(" in body, name
    for path in sorted((repo / "rules").glob("*.smk")):
        text = re.sub(r"\n\s*#[^\n]*", "", path.read_text())  # comment lines are no params
        for block in re.findall(r"\n    params:\n((?:        .*\n|\s*\n)+)", text):
            entries = re.split(r"\n        (?=\w+=)", "\n" + block.rstrip())
            for entry in filter(None, (e.strip() for e in entries)):
                entry = re.sub(r"\s+", " ", entry).rstrip(",")
                # code_digest returns a string (sha256 hex): canonical as it is.
                assert (
                    entry in ALLOWED_PARAMS
                    or re.match(r"\w+=canonical\(", entry)
                    or re.fullmatch(r'code=code_digest\("\w+"\)', entry)
                ), f"{path.name}: param {entry!r} is not canonical"
