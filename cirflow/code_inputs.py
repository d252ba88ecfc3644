"""The cirflow source files a workflow script runs, for the rules' `code=` inputs.

A rule lists exactly the modules its script imports, directly or through other cirflow modules
(imports inside functions included), plus the package data (templates, vocabulary files) of the
packages those modules live in (a package's `__init__.py` alone does not count). So editing a module reruns the rules that run it and no others:
`cirflow/data/demo/scene.py` reruns the demo dataset, never detection on real CIRR.

The import statements are read from the source text, nothing is imported: the workflow parses
this way in milliseconds and without torch (every SLURM job parses the Snakefile again). A
regular expression rather than `ast`: a full parse of every module for every rule cost half a
second per dry run (benchmarks/bench_dryrun.py). It errs on the side of listing too much (an
import statement inside a docstring counts), never too little.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

PACKAGE = "cirflow"
# Non-Python files the package reads at run time (as in pyproject.toml's package-data).
DATA_PATTERNS = ("templates/*.html", "*.txt")


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
