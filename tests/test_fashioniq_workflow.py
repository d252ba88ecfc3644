"""FashionIQ as a dataset of the workflow: the CIRR and demo configs plan exactly the jobs they
planned before FashionIQ existed, config/presets/sprc_fashioniq.yaml is SPRC's FashionIQ
recipe, and its dry run on a hand-made FashionIQ layout plans every stage with FashionIQ's
files and no test-server files."""

import subprocess

import pytest
import torch
import yaml
from conftest import (
    REPO,
    SNAKEMAKE,
    TEST_DATA,
    make_workflow_copy,
    write_mini_cirr,
    write_mini_fashioniq,
)

from cirflow.train.config import RunFiles, TrainSettings, settings_from_config
from cirflow.train.runs import STAGES, semantic_params
from cirflow.train.schedule import one_cycle

PRESET = REPO / "config" / "presets" / "sprc_fashioniq.yaml"
DEMO_PRESET = REPO / "config" / "presets" / "demo_fashioniq.yaml"
PLANS = TEST_DATA / "plans"
STEPS_PER_EPOCH = 7


def summary(workdir, *args) -> list[str]:
    """`rule<TAB>output` of every output of the jobs `snakemake --summary` plans, sorted."""
    cmd = [str(SNAKEMAKE), "--summary", "--cores", "1", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = [line.split("\t") for line in proc.stdout.splitlines()[1:] if "\t" in line]
    return sorted(f"{r[2]}\t{r[0]}" for r in rows)


# tests/data/plans/<name>.txt were written by `snakemake --summary` at the branch point, before
# any FashionIQ code (the commit before "Dataset seam"): the same configs must plan the same jobs.
CIRR_CONFIGS = {
    "demo_all": ("all",),
    "demo_ablation": ("ablation",),
    "yolo_demo_all": ("all", "--configfile", "config/presets/yolo_demo.yaml"),
    "yolo_demo_ablation": ("ablation", "--configfile", "config/presets/yolo_demo.yaml"),
    "cirr_tiny_all": ("all", "--configfile", "cirr.yaml"),
    "cirr_tiny_ablation": ("ablation", "--configfile", "cirr.yaml"),
}


@pytest.fixture(scope="module")
def cirr_workdir(tmp_path_factory):
    workdir = make_workflow_copy(tmp_path_factory.mktemp("wf"))
    root = tmp_path_factory.mktemp("cirr")
    write_mini_cirr(root)
    config = {
        "dataset": {"name": "cirr", "cirr_root": str(root)},
        "model": {"preset": "tiny_scratch"},
        "ablation": {"runs": None},
    }
    (workdir / "cirr.yaml").write_text(yaml.safe_dump(config))
    return workdir


@pytest.mark.parametrize("name", CIRR_CONFIGS)
def test_cirr_and_demo_configs_plan_the_jobs_they_planned_before(cirr_workdir, name):
    expected = (PLANS / f"{name}.txt").read_text().splitlines()
    assert summary(cirr_workdir, *CIRR_CONFIGS[name]) == expected


@pytest.fixture(scope="module")
def preset_config() -> dict:
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    extra = yaml.safe_load(PRESET.read_text())

    def merge(a, b):
        return {
            k: merge(a.get(k, {}), v) if isinstance(v, dict) else v for k, v in {**a, **b}.items()
        }

    return merge(base, extra)


def stage_settings(config: dict, stage: str, root) -> TrainSettings:
    files = RunFiles(str(root), "o", box_file="b.json" if stage == "stage2" else None)
    return settings_from_config(
        files, config["model"], semantic_params(config["train"], stage), config["train"]
    )


def test_preset_stage1_is_sprcs_fashioniq_recipe(preset_config, tmp_path):
    s = stage_settings(preset_config, "stage1", tmp_path)
    assert preset_config["dataset"]["name"] == "fashioniq"
    assert preset_config["model"]["preset"] == "pretrain"
    assert (s.num_epochs, s.batch_size, s.learning_rate, s.weight_decay) == (30, 128, 2e-5, 0.05)
    # SPRC's FashionIQ loop sums its losses unweighted.
    assert (s.loss_rtc, s.loss_align) == (1.0, 1.0)
    assert (s.batching, s.negatives, s.mask_false_negatives) == ("random", "targets", False)
    assert (s.validation_frequency, s.grad_clip, s.amp) == (1, None, True)


def test_preset_schedule_is_sprcs_fashioniq_onecycle(preset_config, tmp_path):
    s = stage_settings(preset_config, "stage1", tmp_path)

    def optimizer():
        p = torch.nn.Parameter(torch.zeros(2))
        return torch.optim.AdamW([p], lr=1.0, betas=(0.9, 0.98), eps=1e-7, weight_decay=0.05)

    ours = one_cycle(
        optimizer(), s.learning_rate, STEPS_PER_EPOCH * s.schedule_length, s.pct_start, s.div_factor
    )
    # blip_fine_tune_2.py (FashionIQ), written out with its own numbers:
    sprc = torch.optim.lr_scheduler.OneCycleLR(
        optimizer(), max_lr=2e-5, pct_start=1.5 / 30, div_factor=100.0,
        steps_per_epoch=STEPS_PER_EPOCH, epochs=30,
    )  # fmt: skip
    for _ in range(30 * STEPS_PER_EPOCH):
        assert ours.get_last_lr()[0] == pytest.approx(sprc.get_last_lr()[0], rel=1e-12, abs=0)
        for scheduler in (ours, sprc):
            scheduler.optimizer.step()
            scheduler.step()


@pytest.fixture(scope="module")
def fiq_workdir(tmp_path_factory):
    workdir = make_workflow_copy(tmp_path_factory.mktemp("wf"))
    root = tmp_path_factory.mktemp("fiq")
    write_mini_fashioniq(root)
    (workdir / "my_fiq.yaml").write_text(yaml.safe_dump({"dataset": {"fashioniq_root": str(root)}}))
    return workdir


def dry_run(workdir, *configfiles, **kw):
    cmd = [str(SNAKEMAKE), "-n", "--cores", "1", "--configfile", *map(str, configfiles)]
    for key, value in kw.items():
        cmd += ["--config", f"{key}={value}"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_preset_dry_run_on_a_fashioniq_layout_plans_every_stage(fiq_workdir):
    code, out = dry_run(fiq_workdir, PRESET, "my_fiq.yaml")
    assert code == 0, out[-4000:]
    for stage in STAGES:
        assert f"results/fashioniq/models/{stage}/best.pt" in out
        assert f"results/fashioniq/eval/{stage}/val_metrics.json" in out
    assert "results/fashioniq/eval/comparison.csv" in out
    assert "results/fashioniq/report/results.html" in out
    for category in ("dress", "shirt", "toptee"):
        assert f"captions/cap.{category}.train.json" in out
    # No test server: no submission files, and nothing reads the test split.
    assert "submission" not in out and ".test.json" not in out
    assert "boxes/saliency/train.json" in out and "boxes/saliency/val.json" in out
    assert "pretrain_backbone" not in out  # real FashionIQ starts from the preset's weights


def test_a_fashioniq_config_names_what_it_needs(fiq_workdir):
    code, out = dry_run(fiq_workdir, PRESET)
    assert code != 0 and "dataset.fashioniq_root" in out
    code, out = dry_run(fiq_workdir, PRESET, "my_fiq.yaml", boxes="{'splits': ['train', 'test1']}")
    assert code != 0 and "boxes.splits: test1 is no split of dataset fashioniq" in out
    batching = "{'stage1': {'batching': 'img_set'}}"
    code, out = dry_run(fiq_workdir, PRESET, "my_fiq.yaml", train=batching)
    assert code != 0 and "train.stage1.batching: img_set" in out and "use random" in out


def job_counts(out: str) -> dict[str, int]:
    """The dry run's "Job stats" table: rule -> jobs."""
    table = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in table.splitlines()[3:]]
    return {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[0] != "total"}


def test_the_fashioniq_demo_plans_its_dataset_first_stage_and_every_stage(tmp_path):
    workdir = make_workflow_copy(tmp_path / "wf")
    code, out = dry_run(workdir, DEMO_PRESET)
    assert code == 0, out[-4000:]
    assert job_counts(out) == {
        "demo_fashioniq_dataset": 1,
        # train (shards 0 and 1 of 2, and the whole split) and val
        "image_manifest": 4,
        "detect_shard": 3,
        "pretrain_backbone": 1,
        "image_features": 3,
        "merge_boxes": 2,
        "box_stats": 2,
        "train": 3,
        "box_report": 1,
        "evaluate": 3,
        "compare_stages": 1,
        "results_report": 1,
        "all": 1,
    }
    assert "results/demo_fashioniq/backbone/backbone.pth" in out
    assert "submission" not in out
    # The demo's ground truth scores the boxes (box_stats' quality).
    assert "results/demo_fashioniq/dataset/boxes_gt.json" in out


def test_the_fashioniq_demo_ablation_plans_its_runs_with_its_own_box_sources(tmp_path):
    workdir = make_workflow_copy(tmp_path / "wf")
    cmd = [str(SNAKEMAKE), "ablation", "-n", "--cores", "1", "--configfile", str(DEMO_PRESET)]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    counts = job_counts(out)
    # 5 runs x 3 seeds, each trained and evaluated on val; stage 1 once; gt boxes once.
    assert (counts["ablation_train"], counts["ablation_evaluate"]) == (15, 15)
    assert (counts["train"], counts["gt_boxes"], counts["ablation"]) == (1, 1, 1)
    assert "results/demo_fashioniq/boxes/gt/train.json" in out
    # Without the preset's runs, the CIRR demo's edited boxes are named as missing here.
    runs = ["--config", "ablation={'runs': ['none', 'aux_edited']}"]
    proc = subprocess.run([*cmd, *runs], cwd=workdir, capture_output=True, text=True, timeout=300)
    code, out = proc.returncode, proc.stdout + proc.stderr
    assert code != 0 and "box source edited exists only for the demo (dataset.name: demo)" in out


# The FashionIQ demo at a tiny size, every stage on the real path (about a minute on 2 cores).
TINY_FIQ_DEMO = {
    "dataset": {"name": "demo_fashioniq"},
    "demo_fashioniq": {
        "seed": 0, "train_triplets": 24, "val_triplets": 12, "test_triplets": 3, "image_size": 64,
    },
    "boxes": {"splits": ["train", "val"]},
    "model": {"weights": "results/demo_fashioniq/backbone/backbone.pth"},
    "pretrain": {"epochs": 1, "families_per_batch": 4, "threads": 1},
    "train": {
        "num_workers": 0,
        "resources": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 1},
        "stage1": {"num_epochs": 2, "batch_size": 8, "batching": "random"},
        "stage2": {"num_epochs": 1, "batch_size": 8, "batching": "random"},
    },
    "ablation": {"runs": ["none", "token_loss_gt"]},
}  # fmt: skip


@pytest.mark.slow
def test_the_whole_fashioniq_demo_workflow_runs_at_a_tiny_size(tmp_path):
    import json

    from conftest import run_snakemake

    from cirflow.evaluate.fashioniq_recall import metric_keys

    workdir = make_workflow_copy(tmp_path / "wf", TINY_FIQ_DEMO)
    run_snakemake(workdir, timeout=600)
    results = workdir / "results" / "demo_fashioniq"
    for stage in STAGES:
        metrics = json.loads((results / "eval" / stage / "val_metrics.json").read_text())
        assert list(metrics) == list(metric_keys())
        details = json.loads((results / "eval" / stage / "val_details.json").read_text())
        assert set(details["categories"]) == {"dress", "shirt", "toptee"}
        assert not (results / "eval" / stage / "submission").exists()
        header = (results / "models" / stage / "validation_metrics.csv").read_text().split()[0]
        assert header == ",".join(["epoch", *metric_keys()])
    rows = (results / "eval" / "comparison.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == list(metric_keys())
    page = (results / "report" / "results.html").read_text()
    assert "on FashionIQ val" in page and "avg recall" in page
    again = run_snakemake(workdir, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
