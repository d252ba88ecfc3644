"""Settings errors name the config key (or flag) the user actually set."""

import pytest

from cirflow.errors import CirflowError, naming_keys
from cirflow.evaluate.settings import CLI, EvalSettings
from cirflow.train.config import RunFiles, TrainSettings, settings_from_config


def test_evaluation_errors_name_the_evaluate_keys():
    with pytest.raises(CirflowError, match=r"^evaluate\.image_cache must be one of"):
        EvalSettings(image_cache="disk")
    with pytest.raises(CirflowError, match=r"^evaluate\.batch_size must be ≥ 1"):
        EvalSettings(batch_size=0)
    with pytest.raises(CirflowError, match=r"^--image-cache must be one of"):
        EvalSettings(image_cache="disk", section=CLI)
    # Training's own validation reads train.eval_batch_size.
    with pytest.raises(CirflowError, match=r"^train\.eval_batch_size must be ≥ 1"):
        EvalSettings(batch_size=0, section="train", batch_size_key="eval_batch_size")


def test_training_errors_name_the_stage_keys(tmp_path):
    model = {"preset": "tiny"}
    params = {"seed": 0, "amp": True, "stage2": {"learning_rate": 0.0, "loss_region": 0.5}}
    box_file = tmp_path / "train.json"
    box_file.write_text("{}")
    files = RunFiles(str(tmp_path), str(tmp_path / "out"), box_file=str(box_file))
    settings = settings_from_config(files, model, params, {})
    with pytest.raises(CirflowError, match=r"^train\.stage2\.learning_rate must be > 0"):
        settings.check()
    runtime = {"image_cache": "disk"}
    params["stage2"]["learning_rate"] = 1e-4
    settings = settings_from_config(files, model, params, runtime)
    with pytest.raises(CirflowError, match=r"^train\.image_cache must be one of"):
        settings.check()
    # The command line's settings name the flags.
    with pytest.raises(CirflowError, match=r"^--image-cache must be one of"):
        TrainSettings(cirr_root="r", out="o", image_cache="disk").check()


def test_device_errors_name_the_key():
    from cirflow.device import resolve_device

    with pytest.raises(CirflowError, match=r"^evaluate\.device is 'tpu'"):
        with naming_keys(EvalSettings().key):
            resolve_device("tpu")
    # The lower layer alone names its own parameter.
    with pytest.raises(CirflowError, match=r"^device is 'tpu'"):
        resolve_device("tpu")


def test_data_layer_errors_name_the_key_the_caller_gives(tmp_path):
    """No config key travels into cirflow.data: it raises SettingErrors naming its parameter,
    the training names the key its settings came from."""
    from cirflow.data.image_cache import check_cache_mode
    from cirflow.errors import SettingError

    with pytest.raises(SettingError, match=r"^image_cache must be one of"):
        check_cache_mode("disk")
    with pytest.raises(CirflowError, match=r"^train\.image_cache must be one of"):
        with naming_keys(TrainSettings(cirr_root="r", out="o", stage="stage1").key):
            check_cache_mode("disk")
    with pytest.raises(CirflowError, match=r"^--image-cache must be one of"):
        with naming_keys(TrainSettings(cirr_root="r", out="o").key):
            check_cache_mode("disk")


def test_runtime_keys_stay_out_of_the_fingerprint(tmp_path):
    from cirflow.train.config import fingerprint

    root = tmp_path / "cirr"
    (root / "cirr/captions").mkdir(parents=True)
    (root / "cirr/image_splits").mkdir(parents=True)
    (root / "cirr/captions/cap.rc2.train.json").write_text("[]")
    (root / "cirr/image_splits/split.rc2.train.json").write_text("{}")
    a = TrainSettings(cirr_root=str(root), out="a", num_workers=0, device="cpu")
    b = TrainSettings(cirr_root=str(root), out="b", num_workers=4, device="auto", threads=3)
    c = TrainSettings(cirr_root=str(root), out="a", learning_rate=2e-5)
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


# --------------------------------------------------------- the declaration and the JSON schema
SCHEMA_TYPES = {"integer": "int", "number": "float", "boolean": "bool", "string": "str"}


def _schema():
    from conftest import REPO

    from cirflow.config import load_schema

    return load_schema(REPO / "schemas" / "config.schema.yaml")["properties"]


def _annotated_types(f) -> set[str]:
    return {t.strip() for t in str(f.type).split("|")}


def _schema_types(prop: dict) -> set[str]:
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else types
    return {"None" if t == "null" else SCHEMA_TYPES[t] for t in types}


def _agrees(cls, blocks: dict[str, dict], own_defaults: tuple[str, ...] = ()) -> list[str]:
    """Where the declaration of `cls` and the schema's blocks disagree (type, bounds, choices,
    default but for the fields in `own_defaults`), as readable lines."""
    from cirflow.settings import config_key, declarations

    problems = []
    for f, d in declarations(cls):
        if d.config is None:
            continue
        key = config_key(f, d)
        prop = blocks[d.config].get(key)
        if prop is None:
            problems.append(f"{f.name}: no {d.config}.{key} in the schema")
            continue
        if _schema_types(prop) != _annotated_types(f):
            problems.append(f"{f.name}: type {f.type} vs schema {prop.get('type')}")
        for ours, theirs in (
            (d.minimum, "minimum"),
            (d.exclusive_minimum, "exclusiveMinimum"),
            (d.maximum, "maximum"),
        ):
            if ours != prop.get(theirs):
                problems.append(f"{f.name}: {theirs} {ours} vs schema {prop.get(theirs)}")
        enum = [v for v in prop.get("enum", []) if v is not None] or None
        if d.choices is not None and tuple(enum or ()) != tuple(d.choices):
            problems.append(f"{f.name}: choices {d.choices} vs schema enum {enum}")
        default = prop.get("default", f.default)
        if default != f.default and f.name not in own_defaults:
            problems.append(f"{f.name}: default {f.default!r} vs schema {default!r}")
    return problems


def _undeclared(cls, blocks: dict[str, dict], ignored: set[str]) -> list[str]:
    from cirflow.settings import config_key, declarations

    declared = {(d.config, config_key(f, d)) for f, d in declarations(cls)}
    return [
        f"{block}.{key}"
        for block, props in blocks.items()
        for key in props
        if (block, key) not in declared and f"{block}.{key}" not in ignored
    ]


def test_training_settings_are_declared_as_the_schema_says():
    """Every training key of the schema is a declared field of TrainSettings and back, with the
    same type, bounds, choices and default (stage 1's defaults: stage 2's own are the original
    scripts'). model.preset has no choices on purpose: the command line also takes
    pretrain_random (GPU measurements), and get_preset names the valid ones."""
    from cirflow.train.config import REGION_DEFAULTS, TrainSettings

    schema = _schema()
    train = schema["train"]["properties"]
    stage2 = train["stage2"]["properties"]
    blocks = {
        "stage": {**stage2, **train["stage1"]["properties"]},
        "region": stage2["region"]["properties"],
        "train": train,
        "model": schema["model"]["properties"],
    }
    ignored = {"stage.init", "stage.box_method", "stage.region", "train.resources"}
    ignored |= {"train.stage1", "train.stage2"}
    # A run's default mode is none (stage 1, the command line without --use-region-loss); the
    # config's stage 2 without a region block is the original scripts' aux (REGION_DEFAULTS).
    assert _agrees(TrainSettings, blocks, own_defaults=("region_mode",)) == []
    assert _undeclared(TrainSettings, blocks, ignored) == []
    region = blocks["region"]
    assert REGION_DEFAULTS == {k: region[k]["default"] for k in REGION_DEFAULTS}


def test_pretrain_and_evaluation_settings_are_declared_as_the_schema_says():
    from cirflow.evaluate.settings import EvalSettings
    from cirflow.train.pretrain import PretrainSettings

    schema = _schema()
    pretrain = {"pretrain": schema["pretrain"]["properties"]}
    assert _agrees(PretrainSettings, pretrain) == []
    assert _undeclared(PretrainSettings, pretrain, {"pretrain.threads"}) == []
    evaluate = {"evaluate": schema["evaluate"]["properties"]}
    assert _agrees(EvalSettings, evaluate) == []
    assert _undeclared(EvalSettings, evaluate, {"evaluate.resources"}) == []


def test_every_training_flag_comes_from_the_declaration():
    """`cirflow train --help` lists one flag per declared field that has one, with its help."""
    import argparse

    from cirflow.settings import declarations, flag_of
    from cirflow.train import cli
    from cirflow.train.config import TrainSettings

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = {opt: a for a in train._actions for opt in a.option_strings}
    for f, d in declarations(TrainSettings):
        flag = flag_of(f, d)
        if flag is not None:
            assert flags[flag].dest == f.name and flags[flag].help == d.help, flag
