"""Project conventions checked on every test run: lint and format of Python and Snakemake code."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

BIN = Path(sys.executable).parent
PYTHON_DIRS = ["cirflow", "workflow_scripts", "tests", "benchmarks"]


def run(*cmd):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "cmd",
    [
        ["ruff", "check", *PYTHON_DIRS],
        ["ruff", "format", "--check", *PYTHON_DIRS],
        ["snakefmt", "--check", "Snakefile", "rules"],
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_code_is_linted_and_formatted(cmd):
    proc = run(str(BIN / cmd[0]), *cmd[1:])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_layer_contracts_hold():
    """pyproject.toml's import-linter contracts: train -> evaluate -> model -> data and
    report -> boxes -> data, the two sides apart, no library module importing a CLI module,
    LAVIS imported by cirflow.model.lavis_modules alone."""
    proc = run(str(BIN / "lint-imports"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "0 broken" in out, out


def test_no_comment_cites_a_document_outside_the_repository():
    pattern = ("DESIGN" + " §", "../shared/" + "DESIGN")
    offenders = [
        f"{path.relative_to(REPO)}:{i}"
        for folder in (*PYTHON_DIRS, "rules", "docs", "requirements", "schemas", "config")
        for path in sorted((REPO / folder).rglob("*"))
        if path.is_file() and path.suffix in (".py", ".smk", ".md", ".yaml", ".txt")
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(p in line for p in pattern)
    ]
    offenders += [
        f"{name}:{i}"
        for name in ("README.md", "Makefile", "config.yaml", "Snakefile", "pyproject.toml")
        for i, line in enumerate((REPO / name).read_text(encoding="utf-8").splitlines(), 1)
        if any(p in line for p in pattern)
    ]
    assert not offenders, "cite docs/design.md instead: " + ", ".join(offenders)


def test_snakemake_lint_is_clean():
    proc = run(str(BIN / "snakemake"), "--lint")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations" in out, out


def test_every_rule_logs_and_heavy_rules_benchmark():
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    rules = [block for block in text.split("\nrule ")[1:]]
    assert rules
    for block in rules:
        name = block.split(":", 1)[0]
        assert "\n    log:" in block, f"rule {name} has no log:"
    heavy = ("detect_shard", "train", "evaluate", "train_detector")
    for block in rules:
        name = block.split(":", 1)[0]
        if name in heavy:
            assert "\n    benchmark:" in block, f"heavy rule {name} has no benchmark:"
            assert "gpu=" in block, f"heavy rule {name} declares no gpu resource"
