"""Set-up costs before and after a change to the install: `make install` into a fresh venv, the
venv's size, `import cirflow.model.sprc`, and `snakemake -n` on the default (demo) config.

    .venv/bin/python benchmarks/bench_setup.py [--before 95a4e9e] [--installs 2] [--repeat 5]
                                               [--full-venv DIR] [--keep DIR]

Two trees are compared: BEFORE, `git archive` of a commit (default 95a4e9e, whose
requirements/3-lavis-nodeps.txt installs everything `import lavis` needs), and AFTER, this
checkout's working tree as git sees it (tracked and untracked, not ignored, files). Each is
copied to a temp folder, so neither the checkout nor its .venv is touched.

1. Install: `make install VENV=<tmp>/venv-<tree>` in each tree, alternately (BEFORE, AFTER,
   BEFORE, ...), `--installs` times each, into a venv deleted first. The first round warms the
   machine's pip caches (wheels built from sdists); the median of all rounds, each round's time,
   the venv's size on disk and its number of installed distributions are printed.
2. Import: `python -c "import cirflow.model.sprc"` in a fresh interpreter with PYTHONPATH set to
   the tree, alternately over (BEFORE code, full venv), (AFTER code, full venv), (AFTER code,
   AFTER venv); one untimed warm-up each (it writes the trees' __pycache__), then `--repeat`
   timed runs. The full venv is BEFORE's fresh venv, or `--full-venv` (e.g. an existing .venv).
3. Dry run: `<venv>/bin/snakemake -n --cores 2` in each tree on its default config, with no
   results/ and no .snakemake/ (deleted before every run), the same three combinations.

Wall and CPU (user + system of the child) seconds; medians. On a loaded machine the wall time
grows, the CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE = "95a4e9e"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "false",
}


def must(done: subprocess.CompletedProcess, what: str) -> str:
    if done.returncode != 0:
        sys.exit(f"{what} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    return done.stdout + done.stderr


def archive(commit: str, dest: Path) -> Path:
    """`git archive` of `commit` unpacked in `dest` (emptied first)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    tar = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True)
    if tar.returncode != 0:
        sys.exit(f"git archive {commit} failed: {tar.stderr.decode()[-2000:]}")
    must(
        subprocess.run(["tar", "-x", "-C", str(dest)], input=tar.stdout, capture_output=True), "tar"
    )
    return dest


def working_tree(dest: Path) -> Path:
    """This checkout's tracked and untracked, not ignored, files copied to `dest` (emptied first)."""
    shutil.rmtree(dest, ignore_errors=True)
    listed = must(
        subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
            capture_output=True,
            text=True,
        ),
        "git ls-files",
    )
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_file():  # a file deleted but not yet committed is still listed
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, str]:
    """Wall and CPU seconds of one child process, and its output (exits if it fails)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, must(done, " ".join(cmd))


def disk_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (links not followed, each inode once)."""
    seen, total = set(), 0
    for root, _, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def distributions(venv: Path) -> int:
    return len(list(venv.glob("lib/python*/site-packages/*.dist-info")))


def median_line(label: str, runs: list[tuple[float, float]]) -> str:
    walls = [w for w, _ in runs]
    cpus = [c for _, c in runs]
    return (
        f"  {label:<34} median {statistics.median(walls):7.2f} s wall, "
        f"{statistics.median(cpus):7.2f} s CPU  ({', '.join(f'{w:.2f}' for w in walls)})"
    )


def install(trees: dict[str, Path], venvs: dict[str, Path], rounds: int) -> None:
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            shutil.rmtree(venvs[name], ignore_errors=True)
            cmd = ["make", "-C", str(tree), "install", f"VENV={venvs[name]}"]
            wall, cpu, _ = timed(cmd, tree)
            runs[name].append((wall, cpu))
            print(f"    make install ({name}): {wall:.1f} s wall", flush=True)
    print(f"make install into a fresh venv ({rounds} rounds, alternating):")
    for name in trees:
        venv = venvs[name]
        print(median_line(name, runs[name]))
        print(
            f"  {'':<34} venv {disk_bytes(venv) / 2**30:.2f} GiB on disk (as du -h), "
            f"{distributions(venv)} distributions"
        )


def alternate(
    label: str, combos: dict[str, tuple[Path, Path]], command, repeat: int, before_each=None
) -> None:
    """`command(tree, venv)` for every combination, one untimed warm-up, then `repeat` rounds."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in combos}
    for timed_round in [False] + [True] * repeat:
        for name, (tree, venv) in combos.items():
            if before_each:
                before_each(tree)
            env = dict(os.environ, **OFFLINE_ENV, PYTHONPATH=str(tree))
            wall, cpu, _ = timed(command(tree, venv), tree, env)
            if timed_round:
                runs[name].append((wall, cpu))
    print(f"{label} ({repeat} runs each after a warm-up, alternating):")
    for name in combos:
        print(median_line(name, runs[name]))
    first = next(iter(combos))
    base = statistics.median(w for w, _ in runs[first])
    for name in list(combos)[1:]:
        ratio = statistics.median(w for w, _ in runs[name]) / base
        print(f"  {name} / {first}: {ratio:.2f}x wall")


def clean_results(tree: Path) -> None:
    for name in ("results", ".snakemake", "logs"):
        shutil.rmtree(tree / name, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help=f"commit to compare with ({BEFORE})")
    parser.add_argument("--installs", type=int, default=2, help="install rounds (default 2)")
    parser.add_argument("--repeat", type=int, default=5, help="timed imports/dry runs (5)")
    parser.add_argument("--full-venv", help="venv with every LAVIS dependency (default: BEFORE's)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: temp)")
    args = parser.parse_args()

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cirflow-bench-setup-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        trees = {
            f"before ({args.before})": archive(args.before, tmp / "before"),
            "after (working tree)": working_tree(tmp / "after"),
        }
        venvs = {name: tmp / f"venv-{name.split()[0]}" for name in trees}
        if args.installs > 0:
            install(trees, venvs, args.installs)
        (before_name, before_tree), (after_name, after_tree) = trees.items()
        full_venv = Path(args.full_venv) if args.full_venv else venvs[before_name]
        after_venv = venvs[after_name]
        if not (full_venv / "bin" / "python").exists() or not (after_venv / "bin").is_dir():
            sys.exit(f"no venvs in {tmp}: run with --installs >= 1 (and --keep to reuse them)")
        full = "full venv" if args.full_venv is None else str(full_venv)
        combos = {
            f"before code, {full}": (before_tree, full_venv),
            f"after code, {full}": (after_tree, full_venv),
            "after code, after venv": (after_tree, after_venv),
        }
        alternate(
            "import cirflow.model.sprc",
            combos,
            lambda tree, venv: [str(venv / "bin" / "python"), "-c", "import cirflow.model.sprc"],
            args.repeat,
        )
        alternate(
            "snakemake -n --cores 2 (default config, no results/)",
            combos,
            lambda tree, venv: [str(venv / "bin" / "snakemake"), "-n", "--cores", "2"],
            args.repeat,
            before_each=clean_results,
        )
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
