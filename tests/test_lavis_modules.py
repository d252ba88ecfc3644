"""cirflow.model.lavis_modules: LAVIS's model modules load without `import lavis` (no spacy,
decord, webdataset, pycocoevalcap, no LAVIS datasets or tasks), and a process that imported all
of LAVIS first keeps it. Each case runs in a fresh interpreter: what it checks is sys.modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

# What only LAVIS's datasets, processors and tasks import (requirements/3-lavis-nodeps.txt
# no longer installs them).
NOT_NEEDED = (
    "spacy",
    "thinc",
    "decord",
    "webdataset",
    "braceexpand",
    "pycocoevalcap",
    "pycocotools",
    "einops",
)
# Every LAVIS module importing cirflow.model.sprc may load (LAVIS 1.0.2).
LAVIS_MODULES = {
    "lavis",
    "lavis.common",
    "lavis.common.dist_utils",
    "lavis.common.logger",
    "lavis.common.registry",
    "lavis.common.utils",
    "lavis.models",
    "lavis.models.base_model",
    "lavis.models.blip2_models",
    "lavis.models.blip2_models.Qformer",
    "lavis.models.blip2_models.blip2",
    "lavis.models.clip_vit",
    "lavis.models.eva_vit",
    "lavis.processors",
    "lavis.processors.base_processor",
}


def run_python(code: str) -> dict:
    """Runs `code` in a fresh interpreter that imports this checkout's cirflow; the code prints
    one JSON object as its last line."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bare():
    """sys.modules after importing cirflow.model.sprc, then what a bare `lavis` says when asked
    for a name its __init__.py would have defined."""
    return run_python(
        """
        import json, sys
        import cirflow.model.sprc
        modules = sorted(sys.modules)
        import lavis
        try:
            lavis.models.load_model_and_preprocess
            missing = None
        except AttributeError as e:
            missing = str(e)
        print(json.dumps({"modules": modules, "missing": missing}))
        """
    )


def test_sprc_loads_no_dataset_or_task_package(bare):
    loaded = {m.split(".")[0] for m in bare["modules"]}
    assert sorted(loaded & set(NOT_NEEDED)) == []


def test_sprc_loads_only_lavis_model_modules(bare):
    lavis = {m for m in bare["modules"] if m == "lavis" or m.startswith("lavis.")}
    assert sorted(lavis - LAVIS_MODULES) == []
    assert "lavis.models.eva_vit" in lavis


def test_bare_package_says_why_a_name_is_missing(bare):
    assert "load_model_and_preprocess" in bare["missing"]
    assert "import lavis` before" in bare["missing"]


def test_full_lavis_imported_first_is_kept():
    """`import lavis` before cirflow: LAVIS's packages stay the full ones (registry, model zoo),
    and cirflow builds its model from the same classes."""
    result = run_python(
        """
        import json, sys
        try:
            import lavis
        except ModuleNotFoundError as e:  # an install without LAVIS's dataset packages
            print(json.dumps({"skip": f"full `import lavis` needs {e.name}"}))
            raise SystemExit
        full = {name: sys.modules[name] for name in ("lavis", "lavis.models", "lavis.processors")}

        from cirflow.model import lavis_modules
        from cirflow.model.presets import get_preset
        from cirflow.model.sprc import SPRC
        from lavis.common.registry import registry

        model = SPRC(get_preset("tiny_scratch"))
        print(json.dumps({
            "kept": [name for name, module in full.items() if sys.modules[name] is module],
            "zoo": callable(lavis.models.load_model_and_preprocess),
            "same_class": lavis_modules.Blip2Base is lavis.models.Blip2Base,
            "registry": registry.get_model_class("blip2") is lavis.models.Blip2Qformer,
            "built": isinstance(model.visual_encoder, lavis_modules.EvaVisionTransformer),
        }))
        """
    )
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result == {
        "kept": ["lavis", "lavis.models", "lavis.processors"],
        "zoo": True,
        "same_class": True,
        "registry": True,
        "built": True,
    }


def test_lavis_module_imports_a_registered_processor():
    """LAVIS's registry decorator imports BaseProcessor from the (bare) lavis.processors."""
    result = run_python(
        """
        import json
        from cirflow.model.lavis_modules import lavis_module

        blip = lavis_module("lavis.processors.blip_processors")
        registry = lavis_module("lavis.common.registry").registry
        print(json.dumps({
            "registered": registry.get_processor_class("blip_caption") is blip.BlipCaptionProcessor,
            "caption": blip.BlipCaptionProcessor()("Make it RED!"),
        }))
        """
    )
    assert result == {"registered": True, "caption": "make it red"}


def test_a_failed_load_leaves_no_bare_package():
    """A bare `lavis` left in sys.modules would pass for a real LAVIS on the next import."""
    result = run_python(
        """
        import json, sys
        sys.modules["iopath"] = None  # lavis.common.utils needs it
        try:
            import cirflow.model.lavis_modules
            error = None
        except ImportError as e:
            error = e.name
        print(json.dumps({
            "error": error,
            "left": sorted(name for name in ("lavis", "lavis.models", "lavis.processors")
                           if name in sys.modules),
        }))
        """
    )
    assert result["error"].startswith("iopath") and result["left"] == []
