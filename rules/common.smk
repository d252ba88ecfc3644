# Shared by all .smk files: config validation, path helpers and input functions (kept
# here so that the rule files hold rules only).
import hashlib
import os
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate

# Torch-free imports only (tests/test_workflow.py checks it): every job parses this again.
from cirflow.boxes.detectors import METHODS, method_config, uses_gpu
from cirflow.code_inputs import script_digest
from cirflow.config import canonical, check_config, load_schema, normalise_config
from cirflow.data import cirr, datasets
from cirflow.data.cirr import EDITED_SPLITS
from cirflow.data.cirr import SPLITS as CIRR_SPLITS
from cirflow.data.fashioniq import CATEGORIES as FASHIONIQ_CATEGORIES
from cirflow.data.fashioniq import SPLITS as FASHIONIQ_SPLITS
from cirflow.model.config import RegionMode
from cirflow.data.manifest import refresh_manifests
from cirflow.model.config import ModelConfig
from cirflow.train.runs import (
    STAGES,
    AblationRun,
    ablation_params,
    ablation_runs,
    ablation_sources,
    run_pattern,
    DEMO_SOURCES,
    PER_TRIPLET_SOURCES,
    semantic_params,
    stage_mode,
)

# Types as the schema says (YAML's `1e-3` and nested --config values arrive as strings), every
# bad key listed by name, then Snakemake's own validation (fills defaults). Every rule's params
# go through canonical() (keys sorted): reordering or restating keys reruns nothing.
SCHEMA = load_schema(workflow.source_path("../schemas/config.schema.yaml"))
normalise_config(config, SCHEMA)
check_config(config, SCHEMA)
validate(config, schema="../schemas/config.schema.yaml")
normalise_config(config, SCHEMA)

DATASET = config["dataset"]["name"]
# The layout of its files (cirflow/data/datasets.py): cirr for demo and cirr, fashioniq for
# fashioniq and demo_fashioniq. Every path below comes from it.
LAYOUT = datasets.layout_of(DATASET)
SPLITS = datasets.SPLITS[LAYOUT]
# The split whose test-server files rule evaluate writes (CIRR's test1). FashionIQ has no test
# server: nothing scores its test split (boxes and features of it only if boxes.splits asks).
SERVER_SPLIT = datasets.SERVER_SPLIT[LAYOUT]
# The generated datasets: their root is results/<name>/dataset.
DEMOS = ("demo", "demo_fashioniq")
BOX_METHODS = config["boxes"]["methods"]
BOX_SPLITS = config["boxes"]["splits"]
for _stage in ("stage1", "stage2"):
    if LAYOUT != datasets.CIRR and config["train"][_stage]["batching"] == "img_set":
        raise ValueError(
            f"train.{_stage}.batching: img_set batches the triplets of one CIRR img_set "
            f"together, and {DATASET}'s triplets have none: use random (as "
            "config/presets/sprc_fashioniq.yaml does)"
        )
if not set(BOX_SPLITS) <= set(SPLITS):
    raise ValueError(
        f"boxes.splits: {', '.join(s for s in BOX_SPLITS if s not in SPLITS)} is no split of "
        f"dataset {DATASET} (its splits: {', '.join(SPLITS)})"
    )


wildcard_constraints:
    ds=DATASET,
    split="|".join(SPLITS),
    method="|".join(METHODS),
    shard=r"\d+",
    n=r"\d+",
    stage="|".join(STAGES),
    run=run_pattern([*METHODS, *DEMO_SOURCES]),
    seed=r"\d+",


def dataset_root(wildcards=None):
    """Where the dataset lives: generated for a demo, configured (dataset.cirr_root,
    dataset.fashioniq_root) for a real one."""
    if DATASET in DEMOS:
        return f"results/{DATASET}/dataset"
    return config["dataset"][f"{LAYOUT}_root"]


def _one_or_all(paths):
    """One file as a string (as CIRR's rules always took it), several (FashionIQ: one per
    category) as a list."""
    paths = [str(p) for p in paths]
    return paths[0] if len(paths) == 1 else paths


def image_split_files(split):
    return [str(p) for p in datasets.image_split_files(LAYOUT, dataset_root(), split)]


def split_file(split):
    """The split's image split file(s)."""
    return _one_or_all(image_split_files(split))


def captions_file(split):
    return _one_or_all(datasets.captions_files(LAYOUT, dataset_root(), split))


def annotation_files(split):
    """Every annotation file of `split`: image split files, then captions files."""
    return [str(p) for p in datasets.annotation_files(LAYOUT, dataset_root(), split)]


def edits_file(split):
    """The edit-type sidecar beside a split's captions (docs/design.md §3)."""
    return str(cirr.edits_file(dataset_root(), split))


def edit_type_inputs(split):
    """The sidecar as an input where there is one: always for the demo (rule demo_dataset
    writes it), for CIRR only if the user put one beside the captions. FashionIQ's evaluation
    reads no edit types (the FashionIQ demo's sidecars are per category, not read yet).
    """
    if LAYOUT != datasets.CIRR:
        return []
    path = edits_file(split)
    return [path] if DATASET == "demo" or os.path.exists(path) else []


def gt_boxes_file():
    """Ground-truth boxes exist only for the generated demos."""
    return f"{dataset_root()}/boxes_gt.json" if DATASET in DEMOS else None


def demo_box_sources():
    """The box sources only a generated dataset has: its ground truth (gt) and, on the CIRR
    demo, each triplet's edited objects (edited)."""
    return {"demo": DEMO_SOURCES, "demo_fashioniq": ("gt",)}.get(DATASET, ())


# --- image manifests (rule image_manifest, rules/dataset.smk) ---

MANIFESTS = f"results/{DATASET}/manifests"


def manifest_file(split, shard=0, n=1):
    """The manifest (name -> size, mtime) of shard `shard` of `n` of `split`'s images, as
    detection and the features cut it; shard 0 of 1 is the whole split."""
    return f"{MANIFESTS}/{split}/shard-{shard}-of-{n}.json"


def shard_manifest(wildcards):
    """Input of a sharded job (detect_shard, image_features): its own shard's manifest."""
    return manifest_file(wildcards.split, wildcards.shard, wildcards.n)


def split_manifests(splits):
    """Input of a job that decodes the pixels of whole splits."""
    return [manifest_file(split) for split in splits]


def manifest_shard_counts():
    """split -> the shard counts whose manifests each parse keeps up to date: detection's, the
    features' and the whole split's (a few more than a config uses cost little)."""
    boxes, features = config["boxes"]["shards"], config["features"]["shards"]
    # FashionIQ's test: its key may be left out (schema default 1).
    return {split: {1, boxes.get(split, 1), features.get(split, 1)} for split in SPLITS}


# Images as inputs: each parse writes the manifests that are missing or whose images changed,
# appeared or vanished (only those: cirflow/data/manifest.py), so that their mtimes rerun
# exactly the jobs that read those images. At parse time because a rule that runs every time
# would rerun all it feeds. A cluster job's own parse skips it: the process that planned the
# job did it.
if not (workflow.remote_exec or workflow.subprocess_exec):
    _root = datasets.DatasetRoot(LAYOUT, dataset_root())
    for change in refresh_manifests(MANIFESTS, _root, manifest_shard_counts()):
        if not change.created:
            logger.info(f"image manifest {change}")


# Under the working directory's .snakemake/: file digests kept across processes (each SLURM
# job parses the workflow again), recomputed for a file whose size, mtime, ctime or inode differ.
CODE_DIGEST_CACHE = ".snakemake/cirflow/code_digests.json"


def code_digest(script):
    """Digest of workflow_scripts/<script>.py and the cirflow files it runs (its import closure),
    by content without comments, docstrings or formatting (cirflow/code_inputs.py), as a param:
    a change of code reruns exactly the rules that run it, an edit of its text only nothing.
    """
    return script_digest(
        f"workflow_scripts/{script}.py", workflow.basedir, cache=CODE_DIGEST_CACHE
    )


def shard_count(split):
    return config["boxes"]["shards"].get(split, 1)


def shard_files(wildcards):
    n = shard_count(wildcards.split)
    return expand(
        "results/{ds}/boxes/{method}/{split}/shard-{shard}-of-{n}.json",
        ds=wildcards.ds,
        method=wildcards.method,
        split=wildcards.split,
        shard=range(n),
        n=n,
    )


def detect_params(wildcards):
    """Exactly the config a detect_shard job uses (so unrelated keys trigger no rerun)."""
    return canonical(
        {
            "method_config": method_config(config["boxes"], wildcards.method),
            "postfilter": config["boxes"]["postfilter"],
            "max_images": config["boxes"]["max_images"],
        }
    )


def detect_gpus(wildcards):
    return 1 if uses_gpu(wildcards.method) else 0


def box_stats_targets():
    return expand(
        "results/{ds}/boxes/{method}/{split}.stats.json",
        ds=DATASET,
        method=BOX_METHODS,
        split=BOX_SPLITS,
    )


def box_report_targets():
    return expand(
        "results/{ds}/report/boxes_{method}.html", ds=DATASET, method=BOX_METHODS
    )


def evaluation_targets():
    """Stage 1, the control and stage 2 evaluated on val, their test-server files, and the
    comparison table."""
    submission = expand(
        "results/{ds}/eval/{stage}/submission/{name}.json",
        ds=DATASET,
        stage=STAGES,
        name=["recall", "recall_subset"],
    )
    return (
        expand(
            "results/{ds}/eval/{stage}/val_metrics.json",
            ds=DATASET,
            stage=STAGES,
        )
        + (submission if SERVER_SPLIT else [])
        + [f"results/{DATASET}/eval/comparison.csv"]
    )


def all_targets():
    return (
        box_stats_targets()
        + box_report_targets()
        + evaluation_targets()
        + [f"results/{DATASET}/report/results.html"]
    )


# --- the two pages (rules/report.smk) ---


def box_report_params():
    """The report: section without report.results (the results page's keys)."""
    return canonical({k: v for k, v in config["report"].items() if k != "results"})


# --- demo detector (rules/detector.smk) ---

TRAINED_DETECTOR = "results/demo/detector/detector.pt"


def uses_trained_detector():
    weights = config["boxes"].get("yolo", {}).get("weights", "")
    return os.path.normpath(str(weights)) == TRAINED_DETECTOR


if uses_trained_detector() and DATASET != "demo":
    raise ValueError(
        f"boxes.yolo.weights is {TRAINED_DETECTOR}, the demo's trained detector, but "
        f"dataset.name is {DATASET!r}: it needs the demo's ground-truth boxes. Give real YOLO "
        "weights (e.g. yolov8n.pt, see `cirflow weights fetch`) for CIRR."
    )


def detector_weights(wildcards):
    """Input of detect_shard: the trained detector for yolo/hybrid when the config uses it."""
    if uses_gpu(wildcards.method) and uses_trained_detector():
        return [TRAINED_DETECTOR]
    return []


# --- the model's first stage and cached image features (rules/features.smk) ---


def model_preset():
    return ModelConfig.from_model_section(config["model"]).resolve_preset()


def backbone_file():
    """The tiny preset's first-stage file (the demo's pretrain_backbone makes it), as an input
    of every rule that builds the model; none for the LAVIS backbones (their own cache).
    """
    weights = model_preset().vit_weights
    return [weights] if weights else []


def first_stage_file(name):
    """A generated dataset's own first stage (its pretrain_backbone job makes it), at
    results/<name>/backbone/backbone.pth; the CIRR demo's is the tiny preset's default,
    presets.DEMO_BACKBONE."""
    return f"results/{name}/backbone/backbone.pth"


def pretrain_params():
    """The `pretrain:` keys that decide the first stage's weights (threads and decoding workers
    only decide how fast it runs)."""
    return {
        k: v
        for k, v in config["pretrain"].items()
        if k not in ("threads", "num_workers")
    }


# The generated dataset rule pretrain_backbone trains on (a real dataset's runs start from the
# preset's published weights and never ask for it).
PRETRAIN_DATASET = DATASET if DATASET in DEMOS else "demo"
DEMO_FIRST_STAGE = first_stage_file(PRETRAIN_DATASET)
_used = set(backbone_file()) & {first_stage_file(name) for name in DEMOS}
if _used and (DATASET not in DEMOS or _used != {DEMO_FIRST_STAGE}):
    raise ValueError(
        f"the model starts from {backbone_file()[0]}, a demo's own first stage, but "
        f"dataset.name is {DATASET!r}: use pretrain / pretrain_vitL for a real dataset, or "
        + (
            f"model.weights: {DEMO_FIRST_STAGE} for {DATASET} (its own first stage)"
            if DATASET in DEMOS
            else "give model.weights"
        )
    )


def features_enabled():
    enabled = config["features"]["enabled"]
    return model_preset().freeze_vit if enabled == "auto" else bool(enabled)


def feature_files(split):
    """The split's cached ViT tokens (one .npy per shard), or none when pixels are read."""
    if not features_enabled():
        return []
    n = config["features"]["shards"][split]
    return expand(
        "results/{ds}/features/{split}/shard-{shard}-of-{n}.npy",
        ds=DATASET,
        split=split,
        shard=range(n),
        n=n,
    )


def pixel_manifests(splits):
    """Manifests of `splits` for training and evaluation: they decode pixels only without cached
    features (with them, the feature shards carry the images' manifests)."""
    return [] if features_enabled() else split_manifests(splits)


def feature_gpus():
    return (
        config["features"]["resources"]["gpu"]
        if model_preset().vit_model != "eva_tiny"
        else 0
    )


# --- training and evaluation (rules/train.smk, rules/evaluate.smk) ---

STAGE2_INIT = config["train"]["stage2"]["init"]


def stage2_box_method():
    """The box method feeding the region loss: train.stage2.box_method, else boxes.methods[0]."""
    return config["train"]["stage2"]["box_method"] or config["boxes"]["methods"][0]


def root_of_input(wildcards, input):
    """The dataset root, from the first annotation file (an image split file)."""
    return str(datasets.root_of_annotation_file(input.data[0]).path)


def training_data():
    """The annotation files a training run reads (train triplets + val for per-epoch validation)."""
    return annotation_files("train") + annotation_files("val")


def box_source_file(source, split):
    """A box source's file of `split`: a detection method's merged boxes, the demo's ground
    truth as box files (rule gt_boxes), or its triplets' edited-object boxes (rule
    demo_dataset writes them beside the captions)."""
    if source in DEMO_SOURCES and source not in demo_box_sources():
        raise ValueError(f"box source {source} exists only for the demo")
    if source == "gt":
        return f"results/{DATASET}/boxes/gt/{split}.json"
    if source == "edited":
        return str(cirr.edited_boxes_file(dataset_root(), split))
    return f"results/{DATASET}/boxes/{source}/{split}.json"


def region_box_inputs(mode, source, splits):
    """The box files (and sidecars) a run of region mode `mode` reads: the train boxes unless
    mode is none, each evaluated split's own boxes where the mode scores region tokens
    (docs/design.md §6). Named boxes, boxes_meta (train) and boxes_<split>,
    boxes_<split>_meta; a per-triplet source (edited) has no sidecar."""
    out = {}
    if mode == "none":
        return out
    scored = RegionMode(mode).scores_regions
    for split in ["train", *(splits if scored else [])]:
        name = "boxes" if split == "train" else f"boxes_{split}"
        path = box_source_file(source, split)
        out[name] = path
        if source not in PER_TRIPLET_SOURCES:
            out[f"{name}_meta"] = path.removesuffix(".json") + ".meta.json"
    return out


STAGE2_MODE = stage_mode(semantic_params(config["train"], "stage2"))


def stage_region_mode(stage):
    return STAGE2_MODE if stage == "stage2" else "none"


def is_stage(wildcards):
    """A job of one of the three stages (wildcard stage), else one of the ablation's runs
    (wildcards run, seed)."""
    return "stage" in wildcards.keys()


def training_run(wildcards):
    """(region mode, box source, starts from stage 1's best.pt) of a training or evaluation
    job: a stage (stage 2 and the control start from stage 1 unless
    train.stage2.init: pretrained) or an ablation run (always from stage 1)."""
    if is_stage(wildcards):
        stage = wildcards.stage
        from_stage1 = stage != "stage1" and STAGE2_INIT == "stage1"
        return stage_region_mode(stage), stage2_box_method(), from_stage1
    run = AblationRun.parse(wildcards.run)
    return run.mode, run.source, True


def train_run_inputs(wildcards):
    """Rule train's inputs that depend on the run: its train boxes (unless mode none), its val
    boxes with tokens (the per-epoch validation), stage 1's best.pt for a stage-2 run.
    """
    mode, source, from_stage1 = training_run(wildcards)
    inputs = region_box_inputs(mode, source, ["val"])
    if from_stage1:
        inputs["init"] = f"results/{wildcards.ds}/models/stage1/best.pt"
    return inputs


def train_run_params(wildcards):
    """What determines the run's weights (canonical): a stage's block
    (cirflow.train.runs.semantic_params), or train.stage2 with an ablation run's region mode,
    seed and epochs (ablation_params)."""
    if is_stage(wildcards):
        return train_params(wildcards.stage)
    run = AblationRun.parse(wildcards.run)
    seed = int(wildcards.seed)
    return canonical(ablation_params(config["train"], ABLATION, run, seed))


def run_dir(wildcards):
    if is_stage(wildcards):
        return f"results/{wildcards.ds}/models/{wildcards.stage}"
    return ablation_dir(wildcards.run, wildcards.seed)


def scored_splits(wildcards):
    """The splits an evaluate job scores (val, and for a stage the test-server split: CIRR's
    test1; FashionIQ has none). The ablation's runs score val only."""
    return ["val", SERVER_SPLIT] if is_stage(wildcards) and SERVER_SPLIT else ["val"]


def evaluation_inputs(wildcards):
    """Rule evaluate's inputs: the run's best.pt and its scored splits' files
    (`scored_splits`); with region tokens each scored split's boxes of the run's box source.
    """
    mode, source, _ = training_run(wildcards)
    splits = scored_splits(wildcards)
    inputs = {
        "checkpoint": f"{run_dir(wildcards)}/best.pt",
        "data": [f for split in splits for f in annotation_files(split)],
    }
    if SERVER_SPLIT in splits:
        inputs[f"features_{SERVER_SPLIT}"] = feature_files(SERVER_SPLIT)
    inputs["images"] = pixel_manifests(splits)
    boxes = region_box_inputs(mode, source, splits)
    scored = tuple(f"boxes_{split}" for split in splits)
    inputs.update({k: v for k, v in boxes.items() if k.startswith(scored)})
    return inputs


def evaluation_outputs(folder):
    """Rule evaluate's outputs under `folder`: val's metrics, details and per-query rankings
    and, where the dataset has a test server, that split's submission files."""
    out = {
        "metrics": f"{folder}/val_metrics.json",
        "details": f"{folder}/val_details.json",
        # Each val query's target rank and best images, for the results page.
        "rankings": f"{folder}/val_rankings.json",
    }
    if SERVER_SPLIT:
        out["recall"] = f"{folder}/submission/recall.json"
        out["subset"] = f"{folder}/submission/recall_subset.json"
        out[f"{SERVER_SPLIT}_details"] = f"{folder}/{SERVER_SPLIT}_details.json"
    return out


def stage_eval_boxes(stage, splits=("val", "test1")):
    """With region tokens, the `splits` boxes (and sidecars) of the stage's method."""
    boxes = region_box_inputs(stage_region_mode(stage), stage2_box_method(), splits)
    return {
        k: v
        for k, v in boxes.items()
        if k.startswith(tuple(f"boxes_{split}" for split in splits))
    }


def eval_params():
    """The evaluate: section without its resources (evaluation is cheap to redo)."""
    return canonical({k: v for k, v in config["evaluate"].items() if k != "resources"})


def train_params(stage):
    """What determines a stage's weights (cirflow.train.runs.semantic_params), canonical."""
    return canonical(semantic_params(config["train"], stage))


# --- the ablation (rules/ablation.smk; its training and evaluation reuse rules train and
# evaluate, the run names are cirflow.train.runs') ---

ABLATION = config["ablation"]
ABLATION_SOURCES = ablation_sources(
    ABLATION["box_sources"], BOX_METHODS, demo=DATASET in DEMOS
)


def checked_ablation_runs():
    """ablation.runs, each box source checked; only where the ablation is planned.

    config.yaml's demo runs (gt, edited) must not stop a real dataset's other targets.
    """
    runs = ablation_runs(ABLATION, ABLATION_SOURCES)
    for run in runs:
        if run.source is not None and run.source not in [*METHODS, *DEMO_SOURCES]:
            raise ValueError(
                f"ablation.runs: {run.name}: unknown box source {run.source!r} (one of "
                f"{', '.join([*METHODS, *DEMO_SOURCES])})"
            )
        if run.source in DEMO_SOURCES and run.source not in demo_box_sources():
            raise ValueError(
                f"ablation.runs: {run.name}: box source {run.source} exists only for the demo"
                + (" (dataset.name: demo)" if DATASET == "demo_fashioniq" else "")
                + "; set ablation.runs for this dataset (e.g. [none, token_loss_saliency])"
            )
    return runs


def ablation_entries_param(wildcards):
    """Rule ablation's entries param (a function: the runs are checked when it is planned)."""
    return canonical(ablation_entries())


def ablation_dir(run, seed):
    return f"results/{DATASET}/ablation/runs/{run}/seed{seed}"


def ablation_entries():
    """Every run of the ablation: mode, box source, epochs (None: the ablation's), seed and its
    val_metrics.json."""
    entries = []
    for run in checked_ablation_runs():
        for seed in ABLATION["seeds"]:
            entries.append(
                {
                    "mode": run.mode,
                    "source": run.source,
                    "epochs": run.epochs,
                    "seed": seed,
                    "metrics": f"{ablation_dir(run.name, seed)}/val_metrics.json",
                }
            )
    return entries


def train_threads(wildcards):
    """Stage 1 alone takes train.resources.threads; stage 2 and its control, which run side by
    side, stage2_threads each (null: threads)."""
    resources = config["train"]["resources"]
    if wildcards.stage == "stage1":
        return resources["threads"]
    return resources.get("stage2_threads") or resources["threads"]


def ablation_threads(section):
    return ABLATION["threads"] or config[section]["resources"]["threads"]


# --- the results page (rules/report.smk) ---


def stage_files(pattern, stages=STAGES):
    """`pattern` (with {stage}) for each stage, the {ds} wildcard kept."""
    return [pattern.replace("{stage}", stage) for stage in stages]


def results_page_boxes(wildcards):
    """Stage 2's val boxes where it scores with region tokens: the page draws the targets'."""
    return stage_eval_boxes("stage2", ["val"])


def ablation_summary():
    """The ablation's summary.csv as the page sees it: path and content digest if it is on
    disk, else None. A param, not an input: as an input, rule all would run the whole
    ablation (its producer) whenever a training key changed; as a param, the page reruns
    when the file appears or changes, and the ablation runs only with `snakemake ablation`.
    """
    path = Path(f"results/{DATASET}/ablation/summary.csv")
    if not path.is_file():
        return None
    return canonical(
        {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    )


def results_page_config():
    """The config the page shows (run facts): exactly the params of the rules that made what
    it shows, so no key reruns the page alone but report.results."""
    shown = {
        "dataset": DATASET,
        "model": config["model"],
        "train": {stage: train_params(stage) for stage in STAGES},
        "box_method": stage2_box_method(),
        "evaluate": eval_params(),
    }
    if DATASET in DEMOS:
        shown[DATASET] = config[DATASET]
        shown["pretrain"] = pretrain_params()
    return canonical(shown)
