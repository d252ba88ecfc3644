"""Settings errors name the config key (or flag) the user actually set."""

import pytest

from cirflow.errors import CirflowError
from cirflow.evaluate.settings import CLI, EvalSettings
from cirflow.train.config import TrainSettings, settings_from_config


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
    settings = settings_from_config(
        "stage2", tmp_path, tmp_path / "out", model, params, {}, box_file=box_file
    )
    with pytest.raises(CirflowError, match=r"^train\.stage2\.learning_rate must be > 0"):
        settings.check()
    runtime = {"image_cache": "disk"}
    params["stage2"]["learning_rate"] = 1e-4
    settings = settings_from_config(
        "stage2", tmp_path, tmp_path / "out", model, params, runtime, box_file=box_file
    )
    with pytest.raises(CirflowError, match=r"^train\.image_cache must be one of"):
        settings.check()


def test_device_errors_name_the_key():
    from cirflow.device import resolve_device

    with pytest.raises(CirflowError, match=r"^evaluate\.device is 'tpu'"):
        resolve_device("tpu", "evaluate.device")


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
