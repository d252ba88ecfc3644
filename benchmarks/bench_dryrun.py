"""Time `snakemake -n` on up-to-date workflows: the finished demo against a one-rule Snakefile
in the same venv (goal: <= 1.3x), and the workflow at CIRR scale (goal: <= 3 s); and the image
manifests' refresh per split at CIRR scale (goal: <= 1 s per split).

    .venv/bin/python benchmarks/bench_dryrun.py [--shards 16] [--repeat 3] [--keep DIR] [--demo DIR]

Demo: `--demo DIR` is a folder where the demo workflow has finished (default: this repository,
after `make demo`); a one-rule Snakefile with an up-to-date output is dry-run alternately with it,
so both see the same machine load, and the ratio of the medians is printed.

CIRR scale:
Builds, in a temp folder: a CIRR root with the real split files from ../shared/cirr (16,939 train,
2,297 val, 2,315 test1 names), the real val/test1 captions (train's are not there: an empty list
stands in) and an empty placeholder file for every image; a copy of the workflow (Snakefile,
rules, schemas, workflow_scripts, config.yaml, profiles, envs; `cirflow/` linked, so that the
package sources the rules' code digests hash are the real ones) with `dataset.name: cirr` and N shards
per split. It then brings the workflow up to date without computing anything (an
empty file for every output `snakemake --summary` lists, then `snakemake --touch` to put their
times in DAG order; nothing reads the images: each parse stats them, for the image manifests),
checks that a dry run has nothing to do, and times `snakemake -n` as a user runs it (a fresh
process each time: interpreter start, parsing, DAG, file checks). Prints the median wall and CPU
time, and the start-up floor (`snakemake --version`) for comparison.

Image manifests (`cirflow.data.manifest.refresh_manifests`, run by every parse): per split, in
this process, the first refresh (every manifest written: 1 + N shards, `boxes.shards` and
`features.shards` being the same N) and then the median of refreshes with nothing changed (what
every later parse pays), each on a warm file system cache.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_CIRR = REPO.parent / "shared" / "cirr"
WORKFLOW_FILES = (
    "Snakefile",
    "config.yaml",
    "rules",
    "schemas",
    "workflow_scripts",
    "profiles",
    "envs",
)
SPLITS = ("train", "val", "test1")
GOAL_S = 3.0
GOAL_RATIO = 1.3
GOAL_MANIFEST_S = 1.0
ONE_RULE = """rule all:
    input:
        "done.txt",


rule make:
    output:
        "done.txt",
    shell:
        "touch {output}"
"""

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "false",
}


def build_cirr_root(root: Path, shared: Path) -> dict[str, int]:
    """The CIRR layout with the real split files and empty images; returns images per split."""
    (root / "cirr" / "image_splits").mkdir(parents=True)
    (root / "cirr" / "captions").mkdir(parents=True)
    counts = {}
    for split in SPLITS:
        split_file = shared / f"split.rc2.{split}.json"
        shutil.copy2(split_file, root / "cirr" / "image_splits" / split_file.name)
        captions = shared / f"cap.rc2.{split}.json"
        dest = root / "cirr" / "captions" / captions.name
        if captions.exists():
            shutil.copy2(captions, dest)
        else:
            dest.write_text("[]\n")
        names = json.loads(split_file.read_text())
        for relpath in names.values():
            image = root / relpath
            image.parent.mkdir(parents=True, exist_ok=True)
            image.touch()
        counts[split] = len(names)
    return counts


def build_workdir(workdir: Path, cirr_root: Path, shards: int) -> Path:
    workdir.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, workdir / name)
    (workdir / "cirflow").symlink_to(REPO / "cirflow", target_is_directory=True)
    overrides = {
        "dataset": {"name": "cirr", "cirr_root": str(cirr_root)},
        "model": {"preset": "pretrain"},
        "features": {"shards": {split: shards for split in SPLITS}},
        "boxes": {"shards": {split: shards for split in SPLITS}},
    }
    config_file = workdir / "bench_config.yaml"
    config_file.write_text(yaml.safe_dump(overrides))
    return config_file


def snakemake(workdir: Path, config_file: Path | None, *args: str) -> subprocess.CompletedProcess:
    config = ["--configfile", config_file.name] if config_file else []
    cmd = [sys.executable, "-m", "snakemake", *config, *args]
    env = dict(os.environ, **OFFLINE_ENV)
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)


def create_outputs(workdir: Path, config_file: Path) -> int:
    """An empty stand-in for every output of the DAG (`snakemake --summary` lists them); outputs
    without a suffix are taken for `directory()` outputs. `--touch` then orders their mtimes."""
    summary = must(snakemake(workdir, config_file, "--summary"), "--summary")
    lines = [line.split("\t") for line in summary.splitlines()]
    outputs = [cols[0] for cols in lines if len(cols) >= 5 and cols[0] != "output_file"]
    for rel in reversed(outputs):  # listed targets first: create the deepest first
        path = workdir / rel
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    return len(outputs)


def timed(workdir: Path, config_file: Path, *args: str) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + system of the child) of one snakemake run, and its output.
    On a loaded machine the wall time grows, the CPU time does not."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = snakemake(workdir, config_file, *args)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, must(done, f"snakemake {' '.join(args)}")


def must(done: subprocess.CompletedProcess, what: str) -> str:
    if done.returncode != 0:
        sys.exit(f"{what} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    return done.stdout + done.stderr


def manifest_cost(cirr_root: Path, folder: Path, shards: int, repeat: int) -> float:
    """Print the manifests' refresh time per split (first, then nothing changed); return the
    slowest split's median with nothing changed."""
    sys.path.insert(0, str(REPO))
    from cirflow.data.manifest import refresh_manifests

    worst = 0.0
    for split in SPLITS:
        counts = {split: {1, shards}}
        t0 = time.perf_counter()
        made = refresh_manifests(folder, cirr_root, counts)
        first = time.perf_counter() - t0
        warm = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            assert refresh_manifests(folder, cirr_root, counts) == []
            warm.append(time.perf_counter() - t0)
        worst = max(worst, statistics.median(warm))
        print(
            f"image manifests, {split}: first refresh ({len(made)} written) {first:.2f} s, "
            f"nothing changed: median {statistics.median(warm):.3f} s "
            f"({', '.join(f'{t:.3f}' for t in warm)})"
        )
    verdict = "within" if worst <= GOAL_MANIFEST_S else "OVER"
    print(f"  slowest split {worst:.3f} s, {verdict} the {GOAL_MANIFEST_S:g} s goal per split")
    return worst


def demo_ratio(demo: Path, tmp: Path, repeat: int) -> float | None:
    """Median dry-run wall time of the finished demo / of a one-rule Snakefile (alternating)."""
    if not (demo / "results" / "demo").is_dir():
        print(f"demo: no finished demo in {demo} (run `make demo` there first); skipped")
        return None
    dry = must(snakemake(demo, None, "-n"), "demo dry run")
    if "Nothing to be done" not in dry:
        print(f"demo: the workflow in {demo} is not up to date; skipped:\n{dry[-1500:]}")
        return None
    one = tmp / "one_rule"
    one.mkdir(parents=True)
    (one / "Snakefile").write_text(ONE_RULE)
    must(snakemake(one, None, "--cores", "1", "--quiet"), "one-rule run")
    demo_walls, one_walls = [], []
    for _ in range(repeat):
        demo_walls.append(timed(demo, None, "-n")[0])
        one_walls.append(timed(one, None, "-n")[0])
    ratio = statistics.median(demo_walls) / statistics.median(one_walls)
    verdict = "within" if ratio <= GOAL_RATIO else "OVER"
    print(
        f"snakemake -n, finished demo: median {statistics.median(demo_walls):.2f} s wall vs "
        f"{statistics.median(one_walls):.2f} s for a one-rule Snakefile (same venv, alternating "
        f"runs): ratio {ratio:.2f}x, {verdict} the {GOAL_RATIO:g}x goal"
    )
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=16, help="shards per split (default 16)")
    parser.add_argument("--repeat", type=int, default=3, help="timed dry runs (default 3)")
    parser.add_argument("--keep", metavar="DIR", help="build in DIR and keep it (default: temp)")
    parser.add_argument(
        "--demo", default=str(REPO), help="a folder where the demo has finished (default: repo)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when over a goal")
    args = parser.parse_args()
    if not SHARED_CIRR.is_dir():
        sys.exit(f"real CIRR split files not found at {SHARED_CIRR}")

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cirflow-bench-dryrun-"))
    try:
        ratio = demo_ratio(Path(args.demo), tmp, max(args.repeat, 5))
        t0 = time.perf_counter()
        counts = build_cirr_root(tmp / "cirr_root", SHARED_CIRR)
        config_file = build_workdir(tmp / "workflow", tmp / "cirr_root", args.shards)
        workdir = config_file.parent
        print(
            f"CIRR-scale setup: {counts} images (empty placeholders), {args.shards} shards per "
            f"split, in {time.perf_counter() - t0:.1f} s"
        )
        manifests = manifest_cost(
            tmp / "cirr_root", tmp / "manifests", args.shards, max(args.repeat, 5)
        )

        t0 = time.perf_counter()
        created = create_outputs(workdir, config_file)
        must(
            snakemake(workdir, config_file, "--touch", "--cores", "1", "--quiet", "all"), "--touch"
        )
        dry = must(snakemake(workdir, config_file, "-n"), "dry run")
        if "Nothing to be done" not in dry:
            sys.exit(f"the workflow is not up to date after --touch:\n{dry[-3000:]}")
        jobs = must(snakemake(workdir, config_file, "-n", "--forceall"), "DAG size")
        stats = jobs[jobs.find("Job stats:") :].split("\n\n")[0]
        print(
            f"up to date ({created} empty outputs + snakemake --touch) in "
            f"{time.perf_counter() - t0:.1f} s; the DAG when forced:\n{stats}"
        )

        floor = [timed(workdir, config_file, "--version")[0] for _ in range(args.repeat)]
        walls, cpus = [], []
        for _ in range(args.repeat):
            wall, cpu, out = timed(workdir, config_file, "-n")
            assert "Nothing to be done" in out, out[-2000:]
            walls.append(wall)
            cpus.append(cpu)
        median = statistics.median(walls)
        verdict = "within" if median <= GOAL_S else "OVER"
        print(
            f"snakemake -n (up to date, CIRR scale): median {median:.2f} s wall "
            f"({', '.join(f'{t:.2f}' for t in walls)}), {statistics.median(cpus):.2f} s CPU; "
            f"{verdict} the {GOAL_S:g} s goal ({median / GOAL_S:.2f}x of it)"
        )
        print(
            f"  of which interpreter + snakemake start-up (`snakemake --version`): median "
            f"{statistics.median(floor):.2f} s wall"
        )
        over = (
            median > GOAL_S
            or manifests > GOAL_MANIFEST_S
            or (ratio is not None and ratio > GOAL_RATIO)
        )
        return 1 if args.strict and over else 0
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
