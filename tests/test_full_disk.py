"""A full disk: every output's write failure names the file being written, the free space left
on its file system and what to do, and leaves what was written before as it was (no partial file,
no temporary). Nothing fills a real disk: writes are made to fail as they fail on one (ENOSPC from
the file, or /dev/full, which refuses every write with ENOSPC), and torch.save gets a file that
fills up after N bytes, so its own errors are the real ones."""

import errno
import io
import os
from pathlib import Path

import pytest
import torch

from cirflow.errors import CirflowError
from cirflow.io import (
    atomic_path,
    stale_temps,
    write_bytes_atomic,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)
from cirflow.model import checkpoints
from cirflow.model.checkpoints import save_atomic

DEV_FULL = Path("/dev/full")


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def assert_names_the_file(exc: pytest.ExceptionInfo, target: Path) -> None:
    message = str(exc.value)
    assert f"cannot write {target}:" in message
    assert "free on its file system" in message
    assert "Free space there" in message and "rerun" in message


def assert_untouched(target: Path, old: bytes | None) -> None:
    if old is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == old
    assert stale_temps(target) == []


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("val_metrics.json", lambda p: write_json_atomic(p, {"new": 1})),
        ("summary.md", lambda p: write_text_atomic(p, "new\n")),
        ("train_metrics.csv", lambda p: write_csv_atomic(p, [{"epoch": 1}], ["epoch"])),
        ("summary.png", lambda p: write_bytes_atomic(p, b"\x89PNG new")),
    ],
)
def test_a_full_disk_names_the_file_and_keeps_the_old_one(name, write, tmp_path, monkeypatch):
    target = tmp_path / name
    target.write_bytes(b"old")
    monkeypatch.setattr(Path, "write_text", no_space)
    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(CirflowError) as exc:
        write(target)
    assert_names_the_file(exc, target)
    assert "no space left on the device" in str(exc.value)
    assert "is as it was" in str(exc.value)
    assert_untouched(target, b"old")


def test_a_quota_is_named_as_such(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(CirflowError, match="disk quota exceeded"), atomic_path(target):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert_untouched(target, None)


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(PermissionError), atomic_path(tmp_path / "out.json"):
        raise PermissionError(errno.EACCES, "denied")
    with pytest.raises(RuntimeError, match="CUDA out of memory"), atomic_path(tmp_path / "x"):
        raise RuntimeError("CUDA out of memory")


class FillsUp(io.FileIO):
    """A file on a disk that is full after `room` bytes (the write raises ENOSPC, as the
    kernel's does)."""

    room = 0

    def write(self, data):
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


# 10 bytes: torch's first write fails and the OSError is what comes out (raised again when the
# buffered file is closed); 5000: torch's archive writer raises its own RuntimeError
# ("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") with the ENOSPC only
# as its context — the message that named no file.
@pytest.mark.parametrize("room", [10, 5000])
def test_a_checkpoint_on_a_full_disk_names_the_file(room, tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    torch.save({"w": torch.zeros(3)}, target)
    old = target.read_bytes()
    FillsUp.room = room

    def open_filling_up(path, mode="r", *args, **kwargs):
        return io.BufferedWriter(FillsUp(path, mode))

    monkeypatch.setattr(checkpoints, "open", open_filling_up, raising=False)
    with pytest.raises(CirflowError) as exc:
        save_atomic({"w": torch.randn(1000, 100)}, target)
    assert_names_the_file(exc, target)
    assert "no space left on the device" in str(exc.value)
    assert_untouched(target, old)


@pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full")
def test_torch_writing_to_a_full_device_is_reported_with_the_file(tmp_path):
    """torch.save to a path writes through C++: its RuntimeError carries no errno at all."""
    target = tmp_path / "best.pt"
    with pytest.raises(CirflowError) as exc, atomic_path(target):
        torch.save({"w": torch.randn(1000, 100)}, str(DEV_FULL))
    assert_names_the_file(exc, target)
    assert "torch could not write it" in str(exc.value)
    assert "unexpected pos" in str(exc.value)  # torch's own words, kept
    assert_untouched(target, None)


@pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full")
def test_a_real_enospc_from_the_kernel_is_reported(tmp_path):
    target = tmp_path / "shard-0-of-1.json"
    with pytest.raises(CirflowError, match="no space left on the device"), atomic_path(target):
        with open(DEV_FULL, "wb") as full:
            full.write(b"{}" * 10)
    assert_untouched(target, None)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_tensorboard_events_on_a_full_disk_name_the_folder(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.compat.tensorflow_stub.io import gfile

    from cirflow.train.history import RunState, write_events

    state = RunState(train_rows=[{"epoch": 1, "loss_itc": 0.5}], val_rows=[])
    first = write_events(tmp_path, state)
    before = sorted(p.name for p in first.iterdir())
    monkeypatch.setattr(gfile.LocalFileSystem, "write", no_space)
    monkeypatch.setattr(gfile.LocalFileSystem, "append", no_space, raising=False)
    with pytest.raises(CirflowError) as exc:
        write_events(tmp_path, state)
    assert_names_the_file(exc, tmp_path / "tb")
    assert sorted(p.name for p in first.iterdir()) == before  # the old events stay
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tb"]  # no staging folder left


def test_a_demo_image_on_a_full_disk_names_the_image(tmp_path, monkeypatch):
    from cirflow.data.demo import DemoSpec, generate_demo

    real = Path.write_bytes

    def no_space_for_pngs(self, data):
        if self.name.endswith(".png"):
            no_space()
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", no_space_for_pngs)
    with pytest.raises(CirflowError) as exc:
        generate_demo(tmp_path, DemoSpec(0, 4, 4, 4), workers=1, progress=False)
    message = str(exc.value)
    assert message.startswith(f"cannot write {tmp_path}/train/") and ".png:" in message
    assert "free on its file system" in message
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob(".*.tmp*"))


def test_publishing_best_pt_on_a_full_disk_names_it(tmp_path, monkeypatch):
    """Where best.pt cannot be a hard link of resume/best.pt it is a copy, which needs room."""
    from cirflow.model.checkpoints import publish_link

    stash, published = tmp_path / "resume/best.pt", tmp_path / "best.pt"
    stash.parent.mkdir()
    stash.write_bytes(b"new weights")
    published.write_bytes(b"old weights")

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(checkpoints.os, "link", cross_device)
    monkeypatch.setattr(checkpoints.shutil, "copyfile", no_space)
    with pytest.raises(CirflowError) as exc:
        publish_link(stash, published)
    assert_names_the_file(exc, published)
    assert published.read_bytes() == b"old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "resume"]
