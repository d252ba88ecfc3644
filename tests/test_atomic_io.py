"""Atomic outputs under a real crash between write and rename, the cleanup of what such a crash
leaves, and byte-reproducible checkpoints."""

import subprocess
import sys

import pytest
from conftest import REPO, tiny_settings

from cirflow.io import remove_stale_temps, stale_temps, temp_name_pattern

# A process that dies (os._exit: no cleanup, no finally) after the temporary file is complete
# and before the rename, as a SIGKILL or a node failure at that point would.
CRASH = """
import os, sys
sys.path.insert(0, {repo!r})
kind, target = sys.argv[1], sys.argv[2]

def crash(src, dst):
    os._exit(17)

os.replace = crash
from cirflow import io
if kind == "json":
    io.write_json_atomic(target, {{"version": "new"}})
elif kind == "text":
    io.write_text_atomic(target, "new text\\n")
else:
    import torch
    from cirflow.model.checkpoints import save_atomic
    save_atomic({{"w": torch.ones(3)}}, target)
os._exit(0)
"""


def crash_while_writing(kind, target):
    script = CRASH.format(repo=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", script, kind, str(target)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _old_content(kind, target):
    if kind == "checkpoint":
        import torch

        torch.save({"w": torch.zeros(3)}, target)
    else:
        target.write_text("old content\n")
    return target.read_bytes()


@pytest.mark.parametrize(
    ("kind", "name"),
    [("json", "val_metrics.json"), ("text", "train_metrics.csv"), ("checkpoint", "last.pt")],
)
def test_a_crash_between_write_and_rename_leaves_the_old_file(kind, name, tmp_path):
    target = tmp_path / name
    old = _old_content(kind, target)
    proc = crash_while_writing(kind, target)
    assert proc.returncode == 17, proc.stderr
    assert target.read_bytes() == old  # never half-new
    leftovers = stale_temps(target)
    assert len(leftovers) == 1 and temp_name_pattern(target).fullmatch(leftovers[0].name)
    if kind == "json":
        assert leftovers[0].read_text() == '{"version": "new"}\n'  # complete, just not renamed
    # The next job of that output clears it; nothing else.
    assert remove_stale_temps([target]) == leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_crash_before_the_first_rename_leaves_no_output(tmp_path):
    target = tmp_path / "new.json"
    assert crash_while_writing("json", target).returncode == 17
    assert not target.exists() and len(stale_temps(target)) == 1


def test_stale_temps_are_only_those_of_the_given_outputs(tmp_path):
    own = [
        tmp_path / ".best.pt.a1b2c3d4.tmp.pt",
        tmp_path / ".best.pt.link",  # an interrupted publish_link
        tmp_path / ".shard-0-of-2.json.zz_9y8x7.tmp.json",
    ]
    others = [
        tmp_path / ".shard-1-of-2.json.q1w2e3r4.tmp.json",  # a concurrent shard's write
        tmp_path / ".best.pt.a1b2c3.tmp.pt",  # not a mkstemp name
        tmp_path / ".best.pt.a1b2c3d4.tmp.json",  # another suffix
        tmp_path / ".last.pt.a1b2c3d4.tmp.pt",  # an output not given
        tmp_path / "best.pt",
    ]
    for p in own + others:
        p.write_text("x")
    removed = remove_stale_temps([tmp_path / "best.pt", tmp_path / "shard-0-of-2.json"])
    assert sorted(removed) == sorted(own)
    assert all(p.exists() for p in others)
    assert remove_stale_temps([tmp_path / "missing/dir/x.json", tmp_path]) == []


def test_a_job_clears_its_outputs_stale_temps_when_it_starts(tmp_path):
    from cirflow.logs import job_log

    out = tmp_path / "results/x.json"
    out.parent.mkdir(parents=True)
    stale = out.parent / ".x.json.abcdefgh.tmp.json"
    stale.write_text("left by a killed job")
    with job_log(tmp_path / "logs/x.log", [str(out)]):
        assert not stale.exists()
    assert "removed 1 stale temporary file" in (tmp_path / "logs/x.log").read_text()


def _settings(root, out, **kw):
    return tiny_settings(root, out, **kw)


def test_training_clears_stale_temps_of_its_own_files_first(tiny_demo, tmp_path, monkeypatch):
    from cirflow.train.loop import Trainer

    out = tmp_path / "stage1"
    (out / "resume").mkdir(parents=True)
    own = [
        out / ".last.pt.k3j4h5g6.tmp.pt",
        out / ".best.pt.link",
        out / ".hparams.json.aaaaaaaa.tmp.json",
        out / "resume/.best.pt.0a9b8c7d.tmp.pt",
    ]
    foreign = out / ".notes.txt.aaaaaaaa.tmp.txt"
    for p in [*own, foreign]:
        p.write_bytes(b"stale")

    class Stop(Exception):
        pass

    def stop(self):
        raise Stop

    monkeypatch.setattr(Trainer, "build", stop)
    with pytest.raises(Stop):
        Trainer(_settings(tiny_demo, out)).run()
    assert not any(p.exists() for p in own)
    assert foreign.exists()


def test_two_identical_trainings_write_byte_identical_checkpoints(tiny_demo, tmp_path):
    """The archive records of a checkpoint must not carry the random temporary file name."""
    import shutil

    from cirflow.train.loop import train

    out = tmp_path / "run"
    files = {}
    for attempt in range(2):
        train(_settings(tiny_demo, out, resume=False))
        files[attempt] = {n: (out / n).read_bytes() for n in ("best.pt", "last.pt")}
        shutil.rmtree(out)
    for name in ("best.pt", "last.pt"):
        assert files[0][name] == files[1][name], name
