"""`cirflow weights fetch|check|env`: every pretrained file the workflow reads, for offline nodes.

Compute nodes of many clusters have no internet. Run `cirflow weights fetch` once on a machine
that has it (a login node), copy the cache folder next to the work tree if needed, and point the
workflow at it (`eval "$(cirflow weights env --cache-dir DIR)"`); `cirflow weights check` then
reports, offline, what is present and what is missing.

Layout of a cache folder DIR (see docs/cluster.md), chosen so that each library finds its files
where it already looks:

    DIR/torch/hub/checkpoints/<file>.pth    LAVIS (timm's hub cache under TORCH_HOME=DIR/torch):
                                            the ViT (eva_vit_g.pth or clip_vit_L.pth) and the
                                            BLIP-2 Q-Former checkpoint of the backbone
    DIR/huggingface/hub/models--bert-base-uncased/...
                                            transformers (HF_HOME=DIR/huggingface): the tokenizer,
                                            config and weights LAVIS builds the Q-Former from
    DIR/yolo/<name>.pt                      ultralytics weights (config boxes.yolo.weights)

The default DIR is `.cache`, the folder the Makefile and the tests already point TORCH_HOME and
HF_HOME into, so that in a work tree `cirflow weights fetch` alone is enough.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cirflow.errors import CirflowError
from cirflow.io import atomic_path

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = ".cache"

# The URLs LAVIS 1.0.2 itself downloads (lavis/configs/models/blip2/blip2_pretrain*.yaml
# `pretrained:`, lavis/models/eva_vit.py create_eva_vit_g, lavis/models/clip_vit.py
# create_clip_vit_L); tests/test_weights.py checks them against the installed LAVIS.
LAVIS_BLIP2_URL = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/"
BACKBONE_FILES = {
    "pretrain": {
        "EVA ViT-g/14": LAVIS_BLIP2_URL + "eva_vit_g.pth",
        "BLIP-2 Q-Former (pretrain)": LAVIS_BLIP2_URL + "blip2_pretrained.pth",
    },
    "pretrain_vitL": {
        "CLIP ViT-L/14": LAVIS_BLIP2_URL + "clip_vit_L.pth",
        "BLIP-2 Q-Former (pretrain_vitL)": LAVIS_BLIP2_URL + "blip2_pretrained_vitL.pth",
    },
    # Local vocabulary; the demo's first stage is made by the workflow: nothing to fetch.
    "tiny": {},
    "tiny_scratch": {},
}
# LAVIS's Blip2Base builds the tokenizer, the Q-Former config and its initial BERT weights with
# `from_pretrained("bert-base-uncased")`.
BERT_REPO = "bert-base-uncased"
BERT_FILES = (
    "config.json",
    "vocab.txt",
    "tokenizer_config.json",
    "tokenizer.json",
    "model.safetensors",
)
# Ultralytics' release assets (what ultralytics.utils.downloads.attempt_download_asset fetches for
# a bare name such as yolov8n.pt; its default release tag in ultralytics 8.4).
YOLO_RELEASE_URL = "https://github.com/ultralytics/assets/releases/download/v8.4.0/"

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass(frozen=True)
class WeightFile:
    """One file to fetch: what it is, where it comes from, where it must end up."""

    what: str
    source: str  # a URL, or "hf://<repo>/<file>" for the Hugging Face cache
    dest: Path  # for Hugging Face files: the cache's hub folder (the snapshot path is resolved)
    kind: str  # "url" | "hf" | "yolo"

    @property
    def filename(self) -> str:
        return self.source.rsplit("/", 1)[-1]


def torch_home(cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir) / "torch"


def hf_home(cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir) / "huggingface"


def yolo_dir(cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir) / "yolo"


def yolo_path(cache_dir: str | os.PathLike, name: str) -> Path:
    """Where `fetch` puts YOLO weights `name` (give this path as boxes.yolo.weights)."""
    return yolo_dir(cache_dir) / Path(name).name


def plan(
    cache_dir: str | os.PathLike, backbones: list[str] = (), yolo: list[str] = ()
) -> list[WeightFile]:
    """Every file the given backbones and YOLO weights need, with its place in `cache_dir`."""
    cache = Path(cache_dir)
    checkpoints = torch_home(cache) / "hub" / "checkpoints"
    files: list[WeightFile] = []
    for backbone in backbones:
        if backbone not in BACKBONE_FILES:
            raise CirflowError(
                f"unknown backbone {backbone!r}: expected one of {', '.join(BACKBONE_FILES)}"
            )
        for what, url in BACKBONE_FILES[backbone].items():
            files.append(WeightFile(what, url, checkpoints / url.rsplit("/", 1)[-1], "url"))
        if BACKBONE_FILES[backbone] and not any(f.kind == "hf" for f in files):
            for name in BERT_FILES:
                files.append(
                    WeightFile(
                        f"BERT {name}", f"hf://{BERT_REPO}/{name}", hf_home(cache) / "hub", "hf"
                    )
                )
    for name in yolo:
        if not name.endswith(".pt") or Path(name).name != name:
            raise CirflowError(
                f"--yolo {name!r}: give an ultralytics release asset name such as yolov8n.pt"
            )
        files.append(
            WeightFile(f"YOLO {name}", YOLO_RELEASE_URL + name, yolo_path(cache, name), "yolo")
        )
    # The same file asked for twice (e.g. two backbones) is fetched once.
    unique: dict[str, WeightFile] = {}
    for f in files:
        unique.setdefault(f.source, f)
    return list(unique.values())


def _hf_cached(f: WeightFile) -> Path | None:
    """The snapshot file of a Hugging Face cache entry, or None (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache

    repo, name = f.source.removeprefix("hf://").rsplit("/", 1)
    hit = try_to_load_from_cache(repo, name, cache_dir=str(f.dest))
    return Path(hit) if isinstance(hit, str) else None


def locate(f: WeightFile) -> Path | None:
    """The present, non-empty file for `f`, or None."""
    path = _hf_cached(f) if f.kind == "hf" else f.dest
    if path is not None and path.is_file() and path.stat().st_size > 0:
        return path
    return None


def missing(files: list[WeightFile]) -> list[WeightFile]:
    return [f for f in files if locate(f) is None]


def fetch_command(cache_dir, backbones, yolo) -> str:
    parts = ["cirflow weights fetch"]
    parts += [f"--backbone {b}" for b in backbones]
    parts += [f"--yolo {y}" for y in yolo] or ["--yolo none"]
    parts.append(f"--cache-dir {cache_dir}")
    return " ".join(parts)


# -- downloading ---------------------------------------------------------------------------------


def download_url(url: str, dest: Path, chunk: int = 1 << 20) -> None:
    """Stream `url` (http(s) or file://) to `dest` atomically; a short read is an error."""
    log.info("downloading %s -> %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            expected = response.headers.get("Content-Length")
            with atomic_path(dest, suffix=".part") as tmp:
                size = 0
                with open(tmp, "wb") as out:
                    while block := response.read(chunk):
                        out.write(block)
                        size += len(block)
                if expected is not None and size != int(expected):
                    raise CirflowError(f"{url}: got {size} bytes, expected {expected}")
                if size == 0:
                    raise CirflowError(f"{url}: empty download")
    except OSError as exc:  # URLError, HTTPError, timeouts
        raise CirflowError(f"could not download {url}: {exc}") from exc


def hf_download(repo: str, filename: str, hub_dir: Path) -> Path:
    """One file of a Hugging Face repo into the hub cache `hub_dir` (transformers' layout)."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=repo, filename=filename, cache_dir=str(hub_dir)))


def fetch(files: list[WeightFile], force: bool = False) -> list[Path]:
    """Download every file of `files` that is not there yet (all of them with `force`)."""
    if any(f.kind == "hf" for f in files):
        offline = [v for v in OFFLINE_VARS if os.environ.get(v, "0") not in ("", "0")]
        if offline:
            raise CirflowError(
                f"fetching needs the network, but {', '.join(offline)} is set: run it without "
                f"(e.g. `env -u {' -u '.join(offline)} cirflow weights fetch ...`)"
            )
    done = []
    for f in files:
        present = locate(f)
        if present is not None and not force:
            log.info("present: %s (%s)", f.what, present)
            done.append(present)
            continue
        if f.kind == "hf":
            repo, name = f.source.removeprefix("hf://").rsplit("/", 1)
            log.info("downloading %s/%s into %s", repo, name, f.dest)
            try:
                done.append(hf_download(repo, name, f.dest))
            except CirflowError:
                raise
            except Exception as exc:  # huggingface_hub's HTTP / offline errors
                raise CirflowError(f"could not download {repo}/{name}: {exc}") from exc
        else:
            download_url(f.source, f.dest)
            done.append(f.dest)
    return done


# -- command line --------------------------------------------------------------------------------


def _yolo_names(values: list[str] | None) -> list[str]:
    names = values if values is not None else ["yolov8n.pt"]
    return [n for n in names if n.lower() != "none"]


def _backbones(values: list[str] | None) -> list[str]:
    return values if values is not None else ["pretrain"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="fetch/check pretrained weights (BLIP-2, ViT, BERT, YOLO) for offline nodes",
        description=(
            "Pretrained weights for machines without internet: `fetch` downloads them into a "
            "cache folder (on a machine with internet), `check` says offline what is there, "
            "`env` prints the variables that make the workflow read that folder. "
            "Layout: docs/cluster.md."
        ),
    )
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    for name, help_text in (
        ("fetch", "download the missing files (needs internet)"),
        ("check", "report present/missing files (offline); exit 1 when any is missing"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--backbone",
            action="append",
            choices=sorted(BACKBONE_FILES),
            help="model preset(s) whose weights to handle; repeatable (default: pretrain)",
        )
        p.add_argument(
            "--yolo",
            action="append",
            metavar="NAME",
            help="ultralytics weights, e.g. yolov8n.pt; repeatable; `none` for no YOLO "
            "(default: yolov8n.pt)",
        )
        p.add_argument(
            "--cache-dir",
            default=DEFAULT_CACHE_DIR,
            metavar="DIR",
            help=f"cache folder (default: {DEFAULT_CACHE_DIR}, where the Makefile points TORCH_HOME/HF_HOME)",
        )
        if name == "fetch":
            p.add_argument("--force", action="store_true", help="download again what is present")
            p.add_argument("--dry-run", action="store_true", help="list what would be downloaded")
        p.set_defaults(func=cmd_fetch if name == "fetch" else cmd_check)
    p = sub.add_parser("env", help="print the shell exports that make the workflow read DIR")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, metavar="DIR")
    p.set_defaults(func=cmd_env)


def _describe(f: WeightFile) -> str:
    where = f.dest / f"models--{BERT_REPO}" if f.kind == "hf" else f.dest
    return f"{f.what:<32} {f.source}\n{'':<32}   -> {where}"


def cmd_fetch(args: argparse.Namespace) -> int:
    backbones, yolo = _backbones(args.backbone), _yolo_names(args.yolo)
    files = plan(args.cache_dir, backbones, yolo)
    if args.dry_run:
        for f in files:
            state = "present" if locate(f) else "to fetch"
            print(f"[{state}] {_describe(f)}")
        return 0
    fetch(files, force=args.force)
    left = missing(files)
    if left:
        raise CirflowError("still missing after fetch: " + ", ".join(f.what for f in left))
    print(f"all {len(files)} files present in {args.cache_dir}; on the offline machine:")
    print(f'  eval "$(cirflow weights env --cache-dir {Path(args.cache_dir).resolve()})"')
    for name in yolo:
        print(f"  and set boxes.yolo.weights: {yolo_path(Path(args.cache_dir).resolve(), name)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    backbones, yolo = _backbones(args.backbone), _yolo_names(args.yolo)
    files = plan(args.cache_dir, backbones, yolo)
    absent = []
    for f in files:
        found = locate(f)
        print(
            f"{'ok' if found else 'MISSING':<8} {f.what:<32} {found or _describe(f).split('-> ')[-1]}"
        )
        if not found:
            absent.append(f)
    if absent:
        print(
            f"\n{len(absent)} of {len(files)} weight files missing in {args.cache_dir}. On a machine "
            f"with internet run\n  {fetch_command(args.cache_dir, backbones, yolo)}\nand copy "
            f"{args.cache_dir} here.",
            file=sys.stderr,
        )
        return 1
    print(f"all {len(files)} weight files present in {args.cache_dir}")
    return 0


def env_lines(cache_dir: str | os.PathLike) -> list[str]:
    cache = Path(cache_dir).resolve()
    return [
        f"export TORCH_HOME={torch_home(cache)}",
        f"export HF_HOME={hf_home(cache)}",
        "export HF_HUB_OFFLINE=1",
        "export TRANSFORMERS_OFFLINE=1",
        "export YOLO_OFFLINE=1",
        "export YOLO_AUTOINSTALL=false",
    ]


def cmd_env(args: argparse.Namespace) -> int:
    print("\n".join(env_lines(args.cache_dir)))
    return 0


__all__ = [
    "BACKBONE_FILES",
    "BERT_FILES",
    "WeightFile",
    "download_url",
    "fetch",
    "hf_download",
    "locate",
    "missing",
    "plan",
    "yolo_path",
]
