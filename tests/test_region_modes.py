"""Stage 2's region modes in training (docs/design.md §6, §11): a stage-1 checkpoint starts every
mode, aux's region_proj has its own learning rate, the control differs from stage 2 only in the
region setting (params, settings, hparams.json, batches), the loop keeps the loss masks active,
the stage table and the ablation's summary."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_settings

from cirflow.errors import CirflowError
from cirflow.train.config import STAGE_RUNTIME_KEYS, RunFiles, settings_from_config
from cirflow.train.runs import (
    CONTROL,
    REGION_ONLY_KEYS,
    REGION_SETTINGS,
    AblationRun,
    ablation_params,
    semantic_params,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from cirflow.data.demo import DemoSpec, generate_demo
    from cirflow.data.gt_boxes import split_ground_truth

    root = tmp_path_factory.mktemp("modes") / "dataset"
    spec = DemoSpec(seed=0, train_triplets=32, val_triplets=16, test1_triplets=8)
    generate_demo(root, spec, workers=1, progress=False)
    split_ground_truth(root, root / "boxes_gt.json", root.parent / "gt")
    return root


def _settings(root, out, **kw):
    return tiny_settings(root, out, **{**dict(threads=2, negatives="batch_images"), **kw})


def _region(root, mode, **kw):
    gt = root.parent / "gt"
    boxes = {} if mode == "none" else {"box_file": str(gt / "train.json")}
    if mode == "tokens":
        boxes["val_box_file"] = str(gt / "val.json")
    return dict(region_mode=mode, **boxes, **kw)


@pytest.fixture(scope="module")
def stage1(demo_root, tmp_path_factory):
    from cirflow.train.loop import train

    out = tmp_path_factory.mktemp("stage1")
    train(_settings(demo_root, out, negatives="targets"))
    return out / "best.pt"


# ------------------------------------------------------------------------ checkpoints, groups
def test_a_tokens_checkpoint_evaluates_with_region_tokens(demo_root, stage1, tmp_path):
    from cirflow.model.factory import load_model
    from cirflow.train.loop import train

    train(
        _settings(
            demo_root,
            tmp_path,
            init_checkpoint=str(stage1),
            **_region(demo_root, "tokens", max_region_tokens=2),
        )
    )
    model, obj = load_model(tmp_path / "best.pt")
    assert obj["model"]["region_mode"] == model.region_mode == "tokens"
    assert model.max_region_tokens == 2 and not hasattr(model, "region_proj")
    hp = json.loads((tmp_path / "hparams.json").read_text())
    assert hp["region_mode"] == "tokens" and hp["val_box_counts"]["targets_with_boxes"] > 0
    assert hp["box_counts"]["beyond_max_boxes"] > 0  # the cap did cut (GT has up to 4 objects)


def test_aux_gives_region_proj_its_own_learning_rate(demo_root, stage1, tmp_path):
    from cirflow.train.loop import Trainer

    s = _settings(
        demo_root,
        tmp_path,
        init_checkpoint=str(stage1),
        **_region(demo_root, "aux", region_lr_multiplier=10.0),
    )
    trainer = Trainer(s)
    trainer.build()
    groups = trainer.optimizer.param_groups
    assert len(groups) == 2
    region = {id(p) for p in trainer.model.region_proj.parameters()}
    assert {id(p) for p in groups[1]["params"]} == region
    assert not region & {id(p) for p in groups[0]["params"]}
    assert [g["max_lr"] for g in groups] == pytest.approx([1e-3, 1e-2])
    for _ in range(3):
        lr = trainer.scheduler.get_last_lr()
        assert lr[1] == pytest.approx(10 * lr[0])
        trainer.optimizer.step()
        trainer.scheduler.step()


# --------------------------------------------------------------------- control vs stage 2
def test_the_control_differs_from_stage2_only_in_the_region_setting(tmp_path):
    """Through the functions the rules call: params, then settings (what hparams.json holds)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    train_cfg = config["train"]
    stage2 = semantic_params(train_cfg, "stage2")
    control = semantic_params(train_cfg, CONTROL)
    assert control["seed"] == stage2["seed"] and control["amp"] == stage2["amp"]
    expect = {k: v for k, v in stage2["stage2"].items() if k not in (*REGION_ONLY_KEYS, "region")}
    assert control["stage2"] == {**expect, "region": {"mode": "none"}}
    assert stage2["stage2"]["region"]["mode"] == "tokens"  # the demo's stage 2
    init = "results/demo/models/stage1/best.pt"
    common = dict(model_cfg=config["model"], runtime_cfg=train_cfg)
    files2 = RunFiles(
        str(tmp_path), str(tmp_path / "stage2"), None, init, "b/train.json", None, "b/val.json"
    )
    s2 = settings_from_config(files2, train_params=stage2, **common)
    filesc = RunFiles(str(tmp_path), str(tmp_path / "control"), None, init)
    sc = settings_from_config(filesc, train_params=control, **common)
    a, b = s2.to_dict(), sc.to_dict()
    differ = {k for k in a if a[k] != b[k]}
    assert differ - {"out"} <= set(REGION_SETTINGS)
    assert {"region_mode", "box_file", "val_box_file"} <= differ
    assert sc.region_mode == "none" and not sc.uses_boxes and sc.box_file is None
    assert sc.stage == s2.stage == "stage2"


def test_ablation_runs_are_stage2_with_their_mode_seed_and_epochs():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    train_cfg = config["train"]
    ablation = {**config["ablation"], "num_epochs": 2}
    for mode in ("none", "aux", "token_loss", "tokens", "gated"):
        run = AblationRun(mode, None if mode == "none" else "gt")
        p = ablation_params(train_cfg, ablation, run, seed=7)
        assert p["seed"] == 7 and p["amp"] == train_cfg["amp"]
        block = p["stage2"]
        assert block["num_epochs"] == 2 and block["region"]["mode"] == mode
        # A run of its own length keeps every other key.
        longer = ablation_params(train_cfg, ablation, AblationRun(run.mode, run.source, 6), 7)
        assert longer["stage2"] == {**block, "num_epochs": 6}
        rest = {k: v for k, v in block.items() if k not in ("num_epochs", "region")}
        # Runtime keys (min_targets_with_boxes) are no params: changing them reruns no run.
        assert rest == {
            k: v
            for k, v in train_cfg["stage2"].items()
            if k not in ("num_epochs", "region", *STAGE_RUNTIME_KEYS)
            and (mode != "none" or k not in REGION_ONLY_KEYS)
        }
    with pytest.raises(CirflowError, match="region mode"):
        AblationRun("everything", "gt")


def test_control_and_tokens_see_the_same_batches_with_the_loss_masks_active(
    demo_root, stage1, tmp_path, monkeypatch
):
    """One epoch each: the loop passes target and reference ids (false negatives masked) in
    both modes, region boxes only with tokens (the references' too, batch_images), the batches
    are the same, and hparams.json differs in the region settings only."""
    from cirflow.model.sprc import SPRC
    from cirflow.train.loop import train

    calls = []
    forward = SPRC.forward

    def spy(self, batch, **kw):
        calls.append({**vars(batch), **kw})
        return forward(self, batch, **kw)

    monkeypatch.setattr(SPRC, "forward", spy)
    seen = {}
    for mode in ("none", "tokens"):
        calls.clear()
        train(
            _settings(
                demo_root, tmp_path / mode, init_checkpoint=str(stage1), **_region(demo_root, mode)
            )
        )
        assert calls
        for kw in calls:
            assert isinstance(kw["target_ids"], torch.Tensor)
            assert isinstance(kw["reference_ids"], torch.Tensor)
            assert kw["reference_negatives"] is True
            assert (kw["boxes"] is not None) == (mode == "tokens")
            assert (kw["ref_boxes"] is not None) == (mode == "tokens")
        seen[mode] = [(kw["target_ids"].tolist(), kw["reference_ids"].tolist()) for kw in calls]
    assert seen["none"] == seen["tokens"]
    a = json.loads((tmp_path / "none/hparams.json").read_text())["settings"]
    b = json.loads((tmp_path / "tokens/hparams.json").read_text())["settings"]
    assert {k for k in a if a[k] != b[k]} - {"out"} <= set(REGION_SETTINGS)


@pytest.mark.parametrize("mode", ["none", "aux", "tokens"])
def test_a_stage1_checkpoint_starts_every_mode_and_the_loop_passes_the_loss_ids(
    demo_root, stage1, tmp_path, monkeypatch, mode
):
    """Every mode loads stage 1's best.pt (only aux adds a head: region_proj). With negatives:
    targets the ids are optional to the model: only the loop keeps the false-negative masks on
    (one epoch of steps, no validation)."""
    from cirflow.model.sprc import SPRC
    from cirflow.train.loop import Trainer

    calls = []
    forward = SPRC.forward

    def spy(self, batch, **kw):
        calls.append({**vars(batch), **kw})
        return forward(self, batch, **kw)

    monkeypatch.setattr(SPRC, "forward", spy)
    trainer = Trainer(
        _settings(
            demo_root,
            tmp_path,
            init_checkpoint=str(stage1),
            negatives="targets",
            **_region(demo_root, mode),
        )
    )
    trainer.build()
    model = trainer.model
    assert model.region_mode == mode
    assert hasattr(model, "region_proj") == (mode == "aux")
    saved = torch.load(stage1, weights_only=True)["state_dict"]
    own = model.state_dict()
    head = {"region_proj.weight", "region_proj.bias"} if mode == "aux" else set()
    added = head | ({"region_temp"} if mode != "none" else set())
    assert set(own) - set(saved) == added
    assert all(torch.equal(own[k], v) for k, v in saved.items())
    trainer.train_epoch(0)
    assert len(calls) == trainer.steps_per_epoch
    for kw in calls:
        assert isinstance(kw["target_ids"], torch.Tensor)
        assert isinstance(kw["reference_ids"], torch.Tensor)
        assert (kw["boxes"] is not None) == (mode != "none")
        assert kw["ref_boxes"] is None  # the references are no candidates


def test_mode_settings_errors_name_the_keys(demo_root, tmp_path):
    from cirflow.train.loop import Trainer

    bad = _settings(demo_root, tmp_path, region_mode="tokens", box_file=None)
    with pytest.raises(CirflowError, match="train box file"):
        bad.check()
    bad = _settings(demo_root, tmp_path, **{**_region(demo_root, "aux"), "region_mode": "tokens"})
    with pytest.raises(CirflowError, match="val box file"):
        bad.check()
    bad = _settings(demo_root, tmp_path, region_mode="all", box_file="x.json")
    with pytest.raises(
        CirflowError, match=r"--region-mode must be one of none, aux, token_loss, tokens, gated"
    ):
        Trainer(bad).build()  # the command line's flag
    bad = _settings(demo_root, tmp_path, region_mode="all", box_file="x.json", stage="stage2")
    with pytest.raises(CirflowError, match=r"train\.stage2\.region\.mode must be one of"):
        Trainer(bad).build()  # the workflow's config key


# ------------------------------------------------------------------- stage table, ablation
def _metrics(path, **values):
    from cirflow.evaluate.recall import METRIC_KEYS

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: values.get(k, 50.0) for k in METRIC_KEYS}))
    return path


def test_the_stage_table_shows_stage1_control_stage2_and_both_differences(tmp_path):
    from cirflow.evaluate.comparison import COMPARISON_COLUMNS, compare_stages

    s1 = _metrics(tmp_path / "s1.json", recall_at1=10.0)
    c = _metrics(tmp_path / "c.json", recall_at1=12.0)
    s2 = _metrics(tmp_path / "s2.json", recall_at1=15.5)
    compare_stages(s1, s2, tmp_path / "comparison.csv", control_json=c)
    lines = (tmp_path / "comparison.csv").read_text().splitlines()
    assert lines[0] == ",".join(COMPARISON_COLUMNS)
    assert lines[0] == "metric,stage1,stage2_control,stage2,delta_vs_control,delta_vs_stage1"
    row = next(line for line in lines if line.startswith("recall_at1,"))
    assert row == "recall_at1,10.00,12.00,15.50,+3.50,+5.50"
    # Without the control (the original scripts' two stages) its columns stay empty.
    compare_stages(s1, s2, tmp_path / "two.csv")
    lines = (tmp_path / "two.csv").read_text().splitlines()
    row = next(line for line in lines if line.startswith("recall_at1"))
    assert row == "recall_at1,10.00,,15.50,,+5.50"


def test_the_ablation_summary_pairs_the_deltas_by_seed(tmp_path):
    from cirflow.evaluate.ablation import write_summary

    # none: R@1 10, 20, 30 by seed; tokens/gt: 13, 22, 36 -> deltas 3, 2, 6.
    entries = []
    for seed, (base, tok) in enumerate([(10, 13), (20, 22), (30, 36)]):
        for mode, source, value in (("none", None, base), ("tokens", "gt", tok)):
            path = _metrics(tmp_path / f"{mode}{source}{seed}.json", recall_at1=value)
            entries.append({"mode": mode, "source": source, "seed": seed, "metrics": str(path)})
    rows = write_summary(
        entries, tmp_path / "summary.csv", tmp_path / "summary.md", tmp_path / "summary.png"
    )
    by = {(r["mode"], r["box_source"], r["metric"]): r for r in rows}
    none, tok = by[("none", "-", "recall_at1")], by[("tokens", "gt", "recall_at1")]
    assert none["mean"] == pytest.approx(20.0) and none["sd"] == pytest.approx(10.0)
    assert math.isnan(none["delta_vs_none"])
    assert tok["mean"] == pytest.approx(71 / 3)
    assert tok["delta_vs_none"] == pytest.approx(11 / 3)
    deltas = [3, 2, 6]
    sd = math.sqrt(sum((d - 11 / 3) ** 2 for d in deltas) / 2)
    assert tok["delta_vs_none_sd"] == pytest.approx(sd)
    csv_lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert csv_lines[0] == "mode,box_source,metric,seeds,mean,sd,delta_vs_none,delta_vs_none_sd"
    assert f"tokens,gt,recall_at1,3,23.67,{tok['sd']:.2f},+3.67,{sd:.2f}" in csv_lines
    md = (tmp_path / "summary.md").read_text()
    assert "| tokens / gt | 3 | +3.67 ± 2.08 |" in md and "CIRR val" in md
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A run kind with a seed the control lacks cannot be paired.
    lonely = copy.deepcopy(entries) + [
        {"mode": "aux", "source": "gt", "seed": 9, "metrics": entries[0]["metrics"]}
    ]
    with pytest.raises(CirflowError, match="seeds"):
        write_summary(lonely, tmp_path / "a.csv", tmp_path / "a.md", tmp_path / "a.png")


def test_the_ablation_pairs_by_seed_not_by_rank(tmp_path):
    """Values that do not rise with the seed in the same order in both modes, listed in another
    seed order for each: pairing after sorting each list (or by position) gives other deltas."""
    from cirflow.evaluate.ablation import read_runs, summary_rows

    none = {0: 30.0, 1: 10.0, 2: 20.0}
    tokens = {0: 31.0, 1: 25.0, 2: 18.0}  # paired deltas 1, 15, -2; sorted pairs 8, 5, 1
    entries = [
        {
            "mode": "tokens",
            "source": "gt",
            "seed": s,
            "metrics": str(_metrics(tmp_path / f"tokens{s}.json", recall_at1=tokens[s])),
        }
        for s in (2, 0, 1)
    ] + [
        {
            "mode": "none",
            "source": None,
            "seed": s,
            "metrics": str(_metrics(tmp_path / f"none{s}.json", recall_at1=none[s])),
        }
        for s in (1, 2, 0)
    ]
    rows = summary_rows(read_runs(entries))
    tok = next(r for r in rows if r["mode"] == "tokens" and r["metric"] == "recall_at1")
    deltas = [1.0, 15.0, -2.0]
    assert tok["delta_vs_none"] == pytest.approx(sum(deltas) / 3)
    mean = sum(deltas) / 3
    assert tok["delta_vs_none_sd"] == pytest.approx(
        math.sqrt(sum((d - mean) ** 2 for d in deltas) / 2)
    )
    assert tok["delta_vs_none_sd"] == pytest.approx(9.0738, abs=1e-4)  # sorted pairs: 3.51


def test_stage2_starts_from_best_pt_not_the_last_pt_beside_it(demo_root, stage1, tmp_path):
    """A stage 1 whose last epoch is not its best: its last.pt holds other weights than best.pt.
    Stage 2 (init_checkpoint=…/best.pt) starts from best.pt's, none of last.pt's."""
    import shutil

    from cirflow.train.loop import Trainer

    run = shutil.copytree(stage1.parent, tmp_path / "stage1")
    best = torch.load(run / "best.pt", weights_only=True)["state_dict"]
    last = torch.load(run / "last.pt", weights_only=True)
    last["state_dict"] = {
        k: v + 1 if v.is_floating_point() else v for k, v in last["state_dict"].items()
    }
    torch.save(last, run / "last.pt")
    trainer = Trainer(_settings(demo_root, tmp_path / "s2", init_checkpoint=str(run / "best.pt")))
    trainer.build()
    own = trainer.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in best.items())
    moved = [k for k, v in last["state_dict"].items() if v.is_floating_point() and v.numel()]
    assert moved and not any(torch.equal(own[k], last["state_dict"][k]) for k in moved)
