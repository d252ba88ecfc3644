"""The CIRR recall protocol, the ranking and the test-server format (no model needed)."""

import json

import pytest
import torch

from cirflow.data.cirr import EDIT_TYPES
from cirflow.evaluate.ranking import max_token_scores
from cirflow.evaluate.recall import (
    METRIC_KEYS,
    chance_levels,
    cirr_metrics,
    member_matrix,
    metrics_from_ranks,
    per_edit_type_metrics,
    recall_ranks,
    submission_files,
)


def _triplet(pairid, ref, target, members):
    return {
        "pairid": pairid,
        "reference": ref,
        "target_hard": target,
        "caption": "x",
        "img_set": {"id": pairid, "members": members},
    }


def test_hand_computed_example():
    # Gallery a..g (7 images). Query 0: reference a, target c, members a b c d e f.
    names = list("abcdefg")
    scores = torch.tensor(
        [
            #  a    b    c    d    e    f    g
            [
                9.0,
                0.8,
                0.7,
                0.9,
                0.1,
                0.2,
                0.3,
            ],  # ref a has the top score: removed -> c is 2nd (after d)
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],  # ref g removed; target a is last of 6 -> rank 5
            [0.5, 0.9, 0.1, 0.2, 0.3, 0.4, 0.0],  # ref c; target b first
        ]
    )
    triplets = [
        _triplet(0, "a", "c", list("abcdef")),
        _triplet(
            1, "g", "a", list("gabcde")
        ),  # subset (g removed): a b c d e; a has the lowest score
        _triplet(2, "c", "b", list("cbadef")),
    ]
    m = cirr_metrics(scores, names, triplets)
    # Full ranks (reference removed): q0 -> 1 (d ahead), q1 -> 5, q2 -> 0.
    assert m["recall_at1"] == pytest.approx(100 / 3)
    assert m["recall_at5"] == pytest.approx(200 / 3)
    assert m["recall_at10"] == pytest.approx(100.0)
    assert m["recall_at50"] == pytest.approx(100.0)
    # Subset ranks: q0 among b c d e f -> d(0.9), b(0.8) ahead -> 2; q1 among a b c d e -> 4; q2 -> 0.
    assert m["group_recall_at1"] == pytest.approx(100 / 3)
    assert m["group_recall_at2"] == pytest.approx(100 / 3)
    assert m["group_recall_at3"] == pytest.approx(200 / 3)
    assert m["mean(R@5+R_s@1)"] == pytest.approx((200 / 3 + 100 / 3) / 2)
    seven = [
        m[k]
        for k in (
            "recall_at1",
            "recall_at5",
            "recall_at10",
            "recall_at50",
            "group_recall_at1",
            "group_recall_at2",
            "group_recall_at3",
        )
    ]
    assert m["arithmetic_mean"] == pytest.approx(sum(seven) / 7)
    assert m["harmonic_mean"] == pytest.approx(7 / sum(1 / v for v in seven))
    assert list(m) == list(METRIC_KEYS)


def test_per_edit_type_metrics_by_hand():
    rank = torch.tensor([0, 3, 5, 0, 1, 0])
    subset_rank = torch.tensor([0, 1, 2, 0, 0, 3])
    types = ["move", "color", "color", "count", "color", "move"]
    table = per_edit_type_metrics(rank, subset_rank, types, EDIT_TYPES)
    assert list(table) == ["color", "move", "count"]  # EDIT_TYPES order, absent types left out
    # color = queries 1, 2, 4: ranks 3, 5, 1 (5 is not in the top 5) and subset ranks 1, 2, 0.
    assert table["color"] == pytest.approx(
        {"recall_at1": 0.0, "recall_at5": 200 / 3, "group_recall_at1": 100 / 3, "queries": 3}
    )
    # move = queries 0, 5: ranks 0, 0 and subset ranks 0, 3.
    assert table["move"] == pytest.approx(
        {"recall_at1": 100.0, "recall_at5": 100.0, "group_recall_at1": 50.0, "queries": 2}
    )
    assert table["count"] == {
        "recall_at1": 100.0,
        "recall_at5": 100.0,
        "group_recall_at1": 100.0,
        "queries": 1,
    }
    assert isinstance(table["color"]["queries"], int)
    # Types outside `order` come after it, sorted.
    assert list(per_edit_type_metrics(rank, subset_rank, types, ("move",))) == [
        "move",
        "color",
        "count",
    ]
    # One type for every query: the overall R@1 / R@5 / Rs@1.
    (only,) = per_edit_type_metrics(rank, subset_rank, ["x"] * 6).values()
    overall = metrics_from_ranks(rank, subset_rank)
    for key in ("recall_at1", "recall_at5", "group_recall_at1"):
        assert only[key] == pytest.approx(overall[key])
    with pytest.raises(ValueError, match="5 edit types for 6 ranks"):
        per_edit_type_metrics(rank, subset_rank, types[:5])


def test_per_edit_type_metrics_from_the_ranks_of_scores():
    """The hand-computed example above, split by type: full ranks 1, 5, 0, subset ranks 2, 4, 0."""
    names = list("abcdefg")
    scores = torch.tensor(
        [
            [9.0, 0.8, 0.7, 0.9, 0.1, 0.2, 0.3],
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
            [0.5, 0.9, 0.1, 0.2, 0.3, 0.4, 0.0],
        ]
    )
    triplets = [
        _triplet(0, "a", "c", list("abcdef")),
        _triplet(1, "g", "a", list("gabcde")),
        _triplet(2, "c", "b", list("cbadef")),
    ]
    index = {n: i for i, n in enumerate(names)}
    rank, subset_rank = recall_ranks(
        scores,
        torch.tensor([index[t["reference"]] for t in triplets]),
        torch.tensor([index[t["target_hard"]] for t in triplets]),
        member_matrix(triplets, index),
    )
    table = per_edit_type_metrics(rank, subset_rank, ["add", "remove", "add"], EDIT_TYPES)
    assert table == {
        "add": {"recall_at1": 50.0, "recall_at5": 100.0, "group_recall_at1": 50.0, "queries": 2},
        "remove": {"recall_at1": 0.0, "recall_at5": 0.0, "group_recall_at1": 0.0, "queries": 1},
    }


def test_reference_is_removed_even_when_it_is_the_target_column_neighbour():
    # The reference always has the best score (it is the query's own image): R@1 must ignore it.
    names = ["r", "t", "x"]
    scores = torch.tensor([[1.0, 0.5, 0.4]])
    m = cirr_metrics(scores, names, [_triplet(0, "r", "t", ["r", "t", "x"])])
    assert m["recall_at1"] == 100.0 and m["group_recall_at1"] == 100.0


def test_ties_break_by_gallery_order():
    names = ["r", "a", "t", "b"]
    scores = torch.tensor([[0.0, 0.5, 0.5, 0.5]])  # a, t, b tie: a comes first
    m = cirr_metrics(scores, names, [_triplet(0, "r", "t", ["r", "a", "t", "b"])])
    assert m["recall_at1"] == 0.0 and m["recall_at5"] == 100.0
    assert m["group_recall_at1"] == 0.0 and m["group_recall_at2"] == 100.0


def test_perfect_and_chance_levels():
    names = [f"i{k}" for k in range(10)]
    trip = [
        _triplet(k, names[k], names[(k + 1) % 10], [names[(k + j) % 10] for j in range(6)])
        for k in range(10)
    ]
    scores = torch.zeros(10, 10)
    for k in range(10):
        scores[k, (k + 1) % 10] = 1.0
    m = cirr_metrics(scores, names, trip)
    assert all(v == pytest.approx(100.0) for v in m.values())
    chance = chance_levels(2297)
    assert chance["recall_at1"] == pytest.approx(100 / 2296)
    assert chance["recall_at50"] == pytest.approx(5000 / 2296)
    assert chance["group_recall_at1"] == pytest.approx(20.0)
    assert chance["group_recall_at3"] == pytest.approx(60.0)


def test_real_val_annotation_structure(shared_cirr):
    """Random scores on the real val split: the reference never counts and subsets hold 5."""
    names = list(json.loads((shared_cirr / "split.rc2.val.json").read_text()))
    triplets = json.loads((shared_cirr / "cap.rc2.val.json").read_text())
    assert len(names) == 2297 and len(triplets) == 4181
    index = {n: i for i, n in enumerate(names)}
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(len(triplets), len(names), generator=g)
    # Make every reference the best-scoring image: if it were not removed, R@1 would be 0.
    ref = torch.tensor([index[t["reference"]] for t in triplets])
    tgt = torch.tensor([index[t["target_hard"]] for t in triplets])
    scores[torch.arange(len(triplets)), ref] = 10.0
    scores[torch.arange(len(triplets)), tgt] = 5.0  # then the target is first among the rest
    m = cirr_metrics(scores, names, triplets)
    assert m["recall_at1"] == 100.0 and m["group_recall_at1"] == 100.0
    # Target scored worst: last of the 2,296 others and last of its 5-image subset.
    scores[torch.arange(len(triplets)), tgt] = -1.0
    m = cirr_metrics(scores, names, triplets)
    assert m["recall_at50"] == 0.0 and m["group_recall_at3"] == 0.0
    # Every reference is one of its set's 6 members, so the subset without it has 5 images.
    assert all(
        t["reference"] in t["img_set"]["members"] and len(set(t["img_set"]["members"])) == 6
        for t in triplets
    )
    # Random scores: close to chance.
    m = cirr_metrics(torch.rand(len(triplets), len(names), generator=g), names, triplets)
    assert 15 < m["group_recall_at1"] < 25 and m["recall_at50"] < 4


def test_max_token_scores_matches_naive():
    g = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(37, 16, generator=g), dim=-1)
    gal = torch.nn.functional.normalize(torch.randn(150, 4, 16, generator=g), dim=-1)
    naive = torch.einsum("qd,gkd->qgk", q, gal).amax(-1)
    for gb, qb in [(64, 2048), (7, 5), (1000, 1000)]:
        assert torch.allclose(max_token_scores(q, gal, gb, qb), naive, atol=1e-6)
    assert torch.allclose(max_token_scores(q, gal[:, 0]), q @ gal[:, 0].t(), atol=1e-6)


def test_submission_format(shared_cirr):
    names = [f"test1-{k}-0-img0" for k in range(60)]
    triplets = []
    for k in range(4):
        members = [names[(k * 6 + j) % 60] for j in range(6)]
        triplets.append(
            {
                "pairid": 100 + k,
                "reference": members[0],
                "caption": "x",
                "img_set": {"id": k, "members": members},
            }
        )
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(4, 60, generator=g)
    recall, subset = submission_files(scores, names, triplets)
    example = json.loads((shared_cirr / "cirr_example_submission_recall_subset.json").read_text())
    assert (
        list(recall)[:2] == ["version", "metric"]
        and recall["version"] == example["version"] == "rc2"
    )
    assert recall["metric"] == "recall" and subset["metric"] == example["metric"] == "recall_subset"
    for t, row in zip(triplets, scores, strict=True):
        pid = str(t["pairid"])
        top = recall[pid]
        assert len(top) == 50 and t["reference"] not in top and len(set(top)) == 50
        order = sorted(
            (n for n in names if n != t["reference"]), key=lambda n: -float(row[names.index(n)])
        )
        assert top == order[:50]
        sub = subset[pid]
        assert (
            len(sub) == 3 and t["reference"] not in sub and set(sub) <= set(t["img_set"]["members"])
        )
        members = [m for m in t["img_set"]["members"] if m != t["reference"]]
        assert sub == sorted(members, key=lambda n: -float(row[names.index(n)]))[:3]
    # Same value types as the example file: pairid keys as strings, lists of names.
    some_key = next(k for k in example if k not in ("version", "metric"))
    assert isinstance(example[some_key], list) and len(example[some_key]) == 3


def test_bf16_first_pass_gives_the_exact_ranks():
    """exact_ranks (bf16 pass + fp32 band) == ranks from fp32 scores, on near-tie-heavy data."""
    from cirflow.evaluate.ranking import Gallery, QueryImages, exact_ranks
    from cirflow.evaluate.recall import recall_ranks

    g = torch.Generator().manual_seed(3)
    n, q_n, t, d = 300, 200, 4, 32
    gallery = torch.nn.functional.normalize(torch.randn(n, t, d, generator=g), dim=-1)
    # Queries close to their targets, and near-duplicate gallery images: many pairs inside the band.
    target = torch.randint(0, n, (q_n,), generator=g)
    gallery[1::2] = torch.nn.functional.normalize(
        gallery[0::2] + 0.01 * torch.randn(n // 2, t, d, generator=g), dim=-1
    )
    queries = torch.nn.functional.normalize(
        gallery[target, 0] + 0.3 * torch.randn(q_n, d, generator=g), dim=-1
    )
    reference = (target + 1 + torch.randint(0, n - 1, (q_n,), generator=g)) % n
    members = torch.stack(
        [reference, target, *(torch.randint(0, n, (q_n,), generator=g) for _ in range(4))], 1
    )
    ref_rank, ref_sub = recall_ranks(max_token_scores(queries, gallery), reference, target, members)
    images = QueryImages(reference, target, members)
    rank, sub = exact_ranks(queries, Gallery(gallery), images, approx=True)
    assert torch.equal(sub, ref_sub)
    within = ref_rank < 50
    assert torch.equal(rank[within], ref_rank[within])
    assert (rank[~within] >= 50).all()


@pytest.mark.parametrize("approx", [True, False], ids=["bf16", "fp32"])
def test_top_lists_come_from_the_same_ranking(approx):
    """ranks_and_top's lists: the exact fp32 order (ties by gallery order), reference left out,
    a target of rank r < k at position r; with the bf16 first pass as without it."""
    from cirflow.evaluate.ranking import Gallery, QueryImages, ranks_and_top
    from cirflow.evaluate.recall import recall_ranks, stable_topk

    g = torch.Generator().manual_seed(5)
    n, q_n, t, d, k = 120, 80, 4, 16, 10
    gallery = torch.nn.functional.normalize(torch.randn(n, t, d, generator=g), dim=-1)
    # Near-duplicate images (many pairs inside the bf16 band) and exact duplicates (ties).
    gallery[1::2] = torch.nn.functional.normalize(
        gallery[0::2] + 0.005 * torch.randn(n // 2, t, d, generator=g), dim=-1
    )
    gallery[3] = gallery[2]
    target = torch.randint(0, n, (q_n,), generator=g)
    queries = torch.nn.functional.normalize(
        gallery[target, 0] + 0.3 * torch.randn(q_n, d, generator=g), dim=-1
    )
    reference = (target + 1 + torch.randint(0, n - 1, (q_n,), generator=g)) % n
    members = torch.stack([reference, target, *(torch.randint(0, n, (q_n,), generator=g),)], 1)
    scores = max_token_scores(queries, gallery)
    ref_rank, _ = recall_ranks(scores, reference, target, members)
    masked = scores.clone()
    masked[torch.arange(q_n), reference] = float("-inf")
    expected = stable_topk(masked, k)

    images = QueryImages(reference, target, members)
    rank, _, top = ranks_and_top(queries, Gallery(gallery), images, k, approx=approx)
    assert top.shape == (q_n, k)
    assert not (top == reference[:, None]).any()
    assert torch.equal(top, expected)
    for i in torch.nonzero(ref_rank < k).flatten().tolist():
        assert top[i, rank[i]] == target[i]
    assert ranks_and_top(queries, Gallery(gallery), images, 0, approx=approx)[2] is None


def test_rankings_file_keeps_ranks_to_the_limit_and_one_based():
    from cirflow.evaluate.evaluator import Rankings
    from cirflow.evaluate.rankings import RANK_LIMIT, rankings_document

    triplets = [_triplet(i, f"r{i}", f"t{i}", [f"r{i}", f"t{i}"]) for i in range(4)]
    ranked = Rankings(
        torch.tensor([0, RANK_LIMIT - 1, RANK_LIMIT, 70]),
        torch.tensor([0, 1, 2, 3]),
        torch.tensor([[2, 0]] * 4),
    )
    doc = rankings_document(triplets, ["a", "b", "c"], ranked)
    assert [q["rank"] for q in doc["queries"]] == [1, RANK_LIMIT, None, None]
    assert [q["subset_rank"] for q in doc["queries"]] == [1, 2, 3, 4]
    assert doc["queries"][0]["top"] == ["c", "a"] and "edit_type" not in doc["queries"][0]


def _test1_triplet(pairid, members):
    return {
        "pairid": pairid,
        "reference": members[0],
        "caption": "x",
        "img_set": {"id": pairid, "members": members},
    }


def test_submission_content_without_the_real_files():
    """Reference never listed (it scores highest on purpose), subset ⊆ members, both lists in
    ranking order with ties by gallery order — no ../shared needed."""
    names = [f"test1-{k}-0-img{k % 2}" for k in range(70)]
    g = torch.Generator().manual_seed(1)
    triplets = [
        _test1_triplet(200 + k, [names[(7 * k + 3 * j) % 70] for j in range(6)]) for k in range(5)
    ]
    scores = torch.rand(len(triplets), len(names), generator=g)
    for i, t in enumerate(triplets):
        scores[i, names.index(t["reference"])] = 10.0  # the reference would top every list
    scores[0, 5] = scores[0, 9] = 5.0  # a tie: gallery order decides (5 before 9)
    recall, subset = submission_files(scores, names, triplets)
    assert set(recall) == {"version", "metric"} | {str(t["pairid"]) for t in triplets}
    for i, t in enumerate(triplets):
        pid, row = str(t["pairid"]), scores[i].tolist()
        ranking = sorted(
            (n for n in names if n != t["reference"]),
            key=lambda n: (-row[names.index(n)], names.index(n)),
        )
        assert recall[pid] == ranking[:50]
        others = [m for m in t["img_set"]["members"] if m != t["reference"]]
        assert t["reference"] not in subset[pid] and set(subset[pid]) <= set(others)
        assert subset[pid] == [n for n in ranking if n in others][:3]
    assert recall["200"][:2] == [names[5], names[9]]
    # A gallery smaller than 50 and a set of 3: a kept reference would show even scored last.
    small = names[:30]
    few = [_test1_triplet(300, [small[4], small[7], small[2]])]
    recall, subset = submission_files(torch.rand(1, 30, generator=g), small, few)
    assert len(recall["300"]) == 29 and small[4] not in recall["300"]
    assert sorted(subset["300"]) == sorted([small[7], small[2]])


def test_submission_keeps_every_pairid_when_images_are_unreadable():
    """The gallery holds only readable images: a query whose reference is not in it keeps its
    lists (fallback ranking), and a member missing from it comes after the ranked members."""
    names = [f"test1-{k}-0-img0" for k in range(60)]
    gallery = [n for n in names if n not in (names[0], names[8])]  # 0 and 8 cannot be read
    triplets = [
        _test1_triplet(1, [names[0], names[1], names[2], names[3], names[4], names[5]]),
        _test1_triplet(2, [names[6], names[7], names[8], names[9], names[10], names[11]]),
    ]
    scores = torch.rand(2, len(gallery), generator=torch.Generator().manual_seed(2))
    recall, subset = submission_files(scores, gallery, triplets)
    assert len(recall["1"]) == 50 and names[0] not in recall["1"] and names[8] not in recall["2"]
    assert len(subset["1"]) == 3 and set(subset["1"]) <= set(names[1:6])
    readable = [names[k] for k in (7, 9, 10, 11)]
    ranked = sorted(readable, key=lambda n: -float(scores[1, gallery.index(n)]))
    assert subset["2"][:3] == (ranked + [names[8]])[:3]
    assert names[6] not in recall["2"] and names[6] not in subset["2"]
