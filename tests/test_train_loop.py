"""The training loop on a tiny demo dataset: outputs, exact resume, NaN stop, frozen ViT, CLI."""

import json
import shutil

import pytest
import torch

from cirflow.errors import CirflowError
from cirflow.train.config import TrainSettings
from cirflow.train.loop import Trainer, train


@pytest.fixture(scope="module")
def demo_root(tiny_demo):
    """conftest's shared tiny demo (read only here)."""
    return tiny_demo


def settings(root, out, **kw):
    base = dict(
        cirr_root=str(root),
        out=str(out),
        preset="tiny_scratch",
        num_epochs=2,
        batch_size=8,
        learning_rate=1e-3,
        num_workers=0,
        progress=False,
        threads=2,
        batching="img_set",
    )
    base.update(kw)
    return TrainSettings(**base)


def read(path):
    return path.read_text()


class Killed(Exception):
    pass


def tb_scalars(folder):
    """{tag: [(step, value)]} of the TensorBoard event files in `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def csv_scalars(out):
    """The same {tag: [(step, value)]} read from the run's two CSV files."""
    scalars = {}
    for prefix, name in (("train", "train_metrics.csv"), ("val", "validation_metrics.csv")):
        header, *rows = [line.split(",") for line in read(out / name).splitlines()]
        for row in rows:
            for column, value in zip(header[1:], row[1:], strict=True):
                scalars.setdefault(f"{prefix}/{column}", []).append((int(row[0]), float(value)))
    return scalars


def test_outputs_and_columns(demo_root, tmp_path):
    out = tmp_path / "run"
    state = train(settings(demo_root, out))
    assert state.epoch == 2 and state.best_epoch in (1, 2)
    train_csv = read(out / "train_metrics.csv").splitlines()
    assert train_csv[0] == "epoch,loss_itc,loss_rtc,loss_align,loss_total"
    assert len(train_csv) == 3
    val_csv = read(out / "validation_metrics.csv").splitlines()
    assert val_csv[0] == (
        "epoch,group_recall_at1,group_recall_at2,group_recall_at3,recall_at1,recall_at5,recall_at10,"
        "recall_at50,mean(R@5+R_s@1),arithmetic_mean,harmonic_mean,geometric_mean"
    )
    hp = json.loads(read(out / "hparams.json"))
    assert (
        hp["steps_per_epoch"] == 4
        and hp["total_steps"] == 8
        and hp["settings"]["learning_rate"] == 1e-3
    )
    best = torch.load(out / "best.pt", weights_only=True)
    last = torch.load(out / "last.pt", weights_only=True)
    assert best["format"] == "cirflow-sprc/2" and best["model"]["preset"] == "tiny_scratch"
    assert best["model"]["region_mode"] == "none"
    assert {"optimizer", "scheduler", "scaler", "rng", "epoch"} <= set(last)
    assert last["epoch"] == 2
    # Trainable ViT (tiny): saved. best.pt holds weights only (no optimizer).
    assert any(k.startswith("visual_encoder.") for k in best["state_dict"])
    assert "optimizer" not in best
    assert (out / "best.pt").stat().st_size < (out / "last.pt").stat().st_size
    # TensorBoard: every CSV number, step = epoch, in one folder beside them.
    tb = tb_scalars(out / "tb")
    expected = csv_scalars(out)
    assert set(tb) == set(expected) and "train/loss_total" in tb and "val/recall_at1" in tb
    for tag, points in expected.items():
        assert [s for s, _ in tb[tag]] == [s for s, _ in points], tag
        assert [v for _, v in tb[tag]] == pytest.approx([v for _, v in points], rel=1e-5), tag


def test_killed_run_resumes_to_identical_metrics(demo_root, tmp_path):
    full = tmp_path / "full"
    train(settings(demo_root, full))

    part = tmp_path / "part"

    def kill_after_first(epoch, row):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(settings(demo_root, part), on_epoch_end=kill_after_first)
    assert torch.load(part / "last.pt", weights_only=True)["epoch"] == 1
    # Snakemake deletes the declared outputs of a failed job before it runs again.
    for name in ("best.pt", "train_metrics.csv", "validation_metrics.csv", "hparams.json"):
        (part / name).unlink(missing_ok=True)
    state = train(settings(demo_root, part))
    assert state.epoch == 2
    assert json.loads(read(part / "hparams.json"))["resumed_after_epoch"] == 1
    assert read(part / "train_metrics.csv") == read(full / "train_metrics.csv")
    assert read(part / "validation_metrics.csv") == read(full / "validation_metrics.csv")
    a = torch.load(full / "best.pt", weights_only=True)["state_dict"]
    b = torch.load(part / "best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The resumed run's event files say what the uninterrupted run's say, once per epoch.
    assert tb_scalars(part / "tb") == tb_scalars(full / "tb")
    assert len(list((part / "tb").iterdir())) == 1 and not list(part.glob(".tb.*"))


def test_no_resume_from_other_settings_or_a_finished_run(demo_root, tmp_path, caplog):
    out = tmp_path / "run"

    def kill(epoch, row):
        raise Killed

    with pytest.raises(Killed):
        train(settings(demo_root, out), on_epoch_end=kill)
    caplog.set_level("INFO")
    state = train(settings(demo_root, out, learning_rate=5e-4, num_epochs=1))
    assert "other settings" in caplog.text
    assert json.loads(read(out / "hparams.json"))["resumed_after_epoch"] == 0
    assert state.epoch == 1


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(
    demo_root, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    trainer = Trainer(settings(demo_root, out, num_epochs=3))
    original = trainer.train_epoch

    def poisoned(epoch):
        if epoch == 1:
            orig_forward = trainer.model.forward

            def nan_forward(*a, **k):
                losses = orig_forward(*a, **k)
                losses["loss_itc"] = losses["loss_itc"] * float("nan")
                return losses

            monkeypatch.setattr(trainer.model, "forward", nan_forward)
        return original(epoch)

    trainer.train_epoch = poisoned
    with pytest.raises(CirflowError, match=r"non-finite loss at epoch 2, step 1.*last\.pt"):
        trainer.run()
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] == 1
    assert all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )


def test_frozen_vit_stays_frozen_in_training(demo_root, tmp_path):
    trainer = Trainer(settings(demo_root, tmp_path / "frozen", num_epochs=1, freeze_vit=True))
    trainer.build()
    before = {k: v.clone() for k, v in trainer.model.visual_encoder.state_dict().items()}
    qf_before = trainer.model.Qformer.bert.embeddings.word_embeddings.weight.detach().clone()
    trainer.train_epoch(0)
    for k, v in trainer.model.visual_encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(trainer.model.Qformer.bert.embeddings.word_embeddings.weight, qf_before)
    # The checkpoint leaves the frozen ViT out.
    from cirflow.model.checkpoints import saved_state_dict

    assert not any(k.startswith("visual_encoder.") for k in saved_state_dict(trainer.model))


def test_cached_and_streamed_images_give_the_same_batches(demo_root, tmp_path):
    a = Trainer(settings(demo_root, tmp_path / "a", image_cache="memory"))
    a.build()
    b = Trainer(settings(demo_root, tmp_path / "b", image_cache="none"))
    b.build()
    assert a.train_table.cached and not b.train_table.cached
    for x, y in zip(
        a.train_data.batches(8, seed=0, epoch=1),
        b.train_data.batches(8, seed=0, epoch=1, num_workers=1),
        strict=True,
    ):
        assert torch.equal(x.indices, y.indices)
        assert torch.equal(x.ref, y.ref) and torch.equal(x.target, y.target)
        assert torch.equal(x.input_ids, y.input_ids)


def test_img_set_batching_keeps_sets_together(demo_root, tmp_path):
    t = Trainer(settings(demo_root, tmp_path / "x"))
    t.build()
    data = t.train_data
    order = data.permutation(0, 0, True, "img_set").tolist()
    sets = [data.triplets[i]["img_set"]["id"] for i in order]
    # Each set is one contiguous run.
    runs = [s for k, s in enumerate(sets) if k == 0 or sets[k - 1] != s]
    assert len(runs) == len(set(sets))
    assert sorted(order) == list(range(len(data)))
    assert (
        data.permutation(0, 0, True, "random").tolist()
        != data.permutation(0, 1, True, "random").tolist()
    )


def test_cli_takes_the_seed_flags_then_evaluates_and_writes_the_submission(demo_root, tmp_path):
    from cirflow.cli import main

    out = tmp_path / "cli"
    rc = main(
        [
            "train",
            "--dataset",
            "CIRR",
            "--blip-model-name",
            "blip2_cir_align_prompt",
            "--backbone",
            "tiny_scratch",
            "--num-epochs",
            "1",
            "--batch-size",
            "8",
            "--learning-rate",
            "1e-3",
            "--loss-align",
            "0.4",
            "--loss-rtc",
            "0.4",
            "--validation-frequency",
            "1",
            "--save-training",
            "--save-best",
            "--cirr-root",
            str(demo_root),
            "--out",
            str(out),
            "--num-workers",
            "0",
        ]
    )
    assert rc == 0 and (out / "best.pt").is_file()
    metrics = tmp_path / "val_metrics.json"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(out / "best.pt"),
                "--cirr-root",
                str(demo_root),
                "--out",
                str(metrics),
                "--num-workers",
                "0",
            ]
        )
        == 0
    )
    m = json.loads(metrics.read_text())
    assert set(m) >= {"recall_at1", "group_recall_at3", "arithmetic_mean"}
    # Same numbers as the validation inside training.
    row = dict(
        zip(
            *(line.split(",") for line in read(out / "validation_metrics.csv").splitlines()[:2]),
            strict=True,
        )
    )
    assert float(row["recall_at10"]) == pytest.approx(m["recall_at10"], abs=1e-4)
    sub = tmp_path / "sub"
    assert (
        main(
            [
                "submission",
                "--checkpoint",
                str(out / "best.pt"),
                "--cirr-root",
                str(demo_root),
                "--out-dir",
                str(sub),
                "--num-workers",
                "0",
            ]
        )
        == 0
    )
    recall = json.loads((sub / "recall.json").read_text())
    subset = json.loads((sub / "recall_subset.json").read_text())
    assert (
        recall["version"] == "rc2"
        and recall["metric"] == "recall"
        and subset["metric"] == "recall_subset"
    )
    assert len(recall) == 2 + 8 and all(
        len(v) == 3 for k, v in subset.items() if k not in ("version", "metric")
    )
    # Bad seed flags are rejected with a message, not a traceback.
    assert (
        main(["train", "--dataset", "FashionIQ", "--cirr-root", str(demo_root), "--out", str(out)])
        == 2
    )


def test_missing_box_file_and_bad_settings(demo_root, tmp_path):
    with pytest.raises(CirflowError, match="needs a box file"):
        train(settings(demo_root, tmp_path / "r", region_mode="aux"))
    with pytest.raises(CirflowError, match="box file not found"):
        train(
            settings(
                demo_root,
                tmp_path / "r",
                region_mode="aux",
                box_file=str(tmp_path / "nope.json"),
            )
        )
    with pytest.raises(CirflowError, match="larger than"):
        train(settings(demo_root, tmp_path / "r", batch_size=1000))
    shutil.rmtree(tmp_path / "r", ignore_errors=True)


def test_adamw_is_fused_on_cpu_and_updates_as_the_per_tensor_loop():
    """cirflow.train.optimizer.adamw: SPRC's AdamW (betas 0.9/0.98, eps 1e-7) through torch's
    fused kernel on CPU (the speed-up, benchmarks/bench_demo.py), the same update as the
    per-tensor loop within float rounding; per-group options (a region group's lr) kept."""
    from cirflow.train.optimizer import adamw

    torch.manual_seed(0)
    weights = [torch.randn(7, 5, requires_grad=True), torch.randn(5, requires_grad=True)]
    twins = [w.detach().clone().requires_grad_(True) for w in weights]
    fused = adamw([{"params": weights[:1]}, {"params": weights[1:], "lr": 3e-3}], 1e-3, 0.05)
    loop = torch.optim.AdamW(
        [{"params": twins[:1]}, {"params": twins[1:], "lr": 3e-3}],
        lr=1e-3,
        betas=(0.9, 0.98),
        eps=1e-7,
        weight_decay=0.05,
        foreach=False,
    )
    assert fused.defaults["fused"] and fused.param_groups[1]["lr"] == 3e-3
    for _ in range(3):
        for opt, params in ((fused, weights), (loop, twins)):
            opt.zero_grad()
            (params[0] * params[1]).sin().sum().backward()
            opt.step()
    for w, t in zip(weights, twins, strict=True):
        torch.testing.assert_close(w, t, atol=1e-6, rtol=1e-5)
