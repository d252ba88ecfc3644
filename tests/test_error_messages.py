"""Errors say what happened and what to do: an error about a file names the file, one about
missing images names the dataset root, and one about a damaged cached artefact says which rule
rebuilds it, and that rule exists and writes that file."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from cirflow.errors import CirflowError

REPO = Path(__file__).resolve().parents[1]


def rule_block(rule: str) -> str:
    """The text of `rule NAME:` (or `use rule … as NAME`) in rules/*.smk, up to the next rule."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    start = re.search(rf"^(rule {rule}:|use rule \w+ as {rule} with:)", text, re.M)
    assert start, f"no rule {rule} in rules/*.smk"
    end = re.search(r"^(rule |use rule )", text[start.end() :], re.M)
    return text[start.start() : start.end() + (end.start() if end else len(text))]


# ------------------------------------------------------------------------ box statistics
def test_box_stats_of_an_empty_box_file_name_the_file(tmp_path):
    from cirflow.boxes.stats import stats_for_file

    boxes = tmp_path / "val.json"
    boxes.write_text("{}")
    gt = tmp_path / "boxes_gt.json"
    gt.write_text(json.dumps({f"dev-{i}": [[0.1, 0.1, 0.5, 0.5]] for i in range(150)}))
    with pytest.raises(CirflowError) as info:
        stats_for_file(boxes, None, gt)
    message = str(info.value)
    assert message.startswith(f"{boxes} is empty")
    assert f"the 150 images of {gt}" in message and "Was detection run" in message


def test_box_quality_of_another_datasets_boxes_names_both_files(tmp_path):
    from cirflow.boxes.quality import quality_for_files

    pred, gt = tmp_path / "val.json", tmp_path / "boxes_gt.json"
    pred.write_text(json.dumps({"train-1-0-img0": []}))
    gt.write_text(json.dumps({"dev-1-0-img0": [[0.1, 0.1, 0.5, 0.5]]}))
    with pytest.raises(CirflowError, match=f"none of the 1 images of {pred} .* is in {gt}"):
        quality_for_files(pred, gt)


# -------------------------------------------------------------------------- missing images
def test_a_split_whose_every_triplet_needs_a_missing_image_names_the_root(tiny_demo):
    from cirflow.data.cirr import CirrDataset
    from cirflow.data.tables import TripletData

    dataset = CirrDataset(tiny_demo, "val")

    class NothingReadable:
        unreadable = {n: "file not found" for n in dataset.images}
        index = {n: i for i, n in enumerate(dataset.images)}

        def is_readable(self, name):
            return False

    with pytest.raises(CirflowError) as info:
        TripletData(dataset, NothingReadable(), tokenizer=None, max_txt_len=24)
    assert f"unreadable images under the dataset root {tiny_demo}" in str(info.value)


def test_the_box_report_says_under_which_root_it_looked(tmp_path):
    from cirflow.report.boxes.dataset import open_dataset

    view = open_dataset(tmp_path, None, ["some-image"])
    assert view.status == "missing" and f"cannot be located under {tmp_path}" in view.message


# ------------------------------------------------------------------- cached feature shards
def write_shard(path: Path, names: list[str], rows: int | None = None) -> Path:
    """A shard of `names` as rule image_features writes it (`rows`: fewer rows than names)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.zeros((rows or len(names), 2, 3), dtype=np.float16))
    index = {
        "names": names,
        "sizes": {n: [10, 10] for n in names},
        "unreadable": [],
        "tokens": 2,
        "dim": 3,
        "fingerprint": "f",
    }
    path.with_name(path.name.removesuffix(".npy") + ".index.json").write_text(json.dumps(index))
    return path


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


REBUILD_SHARD = "and rerun snakemake: rule image_features rebuilds them"


def test_a_truncated_feature_shard_says_which_rule_rebuilds_it(tmp_path):
    from cirflow.data.feature_store import FeatureStore

    shard = write_shard(tmp_path / "val/shard-0-of-1.npy", ["a", "b", "c"])
    truncate(shard)
    with pytest.raises(CirflowError) as info:
        FeatureStore([shard])
    message = str(info.value)
    assert message.startswith(f"cannot read image features {shard} (truncated or damaged")
    assert f"delete {shard} and {shard.with_suffix('')}.index.json {REBUILD_SHARD}" in message


@pytest.mark.parametrize("damage", ["empty", "not json", "no names", "fewer rows"])
def test_a_damaged_feature_index_says_which_rule_rebuilds_it(damage, tmp_path):
    from cirflow.data.feature_store import FeatureStore

    shard = write_shard(
        tmp_path / "val/shard-0-of-1.npy", ["a", "b"], 1 if damage == "fewer rows" else None
    )
    index = shard.with_suffix("").with_suffix(".index.json")
    if damage == "empty":
        index.write_text("")
    elif damage == "not json":
        truncate(index)
    elif damage == "no names":
        index.write_text(json.dumps({"sizes": {}}))
    with pytest.raises(CirflowError) as info:
        FeatureStore([shard])
    assert str(index if damage != "fewer rows" else shard) in str(info.value)
    assert REBUILD_SHARD in str(info.value)


# ------------------------------------------------------------------------------ weight files
@pytest.mark.parametrize(
    ("where", "advice"),
    [
        ("results/demo/models/stage1/best.pt", "rule train rebuilds it"),
        ("results/demo/ablation/runs/aux_yolo/seed1/best.pt", "rule ablation_train rebuilds it"),
        ("downloads/sprc_cirr.pt", "replace it with a complete copy"),
    ],
)
def test_a_truncated_checkpoint_says_what_rebuilds_it(where, advice, tmp_path):
    from cirflow.model.checkpoints import read_checkpoint, save_atomic

    path = tmp_path / where
    save_atomic({"state_dict": {"w": torch.zeros(100)}}, path)
    truncate(path)
    with pytest.raises(CirflowError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"cannot load checkpoint {path} (truncated or damaged")
    assert advice in message
    if "rule" in advice:
        assert f"delete {path} and rerun snakemake: {advice}" in message


def test_a_truncated_demo_backbone_says_rule_pretrain_backbone_rebuilds_it(tmp_path):
    from cirflow.model.checkpoints import write_first_stage
    from cirflow.model.factory import load_weight_file
    from cirflow.model.presets import DEMO_BACKBONE

    path = tmp_path / DEMO_BACKBONE
    write_first_stage(path, {"visual_encoder.w": torch.zeros(100)})
    truncate(path)
    with pytest.raises(CirflowError) as info:
        load_weight_file(str(path))
    assert f"cannot load {path} (truncated or damaged" in str(info.value)
    assert f"delete {path} and rerun snakemake: rule pretrain_backbone rebuilds it" in str(
        info.value
    )
    path.unlink()
    with pytest.raises(CirflowError, match=f"^weight file not found: {path}$"):
        load_weight_file(str(path))


# ------------------------------------------------------------------------------ box shards
def test_a_damaged_box_shard_says_rule_detect_shard_rebuilds_it(tmp_path):
    from cirflow.boxes.shards import merge_shards

    shard = tmp_path / "boxes/saliency/val/shard-0-of-1.json"
    shard.parent.mkdir(parents=True)
    shard.write_text('{"format": ')
    with pytest.raises(CirflowError) as info:
        merge_shards([shard], tmp_path / "val.json", tmp_path / "val.meta.json")
    assert f"box shard file is not valid JSON: {shard}" in str(info.value)
    assert f"delete {shard} and rerun snakemake: rule detect_shard rebuilds it" in str(info.value)


def test_mixed_box_shards_are_named_by_their_files(tmp_path):
    from cirflow.boxes.shards import SHARD_FORMAT, merge_shards

    paths = []
    for k, split in enumerate(("val", "train")):
        path = tmp_path / f"{split}/shard-{k}-of-2.json"
        path.parent.mkdir()
        shard = {"format": SHARD_FORMAT, "split": split, "method": "saliency", "shard": k}
        path.write_text(json.dumps({**shard, "boxes": {}, "meta": {}, "errors": []}))
        paths.append(path)
    with pytest.raises(CirflowError, match=f"^{paths[1]} is a shard of saliency/train"):
        merge_shards(paths, tmp_path / "val.json", tmp_path / "val.meta.json")


# -------------------------------------------------------------------------- stage metrics
def test_a_stage_metrics_file_without_a_metric_is_named(tmp_path):
    from cirflow.evaluate.comparison import compare_stages
    from cirflow.evaluate.recall import METRIC_KEYS

    full = {k: 1.0 for k in METRIC_KEYS}
    stage1, stage2 = tmp_path / "stage1.json", tmp_path / "stage2.json"
    stage1.write_text(json.dumps(full))
    stage2.write_text(json.dumps({k: v for k, v in full.items() if k != "recall_at1"}))
    with pytest.raises(CirflowError) as info:
        compare_stages(stage1, stage2, tmp_path / "comparison.csv")
    assert str(info.value).startswith(f"{stage2}: stage-2 metrics without recall_at1")
    assert "rule evaluate rebuilds it" in str(info.value)


# ---------------------------------------------------- the advice names rules that do that
@pytest.mark.parametrize(
    ("rule", "outputs"),
    [
        (
            "image_features",
            [
                'array="results/{ds}/features/{split}/shard-{shard}-of-{n}.npy"',
                'index="results/{ds}/features/{split}/shard-{shard}-of-{n}.index.json"',
            ],
        ),
        ("detect_shard", ['"results/{ds}/boxes/{method}/{split}/shard-{shard}-of-{n}.json"']),
        ("train", ['best="results/{ds}/models/{stage}/best.pt"']),
        ("ablation_train", ['best="results/{ds}/ablation/runs/{run}/seed{seed}/best.pt"']),
        # results/<demo>/backbone/backbone.pth (rules/common.smk: first_stage_file)
        ("pretrain_backbone", ["backbone=DEMO_FIRST_STAGE"]),
        # metrics: {folder}/val_metrics.json (rules/common.smk: evaluation_outputs)
        ("evaluate", ['**evaluation_outputs("results/{ds}/eval/{stage}")']),
    ],
)
def test_the_rules_named_in_the_advice_write_those_files(rule, outputs):
    """A deleted output is rebuilt by Snakemake's next run: the job whose output is missing
    reruns. So the advice holds where the named rule declares the file as an output."""
    output = rule_block(rule).split("output:")[1].split("log:")[0]
    for declared in outputs:
        assert declared in output, (rule, declared)


def test_the_output_helpers_the_rules_use_declare_those_files():
    common = (REPO / "rules" / "common.smk").read_text()
    assert '"metrics": f"{folder}/val_metrics.json"' in common
    assert 'return f"results/{name}/backbone/backbone.pth"' in common


def test_the_weight_files_the_workflow_writes_are_recognised():
    from cirflow.model.checkpoints import rebuild_advice
    from cirflow.model.presets import DEMO_BACKBONE

    for path, rule in (
        ("results/cirr/models/stage2_control/best.pt", "train"),
        ("/scratch/run/results/demo/ablation/runs/none/seed3/best.pt", "ablation_train"),
        (DEMO_BACKBONE, "pretrain_backbone"),
        ("results/demo_fashioniq/backbone/backbone.pth", "pretrain_backbone"),
    ):
        assert rebuild_advice(path).endswith(f"rule {rule} rebuilds it"), path
    # last.pt and resume/best.pt are no rule's outputs: training itself deals with them.
    for path in ("results/cirr/models/stage1/last.pt", "results/cirr/models/stage1/resume/best.pt"):
        assert "rule" not in rebuild_advice(path)
