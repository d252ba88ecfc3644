"""Region tokens (docs/design.md §6): a token sees only its box, an image without boxes scores
exactly as with its global tokens (training and ranking), evaluation uses the gallery's own
boxes (another split's file is an error), and the demo's ground truth as box files."""

import json

import pytest
import torch

from cirflow.data.tables import model_input
from cirflow.data.transforms import geometry, map_boxes
from cirflow.errors import CirflowError
from cirflow.evaluate.ranking import (
    Gallery,
    QueryImages,
    exact_ranks,
    max_token_scores,
    pair_scores,
)
from cirflow.evaluate.settings import EvalSettings
from cirflow.model.presets import get_preset
from cirflow.model.sprc import SPRC, patch_mask, union_scores

SETTINGS = EvalSettings(device="cpu", image_cache="memory", num_workers=0, progress=False)


@pytest.fixture(scope="module")
def models():
    """A tokens model and a none model with the same weights (tiny, random init), eval mode."""
    torch.manual_seed(0)
    none = SPRC(get_preset("tiny_scratch"))
    tokens = SPRC(get_preset("tiny_scratch"), "tokens", 4)
    tokens.load_state_dict({**none.state_dict(), "region_temp": tokens.region_temp.detach()})
    none.eval()
    tokens.eval()
    return none, tokens


def _embeds(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 65, 96, generator=g)


# ------------------------------------------------------------------------------ region tokens
def test_the_patch_mask_holds_the_centres_inside_the_box_and_cls():
    # Tiny: S = 64, G = 8, patch (r, c) centred at (8c + 4, 8r + 4).
    mask = patch_mask(torch.tensor([[16.0, 8.0, 40.0, 32.0], [1.0, 1.0, 3.0, 3.0]]), 8, 64)
    assert mask.shape == (2, 65) and mask[:, 0].all()  # CLS always
    inside = {(int(i) // 8, int(i) % 8) for i in mask[0, 1:].nonzero()}
    assert inside == {(r, c) for r in (1, 2, 3) for c in (2, 3, 4)}
    # A box holding no patch centre takes the patch under its own centre.
    assert mask[1, 1:].nonzero().flatten().tolist() == [0]


def test_a_box_smaller_than_a_patch_takes_the_patch_under_its_centre_row_and_column():
    # Centre (x, y) = (42, 14): column 5, row 1, so row-major patch 1·8 + 5 (its transpose would
    # be 5·8 + 1); no patch centre 8k + 4 lies in x ∈ [41, 43] or y ∈ [13, 15].
    mask = patch_mask(torch.tensor([[41.0, 13.0, 43.0, 15.0]]), 8, 64)
    assert mask[0, 0]  # CLS
    assert mask[0, 1:].nonzero().flatten().tolist() == [1 * 8 + 5]


def test_a_region_token_depends_only_on_the_patches_inside_its_box(models):
    _, model = models
    boxes = torch.tensor([[[16.0, 8.0, 40.0, 32.0], [0.0, 0.0, 64.0, 64.0]]])
    valid = torch.tensor([[True, False]])
    e = _embeds(1)
    with torch.no_grad():
        base = model.region_tokens(e, boxes, valid)
        outside, inside = e.clone(), e.clone()
        outside[0, 1 + 6 * 8 + 6] += 3.0  # patch (6, 6): outside the box
        outside[0, 1 + 0 * 8 + 2] -= 3.0  # patch (0, 2): right above it
        inside[0, 1 + 2 * 8 + 3] += 3.0  # patch (2, 3): inside
        cls = e.clone()
        cls[0, 0] += 3.0
        r_out = model.region_tokens(outside, boxes, valid)
        r_in = model.region_tokens(inside, boxes, valid)
        r_cls = model.region_tokens(cls, boxes, valid)
    assert torch.equal(r_out, base)
    assert (r_in[0, 0] - base[0, 0]).abs().max() > 1e-3
    assert (r_cls[0, 0] - base[0, 0]).abs().max() > 1e-3  # CLS is attended
    assert torch.equal(base[0, 1], torch.zeros(base.shape[-1]))  # padding slot
    assert torch.allclose(base[0, 0].norm(), torch.tensor(1.0), atol=1e-5)


def test_a_region_token_is_the_masked_qformer_pass_mean_pooled_and_projected(models):
    """R = norm(vision_proj(mean_k QFormer(queries, E under the mask)_k)), with the full token
    set and LAVIS's encoder attention mask (the gathered tokens are an implementation detail)."""
    _, model = models
    e = _embeds(1, seed=3)
    box = torch.tensor([[[0.0, 24.0, 30.0, 64.0]]])
    with torch.no_grad():
        got = model.region_tokens(e, box, torch.tensor([[True]]))[0, 0]
        mask = patch_mask(box[0], 8, 64)
        out = model.Qformer.bert(
            query_embeds=model.query_tokens,
            encoder_hidden_states=e,
            encoder_attention_mask=mask.long(),
            return_dict=True,
        ).last_hidden_state
        expect = torch.nn.functional.normalize(model.vision_proj(out.mean(dim=1)), dim=-1)[0]
    assert torch.allclose(got, expect, atol=1e-5)


def test_a_repeated_image_is_computed_once_with_the_same_tokens(models):
    _, model = models
    e = _embeds(2)
    e = torch.cat([e, e[:1]])  # image 0 again (a target that is also a reference)
    boxes = torch.tensor([[[0, 0, 32, 32]], [[16, 16, 64, 64]], [[0, 0, 32, 32]]]).float()
    valid = torch.ones(3, 1, dtype=torch.bool)
    with torch.no_grad():
        plain = model.region_tokens(e, boxes, valid)
        once = model.region_tokens(e, boxes, valid, image_ids=torch.tensor([7, 8, 7]))
    assert torch.allclose(plain, once, atol=1e-6) and torch.equal(once[0], once[2])


# ----------------------------------------------------------------- images without boxes: exact
def test_union_scores_of_an_image_without_boxes_are_its_global_scores_exactly():
    g = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(5, 16, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(4, 8, 16, generator=g), dim=-1)
    r = torch.nn.functional.normalize(torch.randn(4, 3, 16, generator=g), dim=-1)
    valid = torch.tensor([[True, True, False], [False] * 3, [True, False, False], [False] * 3])
    plain = torch.einsum("id,jkd->ijk", q, k).amax(dim=-1)
    got = union_scores(q, k, r, valid)
    assert torch.equal(got[:, [1, 3]], plain[:, [1, 3]])
    by_region = torch.einsum("id,jmd->ijm", q, r)
    assert torch.equal(got[:, 0], torch.maximum(plain[:, 0], by_region[:, 0, :2].amax(-1)))
    assert torch.equal(got[:, 2], torch.maximum(plain[:, 2], by_region[:, 2, 0]))
    assert torch.equal(union_scores(q, k, r, torch.zeros_like(valid)), plain)


def test_ranking_with_region_tokens_leaves_images_without_boxes_exactly_as_they_were():
    g = torch.Generator().manual_seed(2)
    q = torch.nn.functional.normalize(torch.randn(40, 16, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(70, 8, 16, generator=g), dim=-1)
    r = torch.nn.functional.normalize(torch.randn(70, 4, 16, generator=g), dim=-1)
    valid = torch.rand(70, 4, generator=g) < 0.5
    valid[::3] = False  # every third image has no box
    for dtype in (torch.float32, torch.bfloat16):
        plain = max_token_scores(q, k, gallery_block=16, dtype=dtype)
        got = max_token_scores(q, Gallery(k, (r, valid)), gallery_block=16, dtype=dtype)
        no_box = ~valid.any(dim=1)
        assert torch.equal(got[:, no_box], plain[:, no_box])
        assert (got >= plain).all()
    exact = union_scores(q, k, r, valid)
    assert torch.allclose(max_token_scores(q, Gallery(k, (r, valid))), exact, atol=1e-6)
    qi, gi = torch.arange(40), torch.arange(40) % 70
    assert torch.allclose(pair_scores(q, k, qi, gi, regions=(r, valid)), exact[qi, gi], atol=1e-6)
    # No image with a box: the ranks are exactly those of the global tokens (both passes).
    ref, tgt = torch.arange(40) % 70, (torch.arange(40) + 1) % 70
    members = torch.stack([tgt, (tgt + 1) % 70, (tgt + 2) % 70], dim=1)
    none = (r, torch.zeros_like(valid))
    images = QueryImages(ref, tgt, members)
    for approx in (False, True):
        assert all(
            torch.equal(a, b)
            for a, b in zip(
                exact_ranks(q, Gallery(k, none), images, approx=approx),
                exact_ranks(q, Gallery(k), images, approx=approx),
                strict=True,
            )
        )


def _batch(model, n=4):
    g = torch.Generator().manual_seed(5)
    ref, tgt = torch.randn(n, 65, 96, generator=g), torch.randn(n, 65, 96, generator=g)
    ids, mask = model.tokenize(["make it blue", "remove the star", "add a square", "move it"][:n])
    boxes = torch.tensor([[[0, 0, 32, 32], [32, 32, 64, 64]]] * n, dtype=torch.float32)
    return ref, tgt, ids, mask, boxes


def test_a_batch_without_boxes_gives_the_global_losses_exactly(models):
    none, tokens = models
    ref, tgt, ids, mask, boxes = _batch(tokens)
    ids_t, ids_r = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 0, 5, 6])
    common = dict(
        ref_images=ref,
        target_images=tgt,
        input_ids=ids,
        attention_mask=mask,
        target_ids=ids_t,
        reference_ids=ids_r,
        reference_negatives=True,
    )
    off = torch.zeros(4, 2, dtype=torch.bool)
    with torch.no_grad():
        plain = none(**common)
        empty = tokens(**common, boxes=boxes, box_valid=off, ref_boxes=boxes, ref_box_valid=off)
    for key in ("loss_itc", "loss_rtc", "loss_align"):
        assert torch.equal(empty[key], plain[key]), key
    assert float(empty["loss_region"]) == 0.0


def test_region_tokens_join_the_candidates_of_the_contrastive_losses(models, monkeypatch):
    """A target's region token equal to its own query lifts the diagonal: L_itc falls."""
    none, tokens = models
    ref, tgt, ids, mask, boxes = _batch(tokens)
    with torch.no_grad():
        q = tokens.query_features(ref, ids, mask)
    monkeypatch.setattr(
        tokens,
        "region_tokens",
        lambda embeds, b, v, image_ids=None: q[:, None, :].expand(-1, b.shape[1], -1)[: len(b)],
    )
    common = dict(ref_images=ref, target_images=tgt, input_ids=ids, attention_mask=mask)
    with torch.no_grad():
        plain = none(**common)
        lifted = tokens(**common, boxes=boxes, box_valid=torch.ones(4, 2, dtype=torch.bool))
    assert float(lifted["loss_itc"]) < float(plain["loss_itc"]) - 1e-3
    assert float(lifted["loss_region"]) < float(plain["loss_itc"])


def test_region_token_gradients_reach_the_qformer_and_vision_proj(models):
    _, tokens = models
    ref, tgt, ids, mask, boxes = _batch(tokens)
    tokens.train()
    tokens.zero_grad()
    losses = tokens(
        ref_images=ref,
        target_images=tgt,
        input_ids=ids,
        attention_mask=mask,
        boxes=boxes,
        box_valid=torch.ones(4, 2, dtype=torch.bool),
    )
    losses["loss_region"].backward()
    tokens.eval()
    assert tokens.vision_proj.weight.grad.abs().sum() > 0
    assert tokens.query_tokens.grad.abs().sum() > 0
    grads = [p.grad for n, p in tokens.Qformer.named_parameters() if "crossattention" in n]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    tokens.zero_grad()


# ------------------------------------------------------------------------- data: demo + boxes
# conftest's session demo (tiny_demo) and its box files (tiny_demo_gt): read only here.


def test_ground_truth_box_files_per_split_with_sizes(tiny_demo, tiny_demo_gt):
    from PIL import Image

    from cirflow.data.cirr import CirrDataset

    gt = json.loads((tiny_demo / "boxes_gt.json").read_text())
    for split in ("train", "val", "test1"):
        ds = CirrDataset(tiny_demo, split)
        boxes = json.loads((tiny_demo_gt / f"{split}.json").read_text())
        meta = json.loads((tiny_demo_gt / f"{split}.meta.json").read_text())
        assert set(boxes) == set(ds.images) and meta["split"] == split
        name = sorted(ds.images)[0]
        assert boxes[name] == gt[name]
        with Image.open(ds.image_path(name)) as im:
            assert meta["images"][name]["size"] == list(im.size)


# --------------------------------------------------------------------------- evaluation boxes
def test_evaluation_with_tokens_uses_the_gallery_own_boxes(tiny_demo, tiny_demo_gt, models):
    from cirflow.data.regions import BoxFile
    from cirflow.evaluate.evaluator import SplitEvaluator, SplitSources

    _, tokens = models
    with pytest.raises(CirflowError, match="val box file"):
        SplitEvaluator(tiny_demo, "val", tokens, SETTINGS)
    with pytest.raises(CirflowError, match="another split"):
        SplitEvaluator(
            tiny_demo,
            "val",
            tokens,
            SETTINGS,
            sources=SplitSources(boxes=BoxFile(tiny_demo_gt / "train.json")),
        )
    # The right names with the sidecar of another split: an error too.
    with pytest.raises(CirflowError, match="sidecar of a test1 box file"):
        SplitEvaluator(
            tiny_demo,
            "val",
            tokens,
            SETTINGS,
            sources=SplitSources(
                boxes=BoxFile(tiny_demo_gt / "val.json", tiny_demo_gt / "test1.meta.json")
            ),
        )
    ev = SplitEvaluator(
        tiny_demo,
        "val",
        tokens,
        SETTINGS,
        sources=SplitSources(boxes=BoxFile(tiny_demo_gt / "val.json")),
    )
    gt = json.loads((tiny_demo_gt / "val.json").read_text())
    sizes = json.loads((tiny_demo_gt / "val.meta.json").read_text())["images"]
    assert set(ev.boxes) == {ev.table.index[n] for n in ev.table.names if gt[n]}
    for name in ev.table.names:  # each image's boxes through its own geometry, capped
        w, h = sizes[name]["size"]
        expect, _ = map_boxes(gt[name], geometry(w, h, 64))
        got = ev.boxes.get(ev.table.index[name], torch.zeros(0, 4))
        assert torch.allclose(got, torch.from_numpy(expect[:4]))
    queries, gallery, (region, valid) = ev.features(tokens)
    j = next(iter(ev.boxes))
    with torch.no_grad():
        e = tokens.image_tokens(model_input(ev.table.get([j]), torch.device("cpu")))
        b = ev.boxes[j][None]
        own = tokens.region_tokens(e, b, torch.ones(1, len(b[0]), dtype=torch.bool))[0]
    assert valid[j].sum() == len(b[0]) and torch.allclose(region[j, : len(b[0])], own, atol=1e-5)
    scores = ev.scores(tokens)
    assert torch.allclose(scores, union_scores(queries, gallery, region, valid), atol=1e-6)
    # A model without region tokens ignores the boxes: global tokens only.
    none, _ = models
    plain = SplitEvaluator(
        tiny_demo,
        "val",
        none,
        SETTINGS,
        sources=SplitSources(boxes=BoxFile(tiny_demo_gt / "val.json")),
    )
    assert (
        plain.boxes is None and len(plain.features(none)) == 3 and plain.features(none)[2] is None
    )
