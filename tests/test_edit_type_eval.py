"""Evaluation per edit type on the demo: val_metrics.json's extra table, the METRIC_KEYS left as
they are, `cirflow summary`, and rule evaluate's sidecar input. No model: the ranks are fixed."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import make_workflow_copy, run_snakemake

from cirflow.data import demo
from cirflow.data.cirr import EDIT_TYPES, edits_file
from cirflow.evaluate.comparison import compare_stages
from cirflow.evaluate.evaluator import SplitEvaluator
from cirflow.evaluate.recall import METRIC_KEYS, metrics_from_ranks
from cirflow.evaluate.run import LoadedModel, ScoreFiles, score_split
from cirflow.evaluate.settings import EvalSettings
from cirflow.summary import summarise

SETTINGS = EvalSettings(device="cpu", image_cache="none", num_workers=0, progress=False)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("edit_eval") / "dataset"
    spec = demo.DemoSpec(seed=0, train_triplets=4, val_triplets=24, test1_triplets=4)
    demo.generate_demo(root, spec, progress=False)
    return root


@pytest.fixture(scope="module")
def model():
    from transformers import BertTokenizer

    from cirflow.model.presets import TINY_VOCAB_FILE

    preset = SimpleNamespace(name="tiny", image_size=32, max_txt_len=32)
    tokenizer = BertTokenizer(vocab_file=str(TINY_VOCAB_FILE))
    return SimpleNamespace(preset=preset, tokenizer=tokenizer, region_mode="none")


def _fixed_ranks(self, model, top_k=0):
    """Query i's target at rank i mod 7 of the gallery and i mod 4 of its subset; top lists
    (when asked for): gallery positions i, i + 1, … (mod the gallery)."""
    n = len(self.data.triplets)
    top = None
    if top_k:
        top = (torch.arange(n)[:, None] + torch.arange(top_k)[None, :]) % len(self.gallery_names)
    return torch.arange(n) % 7, torch.arange(n) % 4, top


@pytest.fixture
def fixed_ranks(monkeypatch):
    monkeypatch.setattr(SplitEvaluator, "ranks", _fixed_ranks)


def _by_hand(triplets, sidecar):
    """R@1, R@5, Rs@1 and the count of each edit type, from _fixed_ranks, in plain Python."""
    out = {}
    for i, t in enumerate(triplets):
        row = out.setdefault(sidecar[str(t["pairid"])], {"r1": 0, "r5": 0, "s1": 0, "n": 0})
        row["r1"] += i % 7 < 1
        row["r5"] += i % 7 < 5
        row["s1"] += i % 4 < 1
        row["n"] += 1
    return {
        e: {
            "recall_at1": 100 * r["r1"] / r["n"],
            "recall_at5": 100 * r["r5"] / r["n"],
            "group_recall_at1": 100 * r["s1"] / r["n"],
            "queries": r["n"],
        }
        for e, r in out.items()
    }


def _copy(root: Path, dest: Path) -> Path:
    shutil.copytree(root, dest)
    return dest


def _evaluate(root, model, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = LoadedModel(model, Path("best.pt"), 1, torch.device("cpu"))
    files = ScoreFiles(out_dir / "val_metrics.json", out_dir / "val_details.json")
    returned = score_split(loaded, root, SETTINGS, files)
    return returned, json.loads((out_dir / "val_metrics.json").read_text())


def test_val_metrics_gain_a_per_edit_type_table(demo_root, model, fixed_ranks, tmp_path):
    # Sidecar keys in reverse order: the types must be matched to the queries by pairid.
    demo_root = _copy(demo_root, tmp_path / "dataset")
    sidecar = json.loads(edits_file(demo_root, "val").read_text())
    edits_file(demo_root, "val").write_text(json.dumps(dict(reversed(sidecar.items()))))
    returned, written = _evaluate(demo_root, model, tmp_path / "stage1")
    triplets = json.loads((demo_root / "cirr/captions/cap.rc2.val.json").read_text())
    n = len(triplets)
    overall = metrics_from_ranks(torch.arange(n) % 7, torch.arange(n) % 4)
    # The METRIC_KEYS numbers, as before, then one extra key.
    assert list(written) == [*METRIC_KEYS, "per_edit_type"]
    assert returned == overall == {k: written[k] for k in METRIC_KEYS}
    table = written["per_edit_type"]
    by_hand = _by_hand(triplets, sidecar)
    assert set(table) == set(by_hand)
    for edit, row in table.items():
        assert row == pytest.approx(by_hand[edit]), edit
    assert list(table) == [e for e in EDIT_TYPES if e in table]
    assert sum(row["queries"] for row in table.values()) == n
    details = json.loads((tmp_path / "stage1/val_details.json").read_text())
    assert details["edit_types"] == str(edits_file(demo_root, "val"))
    # Training validates with SplitEvaluator.metrics: exactly the CSV's columns.
    ev = SplitEvaluator(demo_root, "val", model, SETTINGS, torch.device("cpu"))
    assert list(ev.metrics(model)) == list(METRIC_KEYS)
    # The stage comparison reads the METRIC_KEYS only.
    _evaluate(demo_root, model, tmp_path / "stage2")
    rows = compare_stages(
        tmp_path / "stage1/val_metrics.json",
        tmp_path / "stage2/val_metrics.json",
        tmp_path / "comparison.csv",
    )
    assert [r["metric"] for r in rows] == list(METRIC_KEYS)
    assert len((tmp_path / "comparison.csv").read_text().splitlines()) == 1 + len(METRIC_KEYS)


def test_summary_shows_the_table_per_stage(demo_root, model, fixed_ranks, tmp_path):
    results = tmp_path / "results"
    for stage in ("stage1", "stage2"):
        _evaluate(demo_root, model, results / "eval" / stage)
    text = summarise(results)
    written = json.loads((results / "eval/stage1/val_metrics.json").read_text())
    for stage in ("stage1", "stage2"):
        block = text.split(f"Per edit type ({stage}")[1].split("\n\n")[0].splitlines()
        assert block[1].split() == ["edit", "type", "R@1", "R@5", "Rs@1", "queries"]
        rows = {line.split()[0]: line.split()[1:] for line in block[2:]}
        for edit, m in written["per_edit_type"].items():
            expected = [f"{m[k]:.2f}" for k in ("recall_at1", "recall_at5", "group_recall_at1")]
            assert rows[edit] == [*expected, str(m["queries"])]
        assert rows["all"][:3] == [
            f"{written[k]:.2f}" for k in ("recall_at1", "recall_at5", "group_recall_at1")
        ]
        assert rows["chance"][2] == "20.00"  # Rs@1: one of five members
    # The one-line overall figures are unchanged: numbers only, no table inside.
    line = next(x for x in text.splitlines() if x.startswith("Validation (stage1)"))
    assert "per_edit_type" not in line and "group_recall_at1" in line


def test_no_sidecar_no_table(demo_root, model, fixed_ranks, tmp_path):
    root = _copy(demo_root, tmp_path / "copy")
    edits_file(root, "val").unlink()
    _, written = _evaluate(root, model, tmp_path / "results/eval/stage1")
    assert list(written) == list(METRIC_KEYS)
    assert "Per edit type" not in summarise(tmp_path / "results")


def _evaluate_inputs(workdir, ds="demo"):
    """The `input:` line of the stage-1 evaluate job in a dry run."""
    proc = run_snakemake(workdir, "-n", f"results/{ds}/eval/stage1/val_metrics.json")
    out = proc.stdout + proc.stderr
    job = out.split("rule evaluate:", 1)[1].split("\n\n", 1)[0]
    return next(line for line in job.splitlines() if line.strip().startswith("input:"))


def test_rule_evaluate_lists_the_val_sidecar_and_demo_dataset_writes_it(tmp_path):
    wd = make_workflow_copy(tmp_path / "wf")
    assert "results/demo/dataset/cirr/captions/edits.rc2.val.json" in _evaluate_inputs(wd)
    proc = run_snakemake(wd, "-n", "results/demo/dataset/descriptions.json")
    assert "rule demo_dataset:" in proc.stdout + proc.stderr
    for split in ("train", "val", "test1"):
        proc = run_snakemake(wd, "-n", f"results/demo/dataset/cirr/captions/edits.rc2.{split}.json")
        assert "rule demo_dataset:" in proc.stdout + proc.stderr


def test_rule_evaluate_on_cirr_lists_a_sidecar_only_where_there_is_one(tmp_path, mini_cirr):
    wd = make_workflow_copy(tmp_path / "wf")
    config = yaml.safe_load((wd / "test_config.yaml").read_text())
    config["dataset"] = {"name": "cirr", "cirr_root": str(mini_cirr)}
    config["model"] = {"preset": "pretrain"}  # what CIRR runs on (a dry run loads nothing)
    (wd / "test_config.yaml").write_text(yaml.safe_dump(config))
    sidecar = edits_file(mini_cirr, "val")
    assert "edits.rc2.val.json" not in _evaluate_inputs(wd, "cirr")
    sidecar.write_text(json.dumps({}))
    assert str(sidecar) in _evaluate_inputs(wd, "cirr")


def test_evaluate_writes_the_rankings_from_the_same_ranks(demo_root, model, fixed_ranks, tmp_path):
    """val_rankings.json: each query's 1-based ranks, top list, caption and edit type, from
    the ranks the recalls came from; val_metrics.json and val_details.json as without it."""
    from cirflow.evaluate.rankings import RANK_LIMIT, TOP_K

    loaded = LoadedModel(model, Path("best.pt"), 1, torch.device("cpu"))
    plain, with_rankings = tmp_path / "plain", tmp_path / "with"
    for out in (plain, with_rankings):
        out.mkdir()
        rankings = out / "val_rankings.json" if out == with_rankings else None
        files = ScoreFiles(out / "val_metrics.json", out / "val_details.json", rankings)
        score_split(loaded, demo_root, SETTINGS, files)
    assert (plain / "val_metrics.json").read_bytes() == (
        with_rankings / "val_metrics.json"
    ).read_bytes()
    details = [json.loads((d / "val_details.json").read_text()) for d in (plain, with_rankings)]
    assert [{k: v for k, v in d.items() if k != "seconds"} for d in details][0] == {
        k: v for k, v in details[1].items() if k != "seconds"
    }
    assert not (plain / "val_rankings.json").exists()

    doc = json.loads((with_rankings / "val_rankings.json").read_text())
    triplets = json.loads((demo_root / "cirr/captions/cap.rc2.val.json").read_text())
    sidecar = json.loads(edits_file(demo_root, "val").read_text())
    gallery = list(json.loads((demo_root / "cirr/image_splits/split.rc2.val.json").read_text()))
    assert (doc["split"], doc["top_k"], doc["rank_limit"]) == ("val", TOP_K, RANK_LIMIT)
    assert doc["gallery"] == len(gallery) and len(doc["queries"]) == len(triplets)
    for i, (q, t) in enumerate(zip(doc["queries"], triplets, strict=True)):
        assert (q["pairid"], q["reference"], q["target"]) == (
            t["pairid"],
            t["reference"],
            t["target_hard"],
        )
        assert q["caption"] == t["caption"] and q["edit_type"] == sidecar[str(t["pairid"])]
        assert (q["rank"], q["subset_rank"]) == (i % 7 + 1, i % 4 + 1)
        assert q["top"] == [gallery[(i + j) % len(gallery)] for j in range(TOP_K)]
