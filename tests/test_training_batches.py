"""What one training step sees: each triplet's target boxes, the image ids the loss masks with,
and the random state a resumed run continues from (library level, tiny demo)."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import tiny_settings
from PIL import Image

from cirflow.data.transforms import geometry, map_boxes
from cirflow.train.loop import Trainer, train


def _settings(root, out, **kw):
    return tiny_settings(root, out, **{**dict(negatives="batch_images"), **kw})


@pytest.fixture(scope="module")
def box_file(tiny_demo, tmp_path_factory):
    """The demo's ground-truth boxes of the train images (every image has its own)."""
    gt = json.loads((tiny_demo / "boxes_gt.json").read_text())
    path = tmp_path_factory.mktemp("boxes") / "train.json"
    path.write_text(json.dumps({n: b for n, b in gt.items() if n.startswith("train")}))
    return path


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_each_triplets_boxes_are_its_targets_mapped_with_that_images_size(
    tiny_demo, box_file, tmp_path, cache
):
    trainer = Trainer(
        _settings(
            tiny_demo,
            tmp_path / "s2",
            region_mode="aux",
            box_file=str(box_file),
            image_cache=cache,
        )
    )
    trainer.build()
    data = trainer.train_data
    boxes = json.loads(box_file.read_text())
    sizes = {}
    checked = unequal_sides = differs_from_reference = 0
    for batch in data.batches(8, seed=0, epoch=0, batching="img_set"):
        for row, i in enumerate(batch.indices.tolist()):
            t = data.triplets[i]
            target, reference = t["target_hard"], t["reference"]
            for name in (target, reference):
                if name not in sizes:
                    with Image.open(data.dataset.image_path(name)) as im:
                        sizes[name] = im.size
            w, h = sizes[target]
            expected, _ = map_boxes(boxes[target], geometry(w, h, 64))
            got = batch.boxes[row][batch.box_valid[row]].numpy()
            np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=f"pairid {t['pairid']}")
            ref_w, ref_h = sizes[reference]
            from_reference, _ = map_boxes(boxes[reference], geometry(ref_w, ref_h, 64))
            checked += 1
            unequal_sides += w != h
            differs_from_reference += from_reference.shape != expected.shape or not np.allclose(
                from_reference, expected
            )
    # Guards: the data can tell a w/h swap and the reference's boxes from the right ones.
    assert checked == len(data) // 8 * 8
    assert unequal_sides > checked // 2 and differs_from_reference > checked // 2


def test_the_loop_gives_the_loss_the_image_ids_of_each_batch(tiny_demo, tmp_path):
    trainer = Trainer(_settings(tiny_demo, tmp_path / "ids"))
    trainer.build()
    forward = trainer.model.forward
    calls = []

    def recording_forward(batch, **kwargs):
        calls.append({**vars(batch), **kwargs})
        return forward(batch, **kwargs)

    trainer.model.forward = recording_forward
    trainer.train_epoch(0)
    data = trainer.train_data
    expected = list(data.batches(8, seed=0, epoch=0, batching="img_set"))
    assert len(calls) == len(expected) == trainer.steps_per_epoch
    for kwargs, batch in zip(calls, expected, strict=True):
        assert kwargs["target_ids"] is not None and kwargs["reference_ids"] is not None
        assert torch.equal(kwargs["target_ids"].cpu(), data.target_idx[batch.indices])
        assert torch.equal(kwargs["reference_ids"].cpu(), data.ref_idx[batch.indices])
        assert kwargs["reference_negatives"] is True
    # img_set batching puts a set's triplets together: duplicate targets and references that are
    # other triplets' targets occur, so the masks have something to mask.
    assert any(
        len(set(c["target_ids"].tolist())) < len(c["target_ids"])
        or set(c["target_ids"].tolist()) & set(c["reference_ids"].tolist())
        for c in calls
    )


# ------------------------------------------------------------------------------ resume + dropout
def _tiny_with_dropout(name, freeze_vit=None, vit_precision=None, weights=None):
    from cirflow.model.presets import PRESETS

    preset = PRESETS[name]
    qformer = {**preset.qformer, "hidden_dropout_prob": 0.2, "attention_probs_dropout_prob": 0.2}
    return dataclasses.replace(preset, qformer=qformer)


class Killed(Exception):
    pass


def test_resume_with_dropout_restores_the_random_state(tiny_demo, tmp_path, monkeypatch):
    monkeypatch.setattr("cirflow.model.config.get_preset", _tiny_with_dropout)
    full = tmp_path / "full"
    train(_settings(tiny_demo, full, num_epochs=2))

    # Guard: dropout is on, so the draws of the global RNG change the training.
    probe = Trainer(_settings(tiny_demo, tmp_path / "probe"))
    probe.build()
    drop = [m for m in probe.model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    assert drop

    part = tmp_path / "part"

    def kill_after_first(epoch, row):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(_settings(tiny_demo, part, num_epochs=2), on_epoch_end=kill_after_first)
    for name in ("best.pt", "train_metrics.csv", "validation_metrics.csv", "hparams.json"):
        (part / name).unlink(missing_ok=True)
    train(_settings(tiny_demo, part, num_epochs=2))
    assert json.loads((part / "hparams.json").read_text())["resumed_after_epoch"] == 1
    for name in ("train_metrics.csv", "validation_metrics.csv"):
        assert (part / name).read_text() == (full / name).read_text(), name
    a = torch.load(full / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(part / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
