"""config/presets/sprc_cirr.yaml: SPRC's published CIRR recipe, its OneCycle schedule (80 epochs
long while training 50, div_factor 25) against torch's OneCycleLR built with SPRC's own numbers,
the default schedule unchanged, and the preset's dry run on a CIRR-layout dataset."""

import subprocess

import pytest
import torch
import yaml
from conftest import REPO, SNAKEMAKE, make_workflow_copy, write_mini_cirr

from cirflow.data.tables import Batch
from cirflow.errors import CirflowError
from cirflow.train.config import RunFiles, TrainSettings, fingerprint, settings_from_config
from cirflow.train.runs import STAGES, semantic_params
from cirflow.train.schedule import one_cycle

PRESET = REPO / "config" / "presets" / "sprc_cirr.yaml"
STEPS_PER_EPOCH = 7  # any number: CIRR train (28,225 triplets / 128) has 220


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def _settings(stage: str, config: dict, root) -> TrainSettings:
    files = RunFiles(str(root), "unused", box_file="boxes.json" if stage == "stage2" else None)
    return settings_from_config(
        files,
        model_cfg=config["model"],
        train_params=semantic_params(config["train"], stage),
        runtime_cfg=config["train"],
    )


@pytest.fixture(scope="module")
def preset_config() -> dict:
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    return _merge(base, yaml.safe_load(PRESET.read_text()))


def _schedule(s: TrainSettings):
    """The trainer's schedule of settings `s` (`cirflow.train.loop.Trainer.build`)."""
    total = STEPS_PER_EPOCH * s.schedule_length
    return one_cycle(_optimizer(), s.learning_rate, total, s.pct_start, s.div_factor)


def _optimizer():
    param = torch.nn.Parameter(torch.zeros(3))
    # As the trainer and SPRC's script: AdamW betas (0.9, 0.98), eps 1e-7, weight decay 0.05.
    return torch.optim.AdamW([param], lr=1.0, betas=(0.9, 0.98), eps=1e-7, weight_decay=0.05)


def _trace(scheduler, steps: int) -> list[tuple[float, float]]:
    """(learning rate, beta1) before each of `steps` optimizer steps."""
    out = []
    for _ in range(steps):
        group = scheduler.optimizer.param_groups[0]
        out.append((group["lr"], group["betas"][0]))
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_preset_stage1_is_sprcs_recipe(preset_config, tmp_path):
    s = _settings("stage1", preset_config, tmp_path)
    assert preset_config["model"]["preset"] == "pretrain"
    assert (s.num_epochs, s.batch_size, s.learning_rate) == (50, 128, 1e-5)
    assert (s.loss_rtc, s.loss_align, s.weight_decay) == (0.4, 0.4, 0.05)
    assert (s.batching, s.negatives, s.validation_frequency, s.grad_clip) == (
        "random",
        "targets",
        1,
        None,
    )
    assert (s.schedule_epochs, s.div_factor) == (80, 25) and s.amp
    assert s.mask_false_negatives is False  # SPRC's plain contrastive losses


def test_false_negative_masking_switch(preset_config, tmp_path):
    """Masking on (default): the losses get the image ids; off (SPRC): they get none."""
    from cirflow.train.loop import Trainer

    pixels = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    ids = torch.zeros(2, 3, dtype=torch.long)
    batch = Batch(None, torch.tensor([3, 3]), torch.tensor([1, 2]), pixels, pixels, ids, ids)
    sprc = Trainer(_settings("stage1", preset_config, tmp_path))
    default = Trainer(TrainSettings(cirr_root="x", out="y"))
    for trainer in (sprc, default):
        trainer.device = torch.device("cpu")
    plain = sprc.model_batch(batch)
    assert (plain.target_ids, plain.reference_ids) == (None, None)
    masked = default.model_batch(batch)
    assert masked.target_ids.tolist() == [3, 3] and masked.reference_ids.tolist() == [1, 2]
    with pytest.raises(
        CirflowError, match=r"--no-false-negative-masking needs --negatives: targets"
    ):
        TrainSettings(
            cirr_root=str(tmp_path), out="o", mask_false_negatives=False, negatives="batch_images"
        ).check()


def test_preset_schedule_is_sprcs_onecycle(preset_config, tmp_path):
    s = _settings("stage1", preset_config, tmp_path)
    ours = _schedule(s)
    # blip_fine_tune_2.py (CIRR), written out with its own numbers:
    sprc = torch.optim.lr_scheduler.OneCycleLR(
        _optimizer(), max_lr=1e-5, pct_start=1 / 50, steps_per_epoch=STEPS_PER_EPOCH, epochs=80
    )
    steps = s.num_epochs * STEPS_PER_EPOCH  # SPRC stops stepping after 50 of the 80 epochs
    a, b = _trace(ours, steps), _trace(sprc, steps)
    for step in (0, 1, 5, 11, 12, 100, 200, steps - 1):
        assert a[step][0] == pytest.approx(b[step][0], rel=1e-12, abs=0), step
        assert a[step][1] == pytest.approx(b[step][1], rel=1e-12), step
    assert a[0][0] == pytest.approx(1e-5 / 25)  # torch's default div_factor
    peak = max(range(steps), key=lambda i: a[i][0])
    # Warm-up ends at step 1/50 · 80 · 7 − 1 = 10.2: the peak falls on step 10 or 11.
    assert a[peak][0] == pytest.approx(1e-5, rel=1e-4) and peak in (10, 11)
    assert a[-1][0] > 1e-6  # 50 of 80 epochs: the learning rate never anneals to its minimum


def test_default_schedule_is_unchanged(tmp_path):
    """Without the new keys: OneCycle over the run's real steps, div_factor 100 (as before)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    s = _settings("stage1", config, tmp_path)
    assert (s.schedule_epochs, s.div_factor) == (None, 100.0)
    assert TrainSettings(cirr_root="x", out="y").div_factor == 100.0
    ours = _schedule(s)
    before = torch.optim.lr_scheduler.OneCycleLR(
        _optimizer(),
        max_lr=s.learning_rate,
        total_steps=STEPS_PER_EPOCH * s.num_epochs,
        pct_start=min(s.warmup_epochs / s.num_epochs, 0.5),
        div_factor=100.0,
    )
    steps = s.num_epochs * STEPS_PER_EPOCH
    assert _trace(ours, steps) == _trace(before, steps)


def test_schedule_keys_are_checked_and_fingerprinted(tmp_path):
    root = tmp_path / "cirr"
    write_mini_cirr(root)
    base = TrainSettings(cirr_root=str(root), out="o", num_epochs=50)
    with pytest.raises(CirflowError, match=r"--schedule-epochs \(40\) must be ≥"):
        TrainSettings(cirr_root=str(root), out="o", num_epochs=50, schedule_epochs=40).check()
    with pytest.raises(CirflowError, match=r"--div-factor must be > 0"):
        TrainSettings(cirr_root=str(root), out="o", div_factor=0).check()
    prints = {
        fingerprint(base),
        fingerprint(TrainSettings(cirr_root=str(root), out="o", num_epochs=50, schedule_epochs=80)),
        fingerprint(TrainSettings(cirr_root=str(root), out="o", num_epochs=50, div_factor=25)),
    }
    assert len(prints) == 3


def test_cli_flags_reach_the_settings(monkeypatch, tmp_path):
    import cirflow.train.loop as loop
    from cirflow.cli import main

    seen = {}

    class State:
        best_epoch, best_score = 1, 0.0

    monkeypatch.setattr(loop, "train", lambda settings: seen.setdefault("s", settings) and State)
    argv = ["train", "--backbone", "tiny", "--cirr-root", str(tmp_path), "--out", str(tmp_path)]
    flags = ["--schedule-epochs", "80", "--div-factor", "25", "--warmup-epochs", "1.6"]
    main([*argv, *flags, "--no-false-negative-masking"])
    s = seen.pop("s")
    assert (s.schedule_epochs, s.div_factor, s.warmup_epochs) == (80, 25, 1.6)
    assert s.mask_false_negatives is False
    main(argv)
    s = seen.pop("s")
    assert (s.schedule_epochs, s.div_factor, s.mask_false_negatives) == (None, 100.0, True)


def test_preset_dry_run_on_a_cirr_layout_dataset(tmp_path):
    """snakemake -n with the preset (then a file naming the dataset root) plans the whole run."""
    root = tmp_path / "cirr"
    write_mini_cirr(root)
    workdir = make_workflow_copy(tmp_path / "wf")
    (workdir / "my_cirr.yaml").write_text(yaml.safe_dump({"dataset": {"cirr_root": str(root)}}))
    cmd = [str(SNAKEMAKE), "-n", "--cores", "1", "--configfile", str(PRESET), "my_cirr.yaml"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for rule in ("train", "evaluate", "compare_stages"):
        assert f"rule {rule}:" in out, rule
    for stage in STAGES:
        assert f"results/cirr/models/{stage}/best.pt" in out
    # Without a dataset root the preset names the key to set.
    bare = [str(SNAKEMAKE), "-n", "--cores", "1", "--configfile", str(PRESET)]
    proc = subprocess.run(bare, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "dataset.cirr_root" in proc.stdout + proc.stderr
