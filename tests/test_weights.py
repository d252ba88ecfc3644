"""`cirflow weights`: the cache layout, the offline check and the download logic, all offline
(file:// URLs and a stand-in for the Hugging Face downloader; no test touches the network)."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from cirflow import weights
from cirflow.cli import main
from cirflow.errors import CirflowError

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
BERT_VOCAB = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n"


def _lavis_dir() -> Path:
    spec = importlib.util.find_spec("lavis")
    if spec is None:
        pytest.skip("LAVIS not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def fake_hf_download(repo: str, filename: str, hub_dir: Path) -> Path:
    """Writes a file where huggingface_hub's cache keeps it (refs/main -> snapshots/<commit>/)."""
    repo_dir = Path(hub_dir) / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(FAKE_COMMIT)
    path = repo_dir / "snapshots" / FAKE_COMMIT / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "vocab.txt": BERT_VOCAB,
        "tokenizer_config.json": '{"do_lower_case": true}',
        "config.json": '{"model_type": "bert"}',
    }.get(filename, f"fake {filename}")
    path.write_text(content)
    return path


def _local_sources(files, tmp_path: Path):
    """The plan with every URL replaced by a file:// URL of a local stand-in file."""
    src_dir = tmp_path / "server"
    src_dir.mkdir(exist_ok=True)
    out = []
    for f in files:
        if f.kind == "hf":
            out.append(f)
            continue
        src = src_dir / f.filename
        src.write_bytes(f"weights of {f.what}".encode())
        out.append(dataclasses.replace(f, source=src.as_uri()))
    return out


# -- the plan: which file goes where --------------------------------------------------------------


def test_plan_puts_each_file_where_its_library_looks(tmp_path):
    files = weights.plan(tmp_path, ["pretrain"], ["yolov8n.pt"])
    by_name = {f.filename: f for f in files}
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert by_name["eva_vit_g.pth"].dest == checkpoints / "eva_vit_g.pth"
    assert by_name["blip2_pretrained.pth"].dest == checkpoints / "blip2_pretrained.pth"
    assert by_name["yolov8n.pt"].dest == tmp_path / "yolo" / "yolov8n.pt"
    assert by_name["yolov8n.pt"].source.endswith("/yolov8n.pt")
    hf = [f for f in files if f.kind == "hf"]
    assert {f.filename for f in hf} == set(weights.BERT_FILES)
    assert all(f.dest == tmp_path / "huggingface" / "hub" for f in hf)


def test_plan_vitl_tiny_and_dedup(tmp_path):
    vitl = {f.filename for f in weights.plan(tmp_path, ["pretrain_vitL"], [])}
    assert {"clip_vit_L.pth", "blip2_pretrained_vitL.pth", "vocab.txt"} <= vitl
    assert "eva_vit_g.pth" not in vitl
    assert weights.plan(tmp_path, ["tiny"], []) == []
    both = weights.plan(tmp_path, ["pretrain", "pretrain_vitL"], ["yolov8n.pt", "yolov8n.pt"])
    sources = [f.source for f in both]
    assert len(sources) == len(set(sources))
    assert sum(f.filename == "vocab.txt" for f in both) == 1


def test_plan_rejects_unknown_names(tmp_path):
    with pytest.raises(CirflowError, match="unknown backbone"):
        weights.plan(tmp_path, ["vit_huge"], [])
    with pytest.raises(CirflowError, match="release asset name"):
        weights.plan(tmp_path, [], ["../yolov8n.pt"])


def test_urls_are_the_ones_lavis_downloads():
    lavis = _lavis_dir()
    for backbone, config in (
        ("pretrain", "blip2_pretrain.yaml"),
        ("pretrain_vitL", "blip2_pretrain_vitL.yaml"),
    ):
        cfg = yaml.safe_load((lavis / "configs" / "models" / "blip2" / config).read_text())
        assert cfg["model"]["pretrained"] in weights.BACKBONE_FILES[backbone].values()
    eva_url = weights.BACKBONE_FILES["pretrain"]["EVA ViT-g/14"]
    clip_url = weights.BACKBONE_FILES["pretrain_vitL"]["CLIP ViT-L/14"]
    assert f'"{eva_url}"' in (lavis / "models" / "eva_vit.py").read_text()
    assert f'"{clip_url}"' in (lavis / "models" / "clip_vit.py").read_text()
    assert (
        'from_pretrained("bert-base-uncased")'
        in (lavis / "models" / "blip2_models" / "blip2.py").read_text()
    )


def test_urls_agree_with_the_model_presets():
    presets = pytest.importorskip("cirflow.model.presets")
    for name in ("pretrain", "pretrain_vitL"):
        preset = presets.PRESETS[name]
        urls = set(weights.BACKBONE_FILES[name].values())
        assert preset.pretrained in urls
        assert presets.VIT_WEIGHTS[preset.vit_model] in urls


def test_yolo_release_is_ultralytics_default():
    from ultralytics.utils import downloads

    release = inspect.signature(downloads.attempt_download_asset).parameters["release"].default
    assert (
        weights.YOLO_RELEASE_URL
        == f"https://github.com/{downloads.GITHUB_ASSETS_REPO}/releases/download/{release}/"
    )
    assert "yolov8n.pt" in downloads.GITHUB_ASSETS_NAMES


def test_torch_home_layout_is_lavis_cache(tmp_path, monkeypatch):
    """LAVIS's download_cached_file looks in timm's hub cache: $TORCH_HOME/hub/checkpoints."""
    with warnings.catch_warnings():  # the deprecated module path is the one LAVIS imports
        warnings.simplefilter("ignore", FutureWarning)
        from timm.models import hub as timm_hub

    monkeypatch.setenv("TORCH_HOME", str(weights.torch_home(tmp_path)))
    eva = next(f for f in weights.plan(tmp_path, ["pretrain"], []) if f.filename == "eva_vit_g.pth")
    assert Path(timm_hub.get_cache_dir()) == eva.dest.parent


# -- check (offline) ------------------------------------------------------------------------------


def test_check_reports_missing_and_names_the_fetch_command(tmp_path, capsys):
    rc = main(
        [
            "weights",
            "check",
            "--backbone",
            "pretrain",
            "--yolo",
            "yolov8n.pt",
            "--cache-dir",
            str(tmp_path),
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 1
    assert "MISSING" in out and "eva_vit_g.pth" in out and "yolov8n.pt" in out
    assert (
        f"cirflow weights fetch --backbone pretrain --yolo yolov8n.pt --cache-dir {tmp_path}" in err
    )


def test_check_tiny_without_yolo_needs_nothing(tmp_path, capsys):
    assert (
        main(
            [
                "weights",
                "check",
                "--backbone",
                "tiny",
                "--yolo",
                "none",
                "--cache-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert "all 0 weight files present" in capsys.readouterr().out


def test_empty_file_counts_as_missing(tmp_path):
    (f,) = weights.plan(tmp_path, [], ["yolov8n.pt"])
    f.dest.parent.mkdir(parents=True)
    f.dest.write_bytes(b"")
    assert weights.missing([f]) == [f]
    f.dest.write_bytes(b"x")
    assert weights.missing([f]) == []


# -- downloading (file:// and a stand-in downloader) ------------------------------------------------


def test_download_url_file_scheme_is_atomic(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00\x01" * 1000)
    dest = tmp_path / "out" / "w.pth"
    weights.download_url(src.as_uri(), dest)
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["w.pth"]
    with pytest.raises(CirflowError, match="could not download"):
        weights.download_url((tmp_path / "absent.pth").as_uri(), tmp_path / "out" / "absent.pth")
    assert not (tmp_path / "out" / "absent.pth").exists()
    assert [p.name for p in dest.parent.iterdir()] == ["w.pth"]


def test_fetch_then_check_passes_and_skips_present_files(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls = []

    def counting_hf(repo, filename, hub_dir):
        calls.append(filename)
        return fake_hf_download(repo, filename, hub_dir)

    monkeypatch.setattr(weights, "hf_download", counting_hf)
    cache = tmp_path / "cache"
    files = _local_sources(weights.plan(cache, ["pretrain"], ["yolov8n.pt"]), tmp_path)
    assert weights.missing(files) == files
    weights.fetch(files)
    assert weights.missing(files) == []
    assert sorted(calls) == sorted(weights.BERT_FILES)
    assert (
        cache / "torch" / "hub" / "checkpoints" / "eva_vit_g.pth"
    ).read_bytes() == b"weights of EVA ViT-g/14"

    # A second fetch downloads nothing: the sources are gone, the files are present.
    for p in (tmp_path / "server").iterdir():
        p.unlink()
    weights.fetch(files)
    assert len(calls) == len(weights.BERT_FILES)

    # The CLI's check agrees (it plans the same paths from the real URLs).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    capsys.readouterr()
    assert main(["weights", "check", "--cache-dir", str(cache)]) == 0
    assert "all 8 weight files present" in capsys.readouterr().out


def test_fetch_refuses_offline_variables_for_hugging_face(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights, "hf_download", fake_hf_download)
    with pytest.raises(CirflowError, match="HF_HUB_OFFLINE"):
        weights.fetch(weights.plan(tmp_path, ["pretrain"], []))


def test_transformers_reads_the_fetched_tokenizer_offline(tmp_path):
    """The HF layout `fetch` writes is what transformers reads with HF_HOME set and offline."""
    hf = [f for f in weights.plan(tmp_path, ["pretrain"], []) if f.kind == "hf"]
    for f in hf:  # the slow tokenizer's files (stand-ins for the others would not parse)
        if f.filename in ("vocab.txt", "tokenizer_config.json", "config.json"):
            fake_hf_download(weights.BERT_REPO, f.filename, f.dest)
    code = (
        "from transformers import BertTokenizer\n"
        "tok = BertTokenizer.from_pretrained('bert-base-uncased')\n"
        "print(tok.convert_tokens_to_ids(['hello', 'world']))\n"
    )
    env = dict(
        os.environ,
        HF_HOME=str(weights.hf_home(tmp_path)),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("[5, 6]")


def test_yolo_weights_path_is_accepted_by_the_detector(tmp_path):
    yolo = pytest.importorskip("cirflow.boxes.yolo")
    path = weights.yolo_path(tmp_path, "yolov8n.pt")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stand-in")
    assert yolo.resolve_weights(str(path)) == str(path)


def test_env_exports_the_cache_and_offline_variables(tmp_path, capsys):
    assert main(["weights", "env", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"export TORCH_HOME={tmp_path.resolve() / 'torch'}" in out
    assert f"export HF_HOME={tmp_path.resolve() / 'huggingface'}" in out
    assert "export HF_HUB_OFFLINE=1" in out
