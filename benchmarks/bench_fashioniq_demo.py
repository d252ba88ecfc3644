"""Time the FashionIQ demo generator at its default sizes.

    .venv/bin/python benchmarks/bench_fashioniq_demo.py [--workers N] [--train 1200 --val 200 --test 100]

Prints the wall time, the images per second and the dataset's size on disk. The target (issue):
the default sizes in about 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cirflow.data.demo_fashioniq import FashionIQDemoSpec, generate_fashioniq_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = FashionIQDemoSpec()
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--train", type=int, default=defaults.train_triplets)
    parser.add_argument("--val", type=int, default=defaults.val_triplets)
    parser.add_argument("--test", type=int, default=defaults.test_triplets)
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--out", default=None, help="keep the dataset here (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cirflow-bench-fiq-demo-") as tmp:
        out = Path(args.out or tmp)
        spec = FashionIQDemoSpec(
            args.seed, args.train, args.val, args.test, args.image_size, args.workers
        )
        start = time.perf_counter()
        manifest = generate_fashioniq_demo(out, spec, progress=False)
        seconds = time.perf_counter() - start
        images = sum(n for per_split in manifest["images"].values() for n in per_split.values())
        triplets = sum(n for per_split in manifest["triplets"].values() for n in per_split.values())
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(
        f"FashionIQ demo: {triplets} triplets, {images} images of {spec.image_size} px "
        f"(workers={args.workers or 'auto'})"
    )
    print(f"seconds: {seconds:.1f}")
    print(f"images/s: {images / seconds:.1f}")
    print(f"size on disk: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
