"""Region loss (stage 2): box geometry, ROI pooling, the loss, bad box files, stage-2 init."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cirflow.data.transforms import geometry, map_boxes, preprocess
from cirflow.errors import CirflowError
from cirflow.model.presets import get_preset
from cirflow.model.sprc import SPRC


# ------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize(
    ("w", "h", "box_px"),
    [
        (200, 120, (30, 20, 70, 60)),  # landscape, ratio 1.67 -> padded top/bottom
        (100, 300, (20, 150, 60, 200)),  # portrait, ratio 3 -> padded left/right, then cropped
        (160, 150, (100, 10, 150, 60)),  # ratio < 1.25: no padding
    ],
)
def test_a_drawn_square_lands_where_its_mapped_box_says(w, h, box_px):
    x1, y1, x2, y2 = box_px
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[y1:y2, x1:x2] = 255
    img, geo = preprocess(Image.fromarray(arr), 64)
    assert geo == geometry(w, h, 64)
    mapped, dropped = map_boxes([[x1 / w, y1 / h, x2 / w, y2 / h]], geo)
    assert dropped == 0 and mapped.shape == (1, 4)
    bright = img[0].numpy() > 128
    ys, xs = np.nonzero(bright)
    bx1, by1, bx2, by2 = mapped[0]
    # Bright pixels lie inside the mapped box (1 px of bicubic ringing allowed) and fill it.
    assert xs.min() >= bx1 - 1 and xs.max() + 1 <= bx2 + 1
    assert ys.min() >= by1 - 1 and ys.max() + 1 <= by2 + 1
    assert abs(xs.min() - bx1) <= 1.5 and abs(xs.max() + 1 - bx2) <= 1.5
    # ... and so on the 8x8 patch grid of the tiny ViT (patch 8): the same cells.
    cells_img = {(int(y) // 8, int(x) // 8) for y, x in zip(ys, xs, strict=True) if bright[y, x]}
    cells_box = {
        (r, c)
        for r in range(int(by1 // 8), int(np.ceil(by2 / 8)))
        for c in range(int(bx1 // 8), int(np.ceil(bx2 / 8)))
    }
    assert cells_img <= cells_box
    assert len(cells_box - cells_img) <= len(cells_box) // 2 + 2


def test_boxes_cut_away_by_the_centre_crop_are_dropped():
    # 100 wide x 300 high: TargetPad pads the width to 240, Resize makes it 64 x 80, the crop
    # removes 8 rows at the top and bottom: a box in the top 5 % of the image is gone.
    geo = geometry(100, 300, 64)
    assert (geo.pad_x, geo.pad_y, geo.resized_w, geo.resized_h, geo.crop_y) == (70, 0, 64, 80, 8)
    kept, dropped = map_boxes(
        [[0.2, 0.0, 0.8, 0.05], [0.2, 0.3, 0.8, 0.6], [0.2, 0.0, 0.8, 0.2]], geo
    )
    assert dropped == 1 and len(kept) == 2
    # The third box keeps > 25 % of its area after clipping: kept, clipped to the input.
    assert kept[1][1] == 0.0
    assert (kept >= 0).all() and (kept <= 64).all()


# ---------------------------------------------------------------------------------- ROI + loss
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = SPRC(get_preset("tiny_scratch"), "aux")
    m.eval()
    return m


def test_roi_align_pools_the_patch_under_the_box(model):
    grid, dim = 8, model.visual_encoder.num_features
    embeds = torch.zeros(1, 1 + grid * grid, dim)
    v = torch.randn(dim)
    r, c = 2, 5
    embeds[0, 1 + r * grid + c] = v  # token of patch row 2, column 5 (CLS first, row-major)
    embeds[0, 0] = 100.0  # the CLS token must not leak into any region
    boxes = torch.tensor([[[c * 8.0, r * 8.0, c * 8.0 + 8, r * 8.0 + 8], [0, 0, 8, 8]]])
    valid = torch.tensor([[True, True]])
    with torch.no_grad():
        feats = model.region_features(embeds, boxes, valid)
        expect = torch.nn.functional.normalize(model.region_proj(v[None]), dim=-1)[0]
        empty = torch.nn.functional.normalize(model.region_proj(torch.zeros(1, dim)), dim=-1)[0]
    assert torch.allclose(feats[0, 0], expect, atol=1e-5)
    assert torch.allclose(feats[0, 1], empty, atol=1e-5)


def _batch(model, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(n, 3, 64, 64, generator=g)
    tgt = torch.randn(n, 3, 64, 64, generator=g)
    ids, mask = model.tokenize(
        ["make the red circle blue", "remove the star", "add a square", "move it left"][:n]
    )
    boxes = torch.tensor(
        [
            [[0, 0, 32, 32], [32, 32, 64, 64]],
            [[8, 8, 40, 24], [0, 0, 0, 0]],
            [[16, 0, 64, 48], [0, 40, 24, 64]],
            [[0, 32, 64, 64], [0, 0, 0, 0]],
        ],
        dtype=torch.float32,
    )[:n]
    valid = torch.tensor([[True, True], [True, False], [True, True], [True, False]])[:n]
    return ref, tgt, ids, mask, boxes, valid


def test_permuting_boxes_across_the_batch_changes_the_region_loss(model):
    ref, tgt, ids, mask, boxes, valid = _batch(model)
    with torch.no_grad():
        base = model(
            ref_images=ref,
            target_images=tgt,
            input_ids=ids,
            attention_mask=mask,
            boxes=boxes,
            box_valid=valid,
        )["loss_region"]
        perm = torch.tensor([1, 2, 3, 0])
        moved = model(
            ref_images=ref,
            target_images=tgt,
            input_ids=ids,
            attention_mask=mask,
            boxes=boxes[perm],
            box_valid=valid[perm],
        )["loss_region"]
    assert float(base) > 0 and abs(float(base) - float(moved)) > 1e-4


def test_all_empty_boxes_give_zero_and_no_nan(model):
    ref, tgt, ids, mask, boxes, valid = _batch(model)
    model.train()
    losses = model(
        ref_images=ref,
        target_images=tgt,
        input_ids=ids,
        attention_mask=mask,
        boxes=boxes,
        box_valid=torch.zeros_like(valid),
    )
    model.eval()
    assert float(losses["loss_region"]) == 0.0
    total = sum(losses.values())
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.zero_grad()
    # No box slots at all (a batch whose targets have no boxes).
    losses = model(
        ref_images=ref,
        target_images=tgt,
        input_ids=ids,
        attention_mask=mask,
        boxes=torch.zeros(4, 0, 4),
        box_valid=torch.zeros(4, 0, dtype=torch.bool),
    )
    assert float(losses["loss_region"]) == 0.0


def test_only_rows_and_columns_with_boxes_count(model):
    ref, tgt, ids, mask, boxes, valid = _batch(model)
    valid = valid.clone()
    valid[3] = False  # target 3 has no box: its row and column leave the loss
    with torch.no_grad():
        q = model.query_features(ref, ids, mask)
        e = model.image_tokens(tgt)
        r = model.region_features(e, boxes, valid)
        s = torch.einsum("id,jmd->ijm", q, r).masked_fill(~valid[None], float("-inf")).amax(-1)
        expect = torch.nn.functional.cross_entropy(s[:3, :3] / model.region_temp, torch.arange(3))
        got = model(
            ref_images=ref,
            target_images=tgt,
            input_ids=ids,
            attention_mask=mask,
            boxes=boxes,
            box_valid=valid,
        )["loss_region"]
    assert float(got) == pytest.approx(float(expect), rel=1e-5)


def test_region_gradients_reach_the_qformer_and_region_proj(model):
    ref, tgt, ids, mask, boxes, valid = _batch(model)
    model.train()
    model.zero_grad()
    model(
        ref_images=ref,
        target_images=tgt,
        input_ids=ids,
        attention_mask=mask,
        boxes=boxes,
        box_valid=valid,
    )["loss_region"].backward()
    assert model.region_proj.weight.grad.abs().sum() > 0
    qf = [p.grad for n, p in model.Qformer.named_parameters() if p.grad is not None]
    assert qf and sum(float(g.abs().sum()) for g in qf) > 0
    assert model.query_tokens.grad.abs().sum() > 0  # through P (fusion prompt)
    assert model.text_proj.weight.grad.abs().sum() > 0
    model.zero_grad()
    model.eval()


# ---------------------------------------------------------------------------------- box files
@pytest.fixture(scope="module")
def demo_root(tiny_demo):
    """conftest's shared tiny demo (read only here)."""
    return tiny_demo


@pytest.fixture(scope="module")
def table(demo_root):
    from cirflow.data.cirr import CirrDataset
    from cirflow.data.tables import ImageTable

    return ImageTable(CirrDataset(demo_root, "train"), 64, "memory", 0, progress=False)


def _write(path, obj):
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def test_good_box_file_maps_every_target(demo_root, table, tmp_path):
    from cirflow.data.regions import BoxFile

    gt = json.loads((demo_root / "boxes_gt.json").read_text())
    boxes = {n: gt[n] for n in table.names}
    out, counts = BoxFile(_write(tmp_path / "train.json", boxes)).load_training(table, 64)
    assert counts["unknown_images"] == 0 and counts["targets_missing_from_file"] == 0
    assert counts["targets_with_boxes"] == len(out) > 0
    assert sum(counts["rejected"].values()) == 0
    for b in out.values():
        assert b.shape[1] == 4 and (b[:, 0] < b[:, 2]).all() and (b >= 0).all() and (b <= 64).all()


def test_bad_box_files_are_errors_or_counted(demo_root, table, tmp_path):
    from cirflow.data.regions import BoxFile

    names = table.names
    # Pixels instead of normalised coordinates: the whole file is rejected.
    pixels = {n: [[10, 20, 120, 90]] for n in names}
    with pytest.raises(CirflowError, match="pixel coordinates"):
        BoxFile(_write(tmp_path / "px.json", pixels)).load_training(table, 64)
    # A box file of another split: no name matches.
    other = {n.replace("train", "dev"): [[0.1, 0.1, 0.5, 0.5]] for n in names}
    with pytest.raises(CirflowError, match="another split"):
        BoxFile(_write(tmp_path / "val.json", other)).load_training(table, 64)
    # Invalid JSON / wrong structure.
    with pytest.raises(CirflowError, match="not valid JSON"):
        BoxFile(_write(tmp_path / "bad.json", "{not json")).load_training(table, 64)
    with pytest.raises(CirflowError, match="expected a list"):
        BoxFile(_write(tmp_path / "bad2.json", {names[0]: 3})).load_training(table, 64)
    # Mixed bad boxes: each rejected or clipped and counted, the good ones kept.
    mixed = {
        names[0]: [[0.5, 0.1, 0.2, 0.6], [0.1, 0.1, 0.6, 0.6]],  # x1 > x2 -> rejected
        names[1]: [[float("nan"), 0.1, 0.5, 0.5]],  # NaN -> rejected, target without boxes
        names[2]: [[-0.05, 0.1, 1.03, 0.7]],  # slightly outside -> clipped
        names[3]: [
            [0.1, 0.1, 40.0, 0.5],
            [0.2, 0.2, 0.4, 0.4],
        ],  # one pixel box among normalised ones
        names[4]: [],
        "not-an-image": [[0.1, 0.1, 0.2, 0.2]],
    }
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(mixed).replace("NaN", "NaN"))
    out, counts = BoxFile(path).load_training(table, 64, set(names[:6]))
    assert counts["rejected"]["empty_or_inverted"] == 1
    assert counts["rejected"]["nan_or_inf"] == 1
    assert counts["rejected"]["pixel_coordinates"] == 1
    assert counts["clipped_to_unit"] == 1
    assert counts["unknown_images"] == 1
    assert counts["targets_missing_from_file"] == 1  # names[5]
    assert counts["targets_without_boxes"] == 2  # names[1] (all rejected), names[4] ([])
    assert set(out) == {table.index[n] for n in names[:4] if n != names[1]}
    # A sidecar that disagrees on an image's size rejects that image's boxes.
    meta = {"images": {names[0]: {"size": [1, 1]}}}
    (tmp_path / "mixed.meta.json").write_text(json.dumps(meta))
    out, counts = BoxFile(path).load_training(table, 64, set(names[:6]))
    assert counts["rejected"]["size_mismatch"] == 2 and table.index[names[0]] not in out


def test_the_seed_box_file_loads_as_a_training_file(shared_cirr, tmp_path):
    """The seed's own (YOLO, pixel-free) train box file passes validation on the real names."""
    from cirflow.data.box_format import check_box
    from cirflow.data.regions import CLIP_TOLERANCE

    seed = json.loads((shared_cirr / "seed_boxes_yolo_train_100.json").read_text())
    problems = [check_box(b, CLIP_TOLERANCE)[1] for boxes in seed.values() for b in boxes]
    assert problems and all(p is None for p in problems)


# ----------------------------------------------------------------------------------- stage 2
def test_stage2_starts_from_stage1_weights(demo_root, tmp_path):
    from cirflow.train.config import TrainSettings
    from cirflow.train.loop import Trainer, train

    common = dict(
        cirr_root=str(demo_root),
        preset="tiny_scratch",
        batch_size=8,
        learning_rate=1e-3,
        num_workers=0,
        progress=False,
    )
    train(TrainSettings(out=str(tmp_path / "s1"), num_epochs=1, **common))
    gt = json.loads((demo_root / "boxes_gt.json").read_text())
    box_file = _write(
        tmp_path / "train.json", {n: v for n, v in gt.items() if n.startswith("train")}
    )
    s2 = Trainer(
        TrainSettings(
            out=str(tmp_path / "s2"),
            num_epochs=1,
            region_mode="aux",
            box_file=str(box_file),
            init_checkpoint=str(tmp_path / "s1" / "best.pt"),
            **common,
        )
    )
    s2.build()
    stage1 = torch.load(tmp_path / "s1" / "best.pt", weights_only=True)["state_dict"]
    own = s2.model.state_dict()
    assert set(own) - set(stage1) == {"region_proj.weight", "region_proj.bias", "region_temp"}
    for k, v in stage1.items():
        assert torch.equal(own[k], v), k
    assert s2.box_counts["targets_with_boxes"] > 0
    state = s2.run()
    assert state.epoch == 1
    header = (tmp_path / "s2" / "train_metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,loss_itc,loss_rtc,loss_align,loss_region,loss_total"
    row = dict(
        zip(
            header.split(","),
            (tmp_path / "s2" / "train_metrics.csv").read_text().splitlines()[1].split(","),
            strict=True,
        )
    )
    assert float(row["loss_region"]) > 0
