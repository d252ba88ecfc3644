"""Test setup: offline (docs/design.md §8) and caches inside the work tree, before anything imports."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "false",
    "YOLO_CONFIG_DIR": str(CACHE / "ultralytics"),
    "MPLCONFIGDIR": str(CACHE / "matplotlib"),
    "TORCH_HOME": str(CACHE / "torch"),
    "HF_HOME": str(CACHE / "huggingface"),
    "MPLBACKEND": "Agg",
}.items():
    os.environ[key] = value

import pytest  # noqa: E402

SHARED_CIRR = REPO.parent / "shared" / "cirr"
SHARED_FASHIONIQ = REPO.parent / "shared" / "fashioniq"
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def _shared_files(path: Path, what: str, require_env: str) -> Path:
    """`path` beside the checkout: skips where it is absent, except with `require_env`=1 (CI,
    `.ci/run`), where its absence fails the test."""
    if not path.is_dir():
        message = f"real {what} files not found at {path}"
        if os.environ.get(require_env, "") not in ("", "0"):
            pytest.fail(f"{message} ({require_env} is set)", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_cirr() -> Path:
    """The real CIRR annotation files beside the checkout (CIRFLOW_REQUIRE_SHARED_CIRR)."""
    return _shared_files(SHARED_CIRR, "CIRR", "CIRFLOW_REQUIRE_SHARED_CIRR")


@pytest.fixture(scope="session")
def shared_fashioniq() -> Path:
    """The real FashionIQ annotation files (captions/, image_splits/; no images) beside the
    checkout (CIRFLOW_REQUIRE_SHARED_FASHIONIQ)."""
    return _shared_files(SHARED_FASHIONIQ, "FashionIQ", "CIRFLOW_REQUIRE_SHARED_FASHIONIQ")


@pytest.fixture(scope="session")
def test_data() -> Path:
    return TEST_DATA


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A tiny generated demo dataset (32/16/8 triplets) shared by the library-level training and
    evaluation tests; they must not change it (copy it first)."""
    from cirflow.data.demo import DemoSpec, generate_demo

    root = tmp_path_factory.mktemp("tiny_demo")
    spec = DemoSpec(seed=0, train_triplets=32, val_triplets=16, test1_triplets=8)
    generate_demo(root, spec, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_demo_gt(tiny_demo, tmp_path_factory) -> Path:
    """tiny_demo's ground-truth boxes as per-split box files (rule gt_boxes' output)."""
    from cirflow.data.gt_boxes import split_ground_truth

    out = tmp_path_factory.mktemp("tiny_demo_gt")
    split_ground_truth(tiny_demo, tiny_demo / "boxes_gt.json", out)
    return out


def write_mini_cirr(root: Path, n_images: int = 9) -> dict[str, list[str]]:
    """A small CIRR-layout dataset (split files, captions, PNGs with one bright square each).

    Independent of the demo generator so that box-pipeline tests need nothing else.
    Returns {split: [image names]}.
    """
    import json

    import numpy as np
    from PIL import Image

    folders = {"train": "train", "val": "dev", "test1": "test1"}
    names_by_split = {}
    rng = np.random.default_rng(0)
    for split, folder in folders.items():
        split_map, names = {}, []
        for i in range(n_images):
            name = f"{folder}-{i}-0-img{i % 2}"
            rel = f"./{folder}/{i % 3}/{name}.png" if split == "train" else f"./{folder}/{name}.png"
            w, h = int(rng.integers(120, 240)), int(rng.integers(100, 200))
            arr = (rng.random((h, w, 3)) * 40 + 60).astype(np.uint8)
            x, y = int(rng.integers(5, w // 2)), int(rng.integers(5, h // 2))
            arr[y : y + h // 3, x : x + w // 3] = (230, 40, 40)
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(path)
            split_map[name] = rel
            names.append(name)
        triplets = []
        for i in range(0, n_images - 1, 2):
            t = {
                "pairid": i,
                "reference": names[i],
                "caption": "make it bigger",
                "img_set": {"id": i, "members": [names[i], names[i + 1]], "reference_rank": 0},
            }
            if split != "test1":
                t["target_hard"] = names[i + 1]
                t["target_soft"] = {names[i + 1]: 1.0}
                t["img_set"]["target_rank"] = 1
            triplets.append(t)
        (root / "cirr/image_splits").mkdir(parents=True, exist_ok=True)
        (root / "cirr/captions").mkdir(parents=True, exist_ok=True)
        (root / f"cirr/image_splits/split.rc2.{split}.json").write_text(json.dumps(split_map))
        (root / f"cirr/captions/cap.rc2.{split}.json").write_text(json.dumps(triplets))
        names_by_split[split] = names
    return names_by_split


@pytest.fixture
def mini_cirr(tmp_path) -> Path:
    root = tmp_path / "mini_cirr"
    write_mini_cirr(root)
    return root


WORKFLOW_FILES = (
    "Snakefile",
    "config.yaml",
    "rules",
    "schemas",
    "workflow_scripts",
    "profiles",
    "config",
    "envs",
)
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
# A demo small enough for a test, big enough for every stage to do real work (training
# included: rule all ends in the results page).
SMALL_DEMO = {
    "demo": {"seed": 0, "train_triplets": 60, "val_triplets": 24, "test1_triplets": 16},
    # The first stage on the real path, at a size that takes seconds.
    "pretrain": {"epochs": 2, "families_per_batch": 4, "threads": 1},
    "train": {
        "num_workers": 0,
        "resources": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 1},
        "stage1": {"num_epochs": 2, "batch_size": 8, "validation_frequency": 1},
        "stage2": {"num_epochs": 1, "batch_size": 8},
    },
    "evaluate": {"num_workers": 0},
}


def make_workflow_copy(dest: Path, overrides: dict | None = None) -> Path:
    """Copy the workflow (and the cirflow sources its rules' code digests cover) into `dest` and
    write `test_config.yaml` with `overrides` merged over SMALL_DEMO."""
    import shutil

    import yaml

    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, dest / name)
    if not (dest / "cirflow").exists():
        # A real copy, not a link: rerun tests edit package files here to simulate code changes.
        shutil.copytree(
            REPO / "cirflow", dest / "cirflow", ignore=shutil.ignore_patterns("__pycache__")
        )
    config = {**SMALL_DEMO, **(overrides or {})}
    (dest / "test_config.yaml").write_text(yaml.safe_dump(config))
    return dest


def run_snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900):
    """Run the snakemake CLI in `workdir` with the test config; return the CompletedProcess."""
    import subprocess

    cmd = [str(SNAKEMAKE), "--configfile", "test_config.yaml", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule -> job count of what `snakemake -n` would run now ({} when nothing). Rule train's
    jobs are counted per stage, as `train:stage1`, `train:stage2`, `train:stage2_control`."""
    import re

    proc = run_snakemake(workdir, "-n", *args)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    jobs: dict[str, int] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        stage = re.search(r"^\s+wildcards: .*\bstage=(\w+)", block, re.M)
        if rule == "train" and stage:
            rule = f"train:{stage.group(1)}"
        if rule != "all":
            jobs[rule] = jobs.get(rule, 0) + 1
    return jobs


@pytest.fixture(scope="session")
def finished_demo_run(tmp_path_factory) -> Path:
    """One complete small-demo run of the whole workflow (rule all), shared by the end-to-end,
    report and rerun tests; they only read it or dry-run against it."""
    workdir = make_workflow_copy(tmp_path_factory.mktemp("demo_run"))
    run_snakemake(workdir)
    return workdir


def tiny_settings(root, out, **overrides):
    """TrainSettings of a small CPU run of the tiny_scratch preset on a generated demo (one
    epoch, batch 8, img_set batching); `overrides` change any field."""
    from cirflow.train.config import TrainSettings

    base = dict(
        cirr_root=str(root),
        out=str(out),
        preset="tiny_scratch",
        num_epochs=1,
        batch_size=8,
        learning_rate=1e-3,
        num_workers=0,
        progress=False,
        threads=1,
        batching="img_set",
    )
    return TrainSettings(**{**base, **overrides})


def write_mini_fashioniq(root: Path, n_images: int = 6) -> dict[tuple[str, str], list[str]]:
    """A small FashionIQ-layout dataset written by hand (docs/fashioniq.md): per category and
    split, `n_images` images (`{category}-{split}-{i}`) and a triplet i -> i + 1 for each (test:
    no target); shirt's and toptee's val splits also share one image, `shared-val`. Images are
    PNGs of one colour each, but `dress-train-0` is a .jpg. Returns {(category, split): names}.
    """
    import json

    import numpy as np
    from PIL import Image

    from cirflow.data.fashioniq import CATEGORIES, SPLITS

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    out = {}
    for category in CATEGORIES:
        for split in SPLITS:
            names = [f"{category}-{split}-{i}" for i in range(n_images)]
            entries = []
            for i, name in enumerate(names):
                entry = {"candidate": name, "captions": [f"is colour {i}.", "Has Longer sleeves"]}
                if split != "test":
                    entry = {"target": names[(i + 1) % n_images], **entry}
                entries.append(entry)
            if split == "val" and category in ("shirt", "toptee"):
                names.append("shared-val")
            for name in names:
                suffix = ".jpg" if name == "dress-train-0" else ".png"
                colour = rng.integers(0, 255, size=3).astype(np.uint8)
                Image.fromarray(np.tile(colour, (40, 40, 1))).save(
                    root / "images" / f"{name}{suffix}"
                )
            for folder, file, data in (
                ("image_splits", f"split.{category}.{split}.json", names),
                ("captions", f"cap.{category}.{split}.json", entries),
            ):
                (root / folder).mkdir(exist_ok=True)
                (root / folder / file).write_text(json.dumps(data))
            out[(category, split)] = names
    return out
