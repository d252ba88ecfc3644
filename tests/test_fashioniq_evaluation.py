"""FashionIQ val through the evaluator (cirflow/evaluate/fashioniq_evaluator.py) on a hand-made
layout, with scores set by hand: each category ranked against its own val image split, the
reference kept in it, and the numbers, files and stage table the workflow writes."""

import json
from pathlib import Path

import pytest
import torch
from conftest import write_mini_fashioniq

from cirflow.data.datasets import DatasetRoot
from cirflow.data.result_files import FASHIONIQ_METRICS
from cirflow.errors import CirflowError
from cirflow.evaluate.comparison import compare_stages
from cirflow.evaluate.evaluators import split_evaluator
from cirflow.evaluate.fashioniq_evaluator import FashionIQEvaluator
from cirflow.evaluate.fashioniq_recall import metric_keys
from cirflow.evaluate.run import LoadedModel, ScoreFiles, score_split
from cirflow.evaluate.settings import EvalSettings
from cirflow.model.config import ModelConfig
from cirflow.model.factory import build_model

N = 64  # images per category and split: R@10 and R@50 tell ranks apart
SETTINGS = EvalSettings(device="cpu", batch_size=64, num_workers=0, progress=False)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fiq")
    write_mini_fashioniq(root, n_images=N)
    return DatasetRoot("fashioniq", root)


@pytest.fixture(scope="module")
def model():
    return build_model(ModelConfig("tiny_scratch")).eval()


def designed_scores(ev: FashionIQEvaluator) -> torch.Tensor:
    """Scores (queries, union gallery) with known per-category outcomes:

    dress  — the reference scores highest, then 9 dress images, then the target: rank 10 with
             the reference kept (R@10 0), 9 were it removed;
    shirt  — 10 toptee images (in no shirt gallery) score above the target, every shirt image
             below it: rank 0 in its own gallery (R@10 100), 10 in the union;
    toptee — even queries: the target first; odd ones: 20 toptee images ahead (R@10 50).
    """
    names, index = ev.gallery_names, ev.gallery_index
    scores = torch.zeros(len(ev.data), len(names))
    toptee = [index[f"toptee-val-{i}"] for i in range(N)]
    for q, t in enumerate(ev.data.triplets):
        target, reference = index[t["target_hard"]], index[t["reference"]]
        others = [j for j in ev.galleries[t["category"]] if j not in (target, reference)]
        scores[q, target] = 0.5
        if t["category"] == "dress":
            scores[q, reference] = 1.0
            scores[q, others[:9]] = 0.9
        elif t["category"] == "shirt":
            scores[q, [j for j in toptee if j != target][:10]] = 0.9
        elif q % 2:
            scores[q, others[:20]] = 0.9
    return scores


@pytest.fixture()
def scored(monkeypatch):
    """FashionIQEvaluator.features giving the designed scores: the gallery one-hot, each
    query's feature its row of scores (s(i, j) = <q_i, g_j>)."""

    def features(self, model):
        scores = designed_scores(self)
        return scores, torch.eye(scores.shape[1]), None

    monkeypatch.setattr(FashionIQEvaluator, "features", features)


def test_each_category_is_ranked_in_its_own_gallery_with_the_reference_kept(root, model, scored):
    ev = split_evaluator(root, "val", model, SETTINGS)
    assert isinstance(ev, FashionIQEvaluator)
    assert {c: len(g) for c, g in ev.galleries.items()} == {
        "dress": N,
        "shirt": N + 1,
        "toptee": N + 1,
    }
    metrics = ev.metrics(model)
    assert list(metrics) == list(metric_keys())
    assert metrics == pytest.approx(
        {
            "dress_recall_at10": 0.0,
            "dress_recall_at50": 100.0,
            "shirt_recall_at10": 100.0,
            "shirt_recall_at50": 100.0,
            "toptee_recall_at10": 50.0,
            "toptee_recall_at50": 100.0,
            "average_recall_at10": 50.0,
            "average_recall_at50": 100.0,
            "average_recall": 75.0,
        }
    )
    assert ev.chance()["dress_recall_at10"] == pytest.approx(100 * 10 / N)
    assert ev.selection_metric == "average_recall"


def test_score_split_writes_metrics_per_category_details_and_rankings(
    root, model, scored, tmp_path
):
    loaded = LoadedModel(model, Path("best.pt"), 3, torch.device("cpu"))
    out = ScoreFiles(tmp_path / "m.json", tmp_path / "d.json", tmp_path / "r.json")
    metrics = score_split(loaded, root, SETTINGS, out)
    assert json.loads(out.metrics.read_text()) == pytest.approx(metrics)
    details = json.loads(out.details.read_text())
    assert details["categories"]["shirt"] == {
        "queries": N,
        "gallery": N + 1,
        "chance": {
            "recall_at10": pytest.approx(1000 / (N + 1)),
            "recall_at50": pytest.approx(5000 / (N + 1)),
        },
    }
    assert details["queries"] == 3 * N and details["gallery"] == 3 * N + 1
    rankings = json.loads(out.rankings.read_text())["queries"]
    dress = next(q for q in rankings if q["category"] == "dress")
    # The reference is kept: it leads the top list, and the target is 11th.
    assert dress["top"][0] == dress["reference"] and dress["rank"] == 11
    assert dress["subset_rank"] is None
    shirt = next(q for q in rankings if q["category"] == "shirt")
    assert shirt["rank"] == 1 and shirt["top"][0] == shirt["target"]
    assert all(name.startswith(("shirt", "shared")) for name in shirt["top"])


def test_the_stage_table_has_fashioniq_rows(root, model, scored, tmp_path):
    loaded = LoadedModel(model, Path("best.pt"), 3, torch.device("cpu"))
    score_split(loaded, root, SETTINGS, ScoreFiles(tmp_path / "s1.json"))
    rows = compare_stages(
        tmp_path / "s1.json", tmp_path / "s1.json", tmp_path / "c.csv", keys=FASHIONIQ_METRICS.keys
    )
    assert [r["metric"] for r in rows] == list(metric_keys())
    assert (tmp_path / "c.csv").read_text().splitlines()[-1].startswith("average_recall,75.00")
    with pytest.raises(CirflowError, match="without group_recall_at1"):
        compare_stages(tmp_path / "s1.json", tmp_path / "s1.json", tmp_path / "x.csv")


def test_only_val_is_scored_and_there_are_no_submission_files(root, model):
    with pytest.raises(CirflowError, match="only val has targets .* no test server"):
        split_evaluator(root, "test", model, SETTINGS)


def test_the_ablation_summary_leads_with_fashioniq_metrics(tmp_path):
    from cirflow.evaluate.ablation import write_summary

    entries = []
    for seed, (base, tok) in enumerate([(40.0, 42.0), (50.0, 51.0)]):
        for mode, source, value in (("none", None, base), ("token_loss", "gt", tok)):
            metrics = {k: 1.0 for k in metric_keys()} | {"average_recall": value}
            path = tmp_path / f"{mode}{seed}.json"
            path.write_text(json.dumps(metrics))
            entries.append({"mode": mode, "source": source, "seed": seed, "metrics": str(path)})
    files = [tmp_path / f"summary.{ext}" for ext in ("csv", "md", "png")]
    rows = write_summary(entries, *files, metrics=FASHIONIQ_METRICS)
    assert {r["metric"] for r in rows} == set(metric_keys())
    tok = next(r for r in rows if r["mode"] == "token_loss" and r["metric"] == "average_recall")
    assert tok["delta_vs_none"] == pytest.approx(1.5)
    md = files[1].read_text()
    assert "FashionIQ val" in md and "by avg recall" in md and "| dress R@10 |" in md
    # CIRR's metrics are not in FashionIQ's files: the CIRR set names what is missing.
    with pytest.raises(CirflowError, match="group_recall_at1"):
        write_summary(entries, *files)
