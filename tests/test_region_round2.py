"""Region supervision that cannot add distractors (docs/design.md §6): `token_loss` (region
tokens in the training loss only) and `gated` (region tokens in every score through a learned
gate that starts at 0)."""

import json
import math

import pytest
import torch

from cirflow.data.tables import Batch
from cirflow.evaluate.settings import EvalSettings
from cirflow.model.presets import get_preset
from cirflow.model.scores import GATE_SOFTNESS
from cirflow.model.sprc import SPRC, union_scores

SETTINGS = EvalSettings(device="cpu", image_cache="memory", num_workers=0, progress=False)
CAPTIONS = ["make the red circle blue", "remove the small star", "add a star", "move it"]


@pytest.fixture(scope="module")
def models():
    """none, token_loss and gated models with the same weights (tiny, random init)."""
    torch.manual_seed(0)
    none = SPRC(get_preset("tiny_scratch"))
    token_loss = SPRC(get_preset("tiny_scratch"), "token_loss", 4)
    gated = SPRC(get_preset("tiny_scratch"), "gated", 4)
    token_loss.load_state_dict({**none.state_dict(), **_added(token_loss)})
    gated.load_state_dict({**none.state_dict(), **_added(gated)})
    return none, token_loss, gated


def _added(model) -> dict:
    """The weights a region mode adds to the control, as the model drew them."""
    names = ("region_temp", "region_gate")
    return {k: v for k, v in model.state_dict().items() if k in names}


def _batch(model, boxes=True) -> Batch:
    g = torch.Generator().manual_seed(1)
    ids, mask = model.tokenize(CAPTIONS)
    box = torch.tensor([[8.0, 8.0, 40.0, 40.0], [20.0, 4.0, 60.0, 30.0]])
    return Batch(
        None,
        torch.tensor([0, 1, 1, 2]),  # a duplicate target: the masks have work to do
        torch.tensor([5, 6, 7, 8]),
        torch.randn(4, 3, 64, 64, generator=g),
        torch.randn(4, 3, 64, 64, generator=g),
        ids,
        mask,
        box.expand(4, 2, 4).clone() if boxes else None,
        torch.tensor([[True, True], [True, False], [False, False], [True, True]])
        if boxes
        else None,
    )


def test_the_gate_starts_at_zero_and_the_gated_model_then_scores_as_the_control(models):
    none, _, gated = models
    assert float(gated.region_gate) == 0.0 and float(gated.gate()) == 0.0
    none.eval()
    gated.eval()
    with torch.no_grad():
        control = none(_batch(none, boxes=False), reference_negatives=False)
        at_init = gated(_batch(gated), reference_negatives=False)
    # The scores are the control's to the bit: so are both contrastive losses.
    for key in ("loss_itc", "loss_rtc", "loss_align"):
        assert torch.equal(at_init[key], control[key]), key
    assert "loss_region" in at_init


def test_the_gate_moves_the_score_part_of_the_way_to_the_union():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(5, 4, 8, generator=g), dim=-1)
    r = torch.nn.functional.normalize(torch.randn(5, 2, 8, generator=g), dim=-1)
    valid = torch.tensor([[True, True], [True, False], [False, False], [True, True], [False, True]])
    plain = union_scores(q, k)
    union = union_scores(q, k, r, valid)
    assert torch.equal(union_scores(q, k, r, valid, torch.tensor(0.0)), plain)
    # Open, the smooth union: within softness · log 2 of the union, never below either max.
    full = union_scores(q, k, r, valid, torch.tensor(1.0))
    assert (full >= union - 1e-6).all() and (
        full - union <= GATE_SOFTNESS * math.log(2) + 1e-6
    ).all()
    half = union_scores(q, k, r, valid, torch.tensor(0.5))
    assert torch.allclose(half - plain, 0.5 * (full - plain), atol=1e-6)
    assert torch.equal(half[:, 2], plain[:, 2])  # an image without boxes: its global score


def test_the_gate_learns_from_the_scores(models):
    _, _, gated = models
    gated.train()
    gated.zero_grad()
    losses = gated(_batch(gated), reference_negatives=False)
    losses["loss_itc"].backward()
    # At 0 the clamp passes the gradient: the gate can open.
    assert gated.region_gate.grad is not None and float(gated.region_gate.grad) != 0.0
    gated.zero_grad()


def test_token_loss_scores_global_tokens_and_trains_the_query_path_on_the_region_tokens(models):
    none, token_loss, _ = models
    none.eval()
    token_loss.eval()
    with torch.no_grad():
        control = none(_batch(none, boxes=False), reference_negatives=False)
        only_loss = token_loss(_batch(token_loss), reference_negatives=False)
    for key in ("loss_itc", "loss_rtc", "loss_align"):
        assert torch.equal(only_loss[key], control[key]), key
    token_loss.train()
    token_loss.zero_grad()
    token_loss(_batch(token_loss), reference_negatives=False)["loss_region"].backward()
    # L_region reaches what retrieval uses: the query path and the Q-Former's cross-attention.
    assert token_loss.text_proj.weight.grad.abs().sum() > 0
    assert token_loss.vision_proj.weight.grad.abs().sum() > 0
    cross = [p.grad for n, p in token_loss.Qformer.named_parameters() if "crossattention" in n]
    assert any(g is not None and g.abs().sum() > 0 for g in cross)
    token_loss.zero_grad()


def test_the_region_loss_has_its_own_temperature(models):
    """At stage 1's sharp τ the region loss swamped L_itc (docs/design.md §6): L_region is
    scaled by region_temp only, and its gradient never reaches the retrieval losses' τ."""
    _, token_loss, _ = models
    token_loss.train()
    sharp = token_loss.temp.detach().clone()
    try:
        values = []
        for tau in (0.005, 0.07):
            token_loss.temp.data.fill_(tau)
            torch.manual_seed(0)
            values.append(token_loss(_batch(token_loss), reference_negatives=False)["loss_region"])
        assert torch.equal(values[0], values[1])
        token_loss.zero_grad()
        values[1].backward()
        assert token_loss.temp.grad is None or float(token_loss.temp.grad) == 0.0
        assert float(token_loss.region_temp.grad) != 0.0
    finally:
        token_loss.temp.data.copy_(sharp)
        token_loss.zero_grad()


# --------------------------------------------------------------------------------- evaluation
# conftest's session demo (tiny_demo) and its box files (tiny_demo_gt): read only here.


def test_token_loss_evaluates_as_the_control_and_reads_no_box_file(tiny_demo, tiny_demo_gt, models):
    from cirflow.data.regions import BoxFile
    from cirflow.evaluate.evaluator import SplitEvaluator, SplitSources

    none, token_loss, _ = models
    none.eval()
    token_loss.eval()
    control = SplitEvaluator(tiny_demo, "val", none, SETTINGS)
    # No box file needed; one given is not read (a path that does not exist proves it).
    ev = SplitEvaluator(tiny_demo, "val", token_loss, SETTINGS)
    unread = SplitEvaluator(
        tiny_demo,
        "val",
        token_loss,
        SETTINGS,
        sources=SplitSources(boxes=BoxFile(tiny_demo_gt / "absent.json")),
    )
    assert ev.boxes is None and unread.boxes is None
    assert torch.equal(ev.scores(token_loss), control.scores(none))
    assert ev.metrics(token_loss) == control.metrics(none)


def test_the_gated_model_at_init_evaluates_as_the_control(tiny_demo, tiny_demo_gt, models):
    from cirflow.data.regions import BoxFile
    from cirflow.evaluate.evaluator import SplitEvaluator, SplitSources

    none, _, gated = models
    none.eval()
    gated.eval()
    boxes = SplitSources(boxes=BoxFile(tiny_demo_gt / "val.json"))
    ev = SplitEvaluator(tiny_demo, "val", gated, SETTINGS, sources=boxes)
    control = SplitEvaluator(tiny_demo, "val", none, SETTINGS)
    assert ev.boxes  # the gallery's own boxes are read, and region tokens computed
    assert torch.equal(ev.scores(gated), control.scores(none))
    assert ev.metrics(gated) == control.metrics(none)
    # Open the gate: the ranking scores as training does.
    with torch.no_grad():
        gated.region_gate.fill_(1.0)
    try:
        queries, gallery, (region, valid) = ev.features(gated)
        expected = union_scores(queries, gallery, region, valid, gated.gate())
        assert torch.allclose(ev.scores(gated), expected, atol=1e-6)
        assert not torch.equal(ev.scores(gated), control.scores(none))
    finally:
        with torch.no_grad():
            gated.region_gate.fill_(0.0)


def test_a_stage1_checkpoint_starts_the_gated_model_with_its_gate_closed(tmp_path, models):
    from cirflow.model.checkpoints import write_best
    from cirflow.model.config import ModelConfig
    from cirflow.model.factory import model_for_training

    none, _, _ = models
    write_best(none, tmp_path / "stash.pt", tmp_path / "best.pt", 1, {}, {})
    gated = model_for_training(
        ModelConfig("tiny_scratch", region_mode="gated", max_region_tokens=4),
        str(tmp_path / "best.pt"),
    )
    assert float(gated.region_gate) == 0.0
    own = gated.state_dict()
    assert all(torch.equal(own[k], v) for k, v in none.state_dict().items())
    assert json.loads(json.dumps(gated.config.to_dict()))["region_mode"] == "gated"


# ---------------------------------------------------------------- the edited-object boxes
def _scene_objects(description: str) -> int:
    """The objects a scene description lists (one phrase each, joined by ' and ')."""
    return len(description.split(" on a ", 1)[0].split(" and "))


def test_the_edited_boxes_land_on_the_edited_object_for_every_edit_type(tiny_demo):
    """Per triplet, against the scene itself (boxes_gt.json, descriptions.json): the object a
    change keeps is in the target where the box says; a removed one is where the box says in
    the reference and gone from the target; an added or moved one is new in the target."""
    from cirflow.data.cirr import edited_boxes_file

    gt = json.loads((tiny_demo / "boxes_gt.json").read_text())
    described = json.loads((tiny_demo / "descriptions.json").read_text())
    seen = set()
    for split in ("train", "val"):
        edited = json.loads(edited_boxes_file(tiny_demo, split).read_text())
        edits = json.loads((tiny_demo / f"cirr/captions/edits.rc2.{split}.json").read_text())
        triplets = json.loads((tiny_demo / f"cirr/captions/cap.rc2.{split}.json").read_text())
        assert set(edited) == {str(t["pairid"]) for t in triplets}
        for t in triplets:
            ref, target = t["reference"], t["target_hard"]
            edit, boxes = edits[str(t["pairid"])], edited[str(t["pairid"])]
            seen.add(edit)
            assert boxes, t["pairid"]
            objects = _scene_objects(described[target]) - _scene_objects(described[ref])
            if edit == "remove":
                assert objects == -1
                assert all(b in gt[ref] and b not in gt[target] for b in boxes), t
                continue
            assert all(b in gt[target] for b in boxes), t  # on objects of the target
            if edit in ("add", "move"):
                assert objects == (1 if edit == "add" else 0)
                assert all(b not in gt[ref] for b in boxes), t  # where the reference has none
            elif edit == "count":  # the copies of one object: as many as the target holds
                assert objects != 0
                sizes = {(round(b[2] - b[0], 3), round(b[3] - b[1], 3)) for b in boxes}
                assert len(sizes) == 1 and len(boxes) == (1 if objects < 0 else 1 + objects)
            else:  # colour, shape, resize: one object changed in place
                assert objects == 0 and len(boxes) == 1
    assert seen == {"color", "shape", "add", "remove", "move", "resize", "count"}


def test_each_triplet_trains_with_its_own_edited_boxes(tiny_demo, tmp_path):
    """A box file keyed by pairid gives every triplet its own target boxes (two triplets with
    the same target get their own), mapped through the target's geometry; a mode that scores
    region tokens refuses it."""
    from conftest import tiny_settings

    from cirflow.data.cirr import edited_boxes_file
    from cirflow.data.transforms import geometry, map_boxes
    from cirflow.errors import CirflowError
    from cirflow.train.loop import Trainer

    path = edited_boxes_file(tiny_demo, "train")
    trainer = Trainer(
        tiny_settings(tiny_demo, tmp_path / "run", region_mode="token_loss", box_file=str(path))
    )
    trainer.build()
    data, table = trainer.train_data, trainer.train_table
    edited = json.loads(path.read_text())
    assert data.triplet_boxes and data.target_boxes is None
    for i, t in enumerate(data.triplets):
        width, height = table.image_size(table.index[t["target_hard"]])
        expect, _ = map_boxes(edited[str(t["pairid"])], geometry(width, height, 64))
        got = data.triplet_boxes.get(i, torch.zeros(0, 4))
        assert torch.allclose(got, torch.from_numpy(expect[:4])), t["pairid"]
    batch = next(iter(data.batches(8, seed=0, epoch=0)))
    first = int(batch.indices[0])
    own = data.triplet_boxes[first]
    assert torch.equal(batch.boxes[0, : len(own)], own)
    with pytest.raises(CirflowError, match="holds boxes per triplet"):
        Trainer(
            tiny_settings(
                tiny_demo,
                tmp_path / "tokens",
                region_mode="tokens",
                box_file=str(path),
                val_box_file=str(edited_boxes_file(tiny_demo, "val")),
            )
        ).build()
