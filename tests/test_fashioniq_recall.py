"""The FashionIQ recall protocol on hand-made rankings (no model needed; docs/fashioniq.md)."""

import json

import pytest
import torch

from cirflow.data.fashioniq import (
    CATEGORIES,
    captions_file,
    category_triplets,
    split_file,
    val_gallery,
)
from cirflow.errors import CirflowError
from cirflow.evaluate.fashioniq_recall import (
    EXCLUDE_REFERENCE,
    SELECTION_METRIC,
    CategoryQueries,
    chance_levels,
    fashioniq_metrics,
    fashioniq_ranks,
    metric_keys,
)


def ladder(prefix, size, pairs):
    """Queries over a gallery prefix0..prefix{size-1} where every query scores image j as -j:
    the target at index t has t images ahead of it, the reference among them if it is < t."""
    gallery = [f"{prefix}{j}" for j in range(size)]
    scores = -torch.arange(size, dtype=torch.float32).repeat(len(pairs), 1)
    references = [gallery[r] for r, _ in pairs]
    targets = [gallery[t] for _, t in pairs]
    return CategoryQueries(scores, gallery, references, targets)


# (reference index, target index) per query; ranks with the reference kept / excluded by hand.
HAND_MADE = {
    "dress": ladder(
        "d",
        60,
        [
            (3, 0),  # rank 0 / 0
            (3, 10),  # rank 10 / 9: only excluding the reference brings it into the top 10
            (55, 9),  # rank 9 / 9: the reference is behind the target
            (20, 50),  # rank 50 / 49
            (1, 58),  # rank 58 / 57
        ],
    ),  # R@10 2/5 = 40 / 3/5 = 60;  R@50 3/5 = 60 / 4/5 = 80
    "shirt": ladder(
        "s",
        70,
        [(0, 1), (60, 30), (2, 69), (5, 12)],  # ranks 1, 30, 69, 12 / 0, 30, 68, 11
    ),  # R@10 1/4 = 25 / 25;  R@50 3/4 = 75 / 75
    "toptee": ladder(
        "t",
        12,
        [(0, 11), (11, 0)],  # ranks 11, 0 / 10, 0
    ),  # R@10 1/2 = 50 / 50;  R@50 100 / 100
}


def test_hand_computed_recalls_reference_kept_as_sprc():
    assert EXCLUDE_REFERENCE is False  # SPRC's FashionIQ protocol
    m = fashioniq_metrics(HAND_MADE)
    assert list(m) == list(metric_keys())
    expected = {
        "dress_recall_at10": 40.0,
        "dress_recall_at50": 60.0,
        "shirt_recall_at10": 25.0,
        "shirt_recall_at50": 75.0,
        "toptee_recall_at10": 50.0,
        "toptee_recall_at50": 100.0,
        "average_recall_at10": (40 + 25 + 50) / 3,
        "average_recall_at50": (60 + 75 + 100) / 3,
        "average_recall": ((40 + 25 + 50) / 3 + (60 + 75 + 100) / 3) / 2,
    }
    assert m == pytest.approx(expected)
    assert SELECTION_METRIC == "average_recall"


def test_hand_computed_recalls_reference_excluded():
    m = fashioniq_metrics(HAND_MADE, exclude_reference=True)
    assert m == pytest.approx(
        {
            "dress_recall_at10": 60.0,
            "dress_recall_at50": 80.0,
            "shirt_recall_at10": 25.0,
            "shirt_recall_at50": 75.0,
            "toptee_recall_at10": 50.0,
            "toptee_recall_at50": 100.0,
            "average_recall_at10": 45.0,
            "average_recall_at50": 85.0,
            "average_recall": 65.0,
        }
    )


def test_a_subset_of_categories_is_averaged_over_itself():
    m = fashioniq_metrics({"toptee": HAND_MADE["toptee"], "dress": HAND_MADE["dress"]})
    assert list(m) == list(metric_keys(("dress", "toptee")))
    assert m["average_recall_at10"] == pytest.approx(45.0)
    assert m["average_recall"] == pytest.approx((45.0 + 80.0) / 2)
    with pytest.raises(ValueError, match="expected some of dress, shirt, toptee"):
        fashioniq_metrics({"shoes": HAND_MADE["dress"]})


def test_excluded_reference_never_ranks_even_when_it_scores_highest():
    # Gallery a b c d: the reference a scores highest, the target c second.
    scores = torch.tensor([[9.0, 0.1, 5.0, 0.2], [9.0, 5.0, 5.0, 0.2]])
    reference, target = torch.tensor([0, 0]), torch.tensor([2, 2])
    # Query 1: b ties with the target c and comes first in gallery order.
    assert fashioniq_ranks(scores, reference, target, exclude_reference=True).tolist() == [0, 1]
    assert fashioniq_ranks(scores, reference, target, exclude_reference=False).tolist() == [1, 2]
    # A reference outside the gallery (-1) excludes nothing.
    assert fashioniq_ranks(scores, torch.tensor([-1, -1]), target, True).tolist() == [1, 2]
    queries = CategoryQueries(scores[:1], list("abcd"), ["a"], ["c"])
    kept = fashioniq_metrics({"dress": queries})
    excluded = fashioniq_metrics({"dress": queries}, exclude_reference=True)
    assert kept["dress_recall_at10"] == excluded["dress_recall_at10"] == 100.0
    # The reference x0 and 9 other images ahead of the target x10: only exclusion keeps R@10.
    scores = torch.cat([torch.tensor([[9.0]]), torch.full((1, 9), 7.0), torch.tensor([[6.0]])], 1)
    gallery = [f"x{j}" for j in range(11)]
    queries = CategoryQueries(scores, gallery, ["x0"], ["x10"])
    assert fashioniq_metrics({"dress": queries})["dress_recall_at10"] == 0.0
    assert fashioniq_metrics({"dress": queries}, True)["dress_recall_at10"] == 100.0


def write_val_layout(root):
    """Dress val: 3 triplets naming 5 images; the val image split holds 3 more that no caption
    names (N0, N1, N2), as the real split files do."""
    named = [f"C{i}" for i in range(5)]
    entries = [
        {"candidate": "C0", "target": "C1", "captions": ["a", "b"]},
        {"candidate": "C2", "target": "C3", "captions": ["a", "b"]},
        {"candidate": "C0", "target": "C4", "captions": ["a", "b"]},
    ]
    for path, data in (
        (captions_file(root, "dress", "val"), entries),
        (split_file(root, "dress", "val"), ["N0", *named[:3], "N1", *named[3:], "N2"]),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    return root


def test_gallery_is_the_val_image_split_not_the_caption_images(tmp_path):
    root = write_val_layout(tmp_path / "fiq")
    gallery = val_gallery(root, "dress")
    assert gallery == ["N0", "C0", "C1", "C2", "N1", "C3", "C4", "N2"]
    triplets = category_triplets(root, "dress", "val")
    # Scores per gallery image: the images no caption names score above every target.
    row = {"N0": 9.0, "N1": 8.5, "N2": 8.0, "C0": 1.0, "C1": 0.5, "C2": 0.4, "C3": 0.3, "C4": 0.2}
    scores = torch.tensor([[row[n] for n in gallery]] * len(triplets))
    ranks = fashioniq_ranks(
        scores,
        torch.tensor([gallery.index(t["reference"]) for t in triplets]),
        torch.tensor([gallery.index(t["target_hard"]) for t in triplets]),
    )
    # N0 N1 N2 and C0 ahead of C1; N* C0 C1 C2 ahead of C3; N* C0..C3 ahead of C4.
    assert ranks.tolist() == [4, 6, 7]
    # (Among the 5 caption images alone, protocol 2, they would be 1, 3 and 4.)
    queries = CategoryQueries.from_triplets(scores, gallery, triplets)
    assert queries.targets == ["C1", "C3", "C4"] and queries.references == ["C0", "C2", "C0"]
    # A score matrix over the caption images only does not fit the gallery.
    narrow = CategoryQueries.from_triplets(scores[:, :5], gallery, triplets)
    with pytest.raises(ValueError, match=r"scores \(3, 5\) .* 8 gallery images"):
        fashioniq_metrics({"dress": narrow})


def test_target_outside_the_gallery_is_named():
    queries = CategoryQueries(torch.zeros((2, 3)), ["a", "b", "c"], ["a", "a"], ["b", "z"])
    with pytest.raises(CirflowError, match=r"shirt val: the target 'z' of query #1 is not in the"):
        fashioniq_metrics({"shirt": queries})


def test_chance_levels_by_hand():
    sizes = {"dress": 20, "shirt": 100, "toptee": 40}
    kept = chance_levels(sizes)
    assert kept == pytest.approx(
        {
            "dress_recall_at10": 50.0,
            "dress_recall_at50": 100.0,
            "shirt_recall_at10": 10.0,
            "shirt_recall_at50": 50.0,
            "toptee_recall_at10": 25.0,
            "toptee_recall_at50": 100.0,
            "average_recall_at10": 85 / 3,
            "average_recall_at50": 250 / 3,
            "average_recall": (85 / 3 + 250 / 3) / 2,
        }
    )
    excluded = chance_levels(sizes, exclude_reference=True)
    assert excluded["dress_recall_at10"] == pytest.approx(1000 / 19)
    assert excluded["shirt_recall_at50"] == pytest.approx(5000 / 99)
    # The real val galleries: R@10 by chance is a quarter of a percent or less.
    real = chance_levels({"dress": 3817, "shirt": 6346, "toptee": 5373})
    assert real["dress_recall_at10"] == pytest.approx(1000 / 3817)
    assert real["average_recall_at50"] == pytest.approx(
        (5000 / 3817 + 5000 / 6346 + 5000 / 5373) / 3
    )


@pytest.mark.parametrize("exclude", [False, True])
def test_random_scores_reach_the_chance_level(exclude):
    # 12 images, R@10: 10/12 = 83.3 % with the reference ranked, 10/11 = 90.9 % without it.
    g = torch.Generator().manual_seed(0)
    n, q = 12, 20000
    reference = torch.randint(0, n, (q,), generator=g)
    target = (reference + torch.randint(1, n, (q,), generator=g)) % n  # never the reference
    gallery = [f"i{j}" for j in range(n)]
    queries = CategoryQueries(
        torch.rand((q, n), generator=g),
        gallery,
        [gallery[r] for r in reference],
        [gallery[t] for t in target],
    )
    measured = fashioniq_metrics({c: queries for c in CATEGORIES}, exclude)
    chance = chance_levels({c: n for c in CATEGORIES}, exclude)
    assert measured["dress_recall_at10"] == pytest.approx(chance["dress_recall_at10"], abs=1.2)
    assert measured[SELECTION_METRIC] == pytest.approx(chance[SELECTION_METRIC], abs=1.2)
