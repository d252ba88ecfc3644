"""One unreadable image stops nothing: found once before any step, left out with a count,
past a fraction an error with the list; evaluation leaves bad gallery images out and the
test-server files keep every pairid (library level, tiny demo, both image-cache modes)."""

import json
import logging
import shutil

import pytest
import torch
from conftest import tiny_settings

from cirflow.data.cirr import CirrDataset
from cirflow.data.tables import ImageTable
from cirflow.errors import CirflowError
from cirflow.train.loop import Trainer, train


@pytest.fixture
def demo(tiny_demo, tmp_path):
    """A copy of the tiny demo that a test may damage."""
    return shutil.copytree(tiny_demo, tmp_path / "demo")


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def image_file(root, split, name):
    return CirrDataset(root, split, with_captions=False).image_path(name)


def _settings(root, out, **kw):
    return tiny_settings(root, out, **kw)


def test_check_images_names_each_unreadable_image_and_why(demo):
    from cirflow.data.images import check_images

    ds = CirrDataset(demo, "val", with_captions=False)
    names = ds.image_names()[:5]
    truncate(ds.image_path(names[1]))
    ds.image_path(names[2]).unlink()
    ds.image_path(names[3]).write_bytes(b"")
    check = check_images({n: ds.image_path(n) for n in names}, workers=2)
    assert list(check.unreadable) == names[1:4]
    assert "cannot decode image" in check.unreadable[names[1]]
    assert check.unreadable[names[2]] == "file not found"
    assert check.unreadable[names[3]] == "empty file (0 bytes)"
    assert set(check.sizes) == {names[0], names[4]} and check.checked == 5


def test_both_cache_modes_find_them_when_the_table_is_built(demo):
    ds = CirrDataset(demo, "train")
    bad = [ds.triplets[0]["reference"], ds.triplets[3]["target_hard"]]
    truncate(ds.image_path(bad[0]))
    ds.image_path(bad[1]).unlink()
    tables = {mode: ImageTable(ds, 64, mode, 0, progress=False) for mode in ("memory", "none")}
    for table in tables.values():
        assert sorted(table.unreadable) == sorted(bad)
        for name in bad:
            assert torch.count_nonzero(table.get([table.index[name]])) == 0  # reads as black
    everything = list(range(len(ds.images)))
    assert torch.equal(tables["memory"].get(everything), tables["none"].get(everything))


def test_training_leaves_out_the_triplets_of_an_unreadable_image(demo, tmp_path, caplog):
    ds = CirrDataset(demo, "train")
    bad = ds.triplets[0]["target_hard"]
    needing = [t["pairid"] for t in ds.triplets if bad in (t["reference"], t["target_hard"])]
    truncate(ds.image_path(bad))
    val = CirrDataset(demo, "val")
    bad_val = val.triplets[0]["reference"]
    truncate(val.image_path(bad_val))
    caplog.set_level(logging.INFO)
    out = tmp_path / "run"
    # image_cache none: the mode meant for real CIRR, where a bad val image used to stop the
    # job at the first validation, after a whole epoch.
    state = train(_settings(demo, out, image_cache="none", max_unreadable_fraction=0.1))
    assert state.epoch == 1 and (out / "last.pt").is_file()
    hp = json.loads((out / "hparams.json").read_text())
    assert hp["unreadable"]["train"]["images"] == 1
    assert hp["unreadable"]["train"]["triplets_left_out"] == len(needing) >= 1
    assert hp["unreadable"]["train"]["triplets_used"] == len(ds.triplets) - len(needing)
    assert hp["unreadable"]["train"]["list"][0]["image"] == bad
    assert hp["unreadable"]["val"]["images"] == 1
    assert hp["train_triplets"] == len(ds.triplets) - len(needing)
    assert f"{len(needing)} of {len(ds.triplets)} triplets left out" in caplog.text
    # The memory cache leaves out the same triplets.
    memory = Trainer(
        _settings(demo, tmp_path / "m", image_cache="memory", max_unreadable_fraction=0.1)
    )
    memory.build()
    assert memory.unreadable_counts()["train"]["triplets_left_out"] == len(needing)
    assert [t["pairid"] for t in memory.train_data.triplets] == [
        t["pairid"] for t in ds.triplets if t["pairid"] not in needing
    ]


@pytest.mark.parametrize(
    ("split", "cache"), [("train", "none"), ("val", "none"), ("train", "memory")]
)
def test_too_many_unreadable_images_stop_the_run_before_the_first_step(
    demo, tmp_path, split, cache, monkeypatch
):
    ds = CirrDataset(demo, split, with_captions=False)
    bad = ds.image_names()[:3]
    for name in bad:
        truncate(ds.image_path(name))
    steps = []
    monkeypatch.setattr(Trainer, "train_epoch", lambda self, epoch: steps.append(epoch))
    with pytest.raises(CirflowError) as info:
        train(_settings(demo, tmp_path / "run", image_cache=cache, stage="stage1"))
    message = str(info.value)
    assert f"split {split} (dataset root {demo}): 3 of {len(ds.images)} images cannot be read" in (
        message
    )
    assert "train.max_unreadable_fraction = 0.01" in message  # the workflow's key
    assert all(name in message for name in bad)
    assert steps == [] and not (tmp_path / "run/last.pt").exists()


# ---------------------------------------------------------------------------------- evaluation
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An (untrained) tiny model in the checkpoint format: evaluation needs no training."""
    from cirflow.model.checkpoints import write_best
    from cirflow.model.presets import get_preset
    from cirflow.model.sprc import SPRC

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt")
    model = SPRC(get_preset("tiny_scratch"))
    write_best(model, folder / "resume/best.pt", folder / "best.pt", 1, {}, {})
    return folder / "best.pt"


def _eval_settings(cache):
    from cirflow.evaluate.settings import EvalSettings

    return EvalSettings(
        device="cpu",
        batch_size=16,
        num_workers=0,
        image_cache=cache,
        threads=1,
        progress=False,
        max_unreadable_fraction=0.2,
    )


def test_evaluation_leaves_bad_gallery_images_out_and_lists_them(demo, checkpoint, tmp_path):
    from cirflow.evaluate.run import ScoreFiles, load_for_evaluation, score_split

    ds = CirrDataset(demo, "val")
    used = {n for t in ds.triplets for n in (t["reference"], t["target_hard"])}
    gallery_only = next(n for n in ds.image_names() if n not in used)
    target = ds.triplets[2]["target_hard"]
    needing = sorted(
        t["pairid"] for t in ds.triplets if target in (t["reference"], t["target_hard"])
    )
    truncate(ds.image_path(gallery_only))
    ds.image_path(target).unlink()
    results = {}
    for cache in ("memory", "none"):
        out = tmp_path / cache
        settings = _eval_settings(cache)
        loaded = load_for_evaluation(checkpoint, settings)
        files = ScoreFiles(out / "val_metrics.json", out / "val_details.json")
        metrics = score_split(loaded, demo, settings, files)
        details = json.loads((out / "val_details.json").read_text())
        assert sorted(e["image"] for e in details["unreadable_images"]) == sorted(
            [gallery_only, target]
        )
        assert sorted(q["pairid"] for q in details["queries_left_out"]) == needing
        assert details["gallery"] == len(ds.images) - 2
        assert details["queries"] == len(ds.triplets) - len(needing)
        results[cache] = metrics
    assert results["memory"] == results["none"]


def test_the_server_files_keep_every_pairid_when_a_reference_cannot_be_read(
    demo, checkpoint, tmp_path
):
    from cirflow.evaluate.run import SubmissionFiles, load_for_evaluation, submission_for_model

    ds = CirrDataset(demo, "test1")
    reference = ds.triplets[1]["reference"]
    truncate(ds.image_path(reference))
    fallback = sorted(t["pairid"] for t in ds.triplets if t["reference"] == reference)
    files = {}
    for cache in ("memory", "none"):
        out = tmp_path / cache
        settings = _eval_settings(cache)
        loaded = load_for_evaluation(checkpoint, settings)
        written = SubmissionFiles(
            out / "recall.json", out / "recall_subset.json", out / "details.json"
        )
        details = submission_for_model(loaded, demo, settings, written)
        recall = json.loads((out / "recall.json").read_text())
        subset = json.loads((out / "recall_subset.json").read_text())
        pairids = {str(t["pairid"]) for t in ds.triplets}
        assert set(recall) - {"version", "metric"} == pairids == set(subset) - {"version", "metric"}
        assert all(reference not in v for k, v in recall.items() if k not in ("version", "metric"))
        assert all(len(subset[p]) == 3 for p in pairids)
        assert sorted(q["pairid"] for q in details["fallback_queries"]) == fallback
        assert json.loads((out / "details.json").read_text())["unreadable_images"] == [
            {"image": reference, "error": details["unreadable_images"][0]["error"]}
        ]
        files[cache] = (recall, subset)
    assert files["memory"] == files["none"]
