"""The workflow end to end through the snakemake CLI on a small demo."""

import json
from pathlib import Path

import pytest
from conftest import REPO, make_workflow_copy, run_snakemake


@pytest.fixture
def finished_run(finished_demo_run):
    return finished_demo_run


@pytest.mark.slow
def test_demo_run_produces_boxes_and_stats(finished_run):
    results = finished_run / "results" / "demo"
    for split in ("train", "val", "test1"):
        boxes = json.loads((results / f"boxes/saliency/{split}.json").read_text())
        stats = json.loads((results / f"boxes/saliency/{split}.stats.json").read_text())
        split_file = json.loads(
            (results / f"dataset/cirr/image_splits/split.rc2.{split}.json").read_text()
        )
        assert sorted(boxes) == sorted(split_file)
        assert stats["images"] == len(split_file)
        assert stats["total_boxes"] == sum(len(v) for v in boxes.values())
        assert stats["pct_with_boxes"] > 50
    assert (finished_run / "logs/demo/demo_dataset.log").exists()
    # The results page (with the stage table); the test-server files' details list no bad image.
    assert 'id="stages"' in (results / "report/results.html").read_text()
    assert not (results / "report/stages.html").exists()
    details = json.loads((results / "eval/stage2/test1_details.json").read_text())
    assert details["unreadable_images"] == [] and details["fallback_queries"] == []


@pytest.mark.slow
def test_nothing_to_do_after_a_full_run(finished_run):
    proc = run_snakemake(finished_run, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_bad_config_type_names_the_key(tmp_path):
    workdir = make_workflow_copy(tmp_path / "wf", {"boxes": {"shards": "many"}})
    proc = run_snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "boxes.shards: 'many' is not of type 'object'" in out


HEAVY = ("torch", "torchvision", "lavis", "ultralytics", "transformers")


def test_parsing_the_workflow_imports_no_heavy_package(tmp_path, repo):
    """Every SLURM job parses the Snakefile again: the parse must not pay for torch & co.
    Stand-in packages that leave a mark when imported shadow the real ones."""
    import os
    import subprocess

    from conftest import SNAKEMAKE

    blockers = tmp_path / "blockers"
    marks = tmp_path / "marks"
    marks.mkdir()
    for name in HEAVY:
        (blockers / name).mkdir(parents=True)
        (blockers / name / "__init__.py").write_text(
            f"open({str(marks / name)!r}, 'w').close()\n"
            f"raise ImportError('{name} imported while parsing the workflow')\n"
        )
    env = {**os.environ, "PYTHONPATH": str(blockers)}
    proc = subprocess.run(
        [str(SNAKEMAKE), "-n", "--quiet", "rules", "--cores", "1"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in marks.iterdir()) == []


SCRIPTS_DIR = REPO / "workflow_scripts"
SCRIPTS = sorted(p.stem for p in SCRIPTS_DIR.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_code_closure_covers_what_the_script_really_imports(script, repo):
    """The files a rule's code digest covers (the static import closure of its script) hold
    every cirflow module that importing the script's own imports loads."""
    import ast
    import subprocess
    import sys

    from cirflow.code_inputs import script_sources

    path = SCRIPTS_DIR / f"{script}.py"
    modules = sorted(
        {
            node.module
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module.startswith("cirflow")
        }
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print('\\n'.join(m.__file__ for n, m in sys.modules.items()"
        " if n.split('.')[0] == 'cirflow' and getattr(m, '__file__', None)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    loaded = {str(Path(f).resolve().relative_to(repo)) for f in proc.stdout.split()}
    listed = set(script_sources(f"workflow_scripts/{script}.py", repo))
    assert loaded and loaded <= listed, sorted(loaded - listed)


def test_code_closure_keeps_unrelated_modules_out(repo):
    """Editing the demo generator must not rerun detection on real CIRR; training and
    evaluation run the image transform; the report's code is the report's alone."""
    from cirflow.code_inputs import script_sources

    def code(script):
        return set(script_sources(f"workflow_scripts/{script}.py", repo))

    demo = {p.relative_to(repo).as_posix() for p in (repo / "cirflow/data/demo").glob("*.py")}
    assert len(demo) > 1 and demo <= code("demo_dataset")
    for script in ("detect_shard", "merge_boxes", "box_stats", "train_stage", "evaluate"):
        assert not demo & code(script), script
    for script in ("train_stage", "evaluate"):
        assert "cirflow/data/transforms.py" in code(script), script
        assert not {f for f in code(script) if f.startswith(("cirflow/report/", "cirflow/boxes/"))}
    assert "cirflow/report/boxes/templates/boxes_report.html" in code("box_report")
    for script in set(SCRIPTS) - {"box_report", "results_report"}:
        assert not {f for f in code(script) if f.startswith("cirflow/report/")}, script
    # The two pages are apart but for what they share (the jinja setup and base template): box
    # report code (template included) never reruns the results page, nor the reverse; the
    # results page runs no model or box code (torch-free).
    results, boxes = code("results_report"), code("box_report")
    assert "cirflow/report/results/templates/results.html" in results
    shared = {"cirflow/report/html.py", "cirflow/report/templates/base.html"}
    assert shared <= results and shared <= boxes
    assert not {f for f in results if f.startswith("cirflow/report/") and "/results/" not in f} - {
        "cirflow/report/__init__.py",
        *shared,
    }
    assert not {f for f in boxes if f.startswith("cirflow/report/results/")}
    model_side = ("cirflow/train/", "cirflow/evaluate/", "cirflow/model/", "cirflow/boxes/")
    assert not {f for f in results if f.startswith(model_side)}


def test_no_rule_needs_snakemakes_code_trigger(repo):
    """The profiles leave Snakemake's `code` rerun trigger out: for a `script:` rule it compares
    the script's mtime (a comment edit would rerun the rule), and the rules' code params cover
    the scripts by content. It also compares the code of `shell:` and `run:` rules, which would
    then go unchecked: there must be none (or the profiles must keep the trigger)."""
    import re

    import yaml

    for profile in ("default", "local", "slurm"):
        settings = yaml.safe_load((repo / "profiles" / profile / "config.yaml").read_text())
        assert sorted(settings["rerun-triggers"]) == ["input", "mtime", "params", "software-env"]
    for path in [repo / "Snakefile", *sorted((repo / "rules").glob("*.smk"))]:
        text = path.read_text()
        assert not re.search(r"(?m)^\s+(shell|run|notebook|wrapper|template_engine):", text), path
        rules = re.findall(r"(?m)^rule (\w+):", text)
        scripts = re.findall(r"(?m)^    script:", text)
        assert len(scripts) == len(rules) - (path.name == "Snakefile"), path


def test_the_stage_table_job_imports_no_heavy_package():
    """Rule compare_stages ends every run, after the last evaluation: it reads three JSON files
    and must not pay seconds for torch and LAVIS."""
    import subprocess
    import sys

    script = (REPO / "workflow_scripts" / "compare_stages.py").read_text()
    imports = "\n".join(
        line for line in script.splitlines() if line.startswith(("import ", "from "))
    )
    check = f"import sys\n{imports}\nprint(sorted(set(sys.modules) & set({HEAVY!r})))"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
