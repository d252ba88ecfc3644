"""Time the demo dataset generator at the workflow's default sizes.

    .venv/bin/python benchmarks/bench_demo_data.py [--workers N] [--train 2000 --val 500 --test1 500]

Prints the wall time, the images per second and the dataset's size on disk. The target (issue):
the default sizes in under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cirflow.data.demo import DemoSpec, generate_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--test1", type=int, default=500)
    parser.add_argument("--out", default=None, help="keep the dataset here (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cirflow-bench-demo-") as tmp:
        out = Path(args.out or tmp)
        start = time.perf_counter()
        spec = DemoSpec(args.seed, args.train, args.val, args.test1)
        manifest = generate_demo(out, spec, workers=args.workers, progress=False)
        seconds = time.perf_counter() - start
        images = sum(manifest["images"].values())
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(
        f"demo dataset: {sum(manifest['triplets'].values())} triplets, {images} images "
        f"(workers={args.workers or 'auto'})"
    )
    print(f"seconds: {seconds:.1f}")
    print(f"images/s: {images / seconds:.1f}")
    print(f"size on disk: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
