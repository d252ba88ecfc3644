"""What a workflow script runs, and a digest of its code, for the rules' `code` param.

The closure: the cirflow modules a script imports, directly or through other cirflow modules
(imports inside functions included), plus the package data (templates, vocabulary files) of the
packages those modules live in (a package's `__init__.py` alone does not count). The import
statements are read from the source text with regular expressions, nothing is imported: the
workflow parses without torch (every SLURM job parses the Snakefile again). It errs on the side
of listing too much (an import statement inside a docstring counts), never too little.

The digest (`script_digest`): a hash of the script and its closure by content, which each rule
carries as a param (`rules/common.smk` code_digest), so that Snakemake's params trigger reruns
exactly the rules whose code changed: `cirflow/data/demo.py` reruns the demo dataset, never
detection on real CIRR. A Python file counts by its syntax tree without positions and without
bare string statements (docstrings, and strings standing alone as statements, which do
nothing), so comments, docstrings and formatting rerun nothing; package data counts by its
bytes. Parsing every module costs about 0.2 s of CPU, in every Snakemake process (each SLURM
job parses the workflow again; the goal for a whole dry run is 1.3x a one-rule workflow's, see
benchmarks/bench_dryrun.py): the digests of files are kept on disk, keyed by each file's size,
mtime, ctime and inode, and recomputed when any of these differs.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

PACKAGE = "cirflow"
# Non-Python files the package reads at run time (as in pyproject.toml's package-data).
DATA_PATTERNS = ("templates/*.html", "*.txt")
# Part of every digest: raising it (a change of the normalisation) reruns every rule once.
DIGEST_VERSION = 1


# `from cirflow.x import a, b` / `from cirflow.x import (a,\n b)` / `import cirflow.x as y`,
# at any indentation (imports inside functions count).
_FROM = re.compile(
    rf"^[ \t]*from[ \t]+({PACKAGE}(?:\.\w+)*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)", re.M
)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n#]*)", re.M)


@functools.cache
def _imports(path: Path) -> frozenset[str]:
    """Every cirflow module `path` names in an import (a `from a import b` may name module a.b)."""
    text = path.read_text(encoding="utf-8")
    names: set[str] = set()
    for module, imported in _FROM.findall(text):
        names.add(module)
        for item in imported.strip("()").replace("\\", " ").split(","):
            if item.split():
                names.add(f"{module}.{item.split()[0]}")
    for imported in _IMPORT.findall(text):
        names.update(item.split()[0] for item in imported.split(",") if item.split())
    return frozenset(n for n in names if n == PACKAGE or n.startswith(PACKAGE + "."))


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _closure(root: Path, script: Path) -> tuple[str, ...]:
    files: set[Path] = set()
    todo = sorted(_imports(script))
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = _module_file(root, module)
        if path is None:  # a name imported from a module, not a module itself
            continue
        if path not in files:
            files.add(path)
            todo += sorted(_imports(path))
    # A package's data belongs to its modules: a script that only passes through a package's
    # __init__ (cirflow/report/ on the way to cirflow/report/results/) does not read it.
    packages = {p.parent for p in files if p.name != "__init__.py"}
    data = {d for pkg in packages for pattern in DATA_PATTERNS for d in pkg.glob(pattern)}
    return tuple(sorted(str(p.relative_to(root)) for p in files | data))


def script_sources(script: str | Path, root: str | Path = ".") -> list[str]:
    """The cirflow files (relative to `root`, the workflow folder) that `script` runs."""
    root = Path(root).resolve()
    return list(_closure(root, (root / script).resolve()))


# ------------------------------------------------------------------------------ digests
# A file changed this recently (mtime or ctime) may change again within the file system's
# timestamp granularity without its stamp changing: its digest is not kept.
_SETTLED_NS = 2_000_000_000
_CACHE_FORMAT = f"{DIGEST_VERSION} python{sys.version_info[0]}.{sys.version_info[1]}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _drop_bare_strings(statements: list[ast.stmt]) -> list[ast.stmt]:
    """`statements` without string expression statements (docstrings and strings standing alone,
    which do nothing), at every depth."""
    kept = []
    for stmt in statements:
        if (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str)
        ):
            continue
        for field in ("body", "orelse", "finalbody"):
            block = getattr(stmt, field, None)
            if isinstance(block, list):
                setattr(stmt, field, _drop_bare_strings(block))
        for clause in (*getattr(stmt, "handlers", ()), *getattr(stmt, "cases", ())):
            clause.body = _drop_bare_strings(clause.body)
        kept.append(stmt)
    return kept


def file_digest(path: str | Path) -> str:
    """sha256 of a Python file's syntax tree (no positions, no bare strings), else of its bytes."""
    data = Path(path).read_bytes()
    if Path(path).suffix == ".py":
        try:
            tree = ast.parse(data)
        except (SyntaxError, ValueError):
            # By its bytes: the job that runs it fails anyway, but the workflow must parse.
            return "bytes:" + _sha256(data)
        tree.body = _drop_bare_strings(tree.body)
        dump = ast.dump(tree, annotate_fields=False, include_attributes=False)
        return "ast:" + _sha256(dump.encode())
    return "bytes:" + _sha256(data)


class _DigestStore:
    """File digests of this process, and on disk when `path` is given: absolute path ->
    [size, mtime_ns, ctime_ns, inode, digest]. An entry counts only while all four match."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, list] = {}
        self.changed = False
        if path is None:
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("format") == _CACHE_FORMAT:
            files = data.get("files")
            self.entries = files if isinstance(files, dict) else {}

    def digest(self, path: Path) -> str:
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        key = str(path)
        entry = self.entries.get(key)
        if isinstance(entry, list) and entry[:4] == stamp and len(entry) == 5:
            return entry[4]
        digest = file_digest(path)
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS:
            self.entries[key] = [*stamp, digest]
            self.changed = True
        return digest

    def save(self) -> None:
        """Write the entries (atomically: a reader sees the old file or the new one), if new."""
        if self.path is None or not self.changed:
            return
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"format": _CACHE_FORMAT, "files": self.entries}))
            os.replace(tmp, self.path)
            self.changed = False
        except OSError:  # a read-only working directory: digests are recomputed next time
            tmp.unlink(missing_ok=True)


@functools.cache
def _store(path: Path | None) -> _DigestStore:
    return _DigestStore(path)


def script_digest(
    script: str | Path, root: str | Path = ".", cache: str | Path | None = None
) -> str:
    """sha256 of `script` and the files it runs (`script_sources`), by content (`file_digest`)
    and path relative to `root`: equal for comment, docstring and formatting edits, different
    for any change of code. `cache`: a JSON file (created) keeping file digests across
    processes."""
    root = Path(root).resolve()
    script_path = (root / script).resolve()
    files = {script_path.relative_to(root).as_posix(), *_closure(root, script_path)}
    store = _store(Path(cache).resolve() if cache is not None else None)
    lines = [f"{rel}\t{store.digest(root / rel)}" for rel in sorted(files)]
    store.save()
    return _sha256("\n".join([f"cirflow code {DIGEST_VERSION}", *lines]).encode())
