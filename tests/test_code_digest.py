"""The rules' code param (cirflow/code_inputs.py script_digest): by content, blind to comments,
docstrings and formatting, and never trusting a stale cache entry."""

import os
import shutil
import time

import pytest

from cirflow import code_inputs
from cirflow.code_inputs import file_digest, script_digest

MODULE = '''"""A module."""

import math

SCALE = 2.0
NAME = "crop"


def resize(size, factor=SCALE):
    """Scale `size`."""
    scaled = size * factor
    return math.floor(scaled)


class Transform:
    """A transform."""

    label = NAME

    def __call__(self, x):
        """Apply it."""
        return resize(x)
'''

# The same code, written differently: comments, other docstrings, a string standing alone,
# other quotes, line breaks, parentheses and a trailing comma.
SAME_CODE = '''#!/usr/bin/env python
"""Another docstring, several lines long.

It says more.
"""
import math  # for floor
"""A string standing alone does nothing."""

SCALE = 2.0


NAME = 'crop'


def resize(size, factor=SCALE):
    # no docstring now
    scaled = (size
              * factor)
    return math.floor(
        scaled,
    )


class Transform:
    label = NAME

    def __call__(self, x):
        """Apply it, differently."""
        return resize(x)  # a comment
'''

SCRIPT = '''"""Runs the transform."""

from cirflow.mod import resize

print(resize(3))
'''


@pytest.fixture
def root(tmp_path):
    """A workflow folder: cirflow/mod.py (+ a template), workflow_scripts/run.py imports it."""
    root = tmp_path / "wf"
    (root / "cirflow" / "templates").mkdir(parents=True)
    (root / "workflow_scripts").mkdir()
    (root / "cirflow" / "__init__.py").write_text("")
    (root / "cirflow" / "mod.py").write_text(MODULE)
    (root / "cirflow" / "other.py").write_text("VALUE = 1\n")
    (root / "cirflow" / "templates" / "page.html").write_text("<p>{{ x }}</p>\n")
    (root / "workflow_scripts" / "run.py").write_text(SCRIPT)
    return root


def digest(root, cache=None):
    return script_digest("workflow_scripts/run.py", root, cache=cache)


def test_comments_docstrings_and_formatting_do_not_count(root):
    mod = root / "cirflow" / "mod.py"
    before = digest(root), file_digest(mod)
    mod.write_text(SAME_CODE)
    assert (digest(root), file_digest(mod)) == before


def test_the_script_counts_by_its_code_too(root):
    script = root / "workflow_scripts" / "run.py"
    before = digest(root)
    script.write_text("# a comment\n" + SCRIPT.replace('"""Runs', '"""It runs'))
    assert digest(root) == before
    script.write_text(SCRIPT.replace("resize(3)", "resize(4)"))
    assert digest(root) != before


@pytest.mark.parametrize(
    "old, new",
    [
        ("SCALE = 2.0", "SCALE = 3.0"),  # a constant
        ("SCALE = 2.0", "SCALE = 2"),  # the same number, another type
        (
            "scaled = size * factor\n    return math.floor(scaled)",
            "s = size * factor\n    return math.floor(s)",
        ),  # fmt: skip
        ('NAME = "crop"', 'NAME = "pad"'),  # a string that is not a docstring
        ("label = NAME\n", 'label = NAME\n    """Now a string standing alone."""\n    x = 1\n'),
        ("return resize(x)", "print(x)\n        return resize(x)"),  # a statement added
    ],
)
def test_a_change_of_code_counts(root, old, new):
    mod = root / "cirflow" / "mod.py"
    before = digest(root), file_digest(mod)
    assert old in MODULE
    mod.write_text(MODULE.replace(old, new))
    after = digest(root), file_digest(mod)
    assert after[0] != before[0] and after[1] != before[1]


def test_package_data_counts_by_its_bytes_and_other_modules_not_at_all(root):
    before = digest(root)
    (root / "cirflow" / "other.py").write_text("VALUE = 2\n")  # not imported by the script
    assert digest(root) == before
    (root / "cirflow" / "templates" / "page.html").write_text("<p>{{ x }}</p>\n\n")
    assert digest(root) != before


def test_the_digest_does_not_depend_on_where_the_workflow_is(root, tmp_path):
    copy = tmp_path / "elsewhere" / "wf"
    shutil.copytree(root, copy)
    assert digest(copy) == digest(root)


def test_a_file_that_does_not_parse_counts_by_its_bytes(root):
    mod = root / "cirflow" / "mod.py"
    mod.write_text(MODULE + "def broken(:\n")
    broken = digest(root)
    mod.write_text(MODULE + "def broken(: # now with a comment\n")
    assert digest(root) != broken


@pytest.fixture
def settled_at_once(monkeypatch):
    """Keep every digest at once (the store waits until a file is 2 s old)."""
    monkeypatch.setattr(code_inputs, "_SETTLED_NS", -(10**12))
    code_inputs._store.cache_clear()
    yield
    code_inputs._store.cache_clear()


def new_process():
    """What a new Snakemake process sees: no digest in memory, only the cache file."""
    code_inputs._store.cache_clear()


def test_a_cached_digest_is_reused_by_the_next_process(
    root, tmp_path, settled_at_once, monkeypatch
):
    cache = tmp_path / "cache" / "digests.json"
    first = digest(root, cache)
    assert cache.is_file()
    new_process()
    parsed = []
    monkeypatch.setattr(code_inputs, "file_digest", lambda p: parsed.append(p) or "?")
    assert digest(root, cache) == first and parsed == []


def test_a_stale_cache_entry_is_never_trusted(root, tmp_path, settled_at_once):
    """An edit that keeps the size and puts the old mtime back (rsync -t, cp -p, touch -r):
    ctime still tells it apart."""
    cache = tmp_path / "digests.json"
    mod = root / "cirflow" / "mod.py"
    first = digest(root, cache)
    st = mod.stat()

    def rewrite(text):
        time.sleep(0.02)  # past the file system's timestamp granularity: a new ctime
        mod.write_text(text)
        os.utime(mod, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (mod.stat().st_size, mod.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)

    changed = MODULE.replace("SCALE = 2.0", "SCALE = 3.0")
    rewrite(changed)
    new_process()
    assert digest(root, cache) != first
    # And in the same process, which keeps digests in memory.
    rewrite(MODULE)
    assert digest(root, cache) == first


def test_a_file_just_written_is_not_cached(root, tmp_path):
    """Within the file system's timestamp granularity, a second edit may leave the stamp as it
    was: a digest is kept only once the file is 2 s old."""
    code_inputs._store.cache_clear()
    cache = tmp_path / "digests.json"
    digest(root, cache)
    assert not cache.exists()


def test_a_broken_cache_file_is_ignored(root, tmp_path, settled_at_once):
    cache = tmp_path / "digests.json"
    first = digest(root, cache)
    for text in ("not json", '{"format": "old", "files": {}}', "[]"):
        cache.write_text(text)
        new_process()
        assert digest(root, cache) == first
