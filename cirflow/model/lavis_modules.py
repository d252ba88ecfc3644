"""LAVIS's model modules without `import lavis`: the one cirflow module that imports LAVIS.

`lavis/__init__.py` imports all of LAVIS — its dataset builders, processors and tasks, and with
them spacy, decord, webdataset and pycocoevalcap — and `lavis/models/__init__.py` every model
LAVIS has. cirflow needs only the BLIP-2 building blocks below. So, unless `lavis` is already
imported, `lavis`, `lavis.models` and `lavis.processors` go into `sys.modules` as bare packages:
module objects made from their import specs whose `__init__.py` never runs. Importing
`lavis.models.eva_vit` and the like then runs just those files and what they import (torch,
transformers, timm, fairscale, omegaconf, iopath). A process that did a full `import lavis` first
keeps it untouched, and the names below are then the very same objects.

LAVIS's registry decorators import `BaseModel` from `lavis.models` and `BaseProcessor` from
`lavis.processors`, so the bare packages carry those two names. LAVIS's registry paths
(`library_root`, `cache_root`), which only its model-zoo configs and dataset builders read, stay
unset. Any other name asked of a bare package raises an AttributeError that says why.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

# The packages whose __init__ imports far more than cirflow needs, with the one name LAVIS's
# registry imports from each (module, attribute).
BARE_PACKAGES: dict[str, tuple[str, str] | None] = {
    "lavis": None,
    "lavis.models": ("lavis.models.base_model", "BaseModel"),
    "lavis.processors": ("lavis.processors.base_processor", "BaseProcessor"),
}


def _not_in_bare_package(package: str):
    def __getattr__(name: str):
        raise AttributeError(
            f"module {package!r} has no attribute {name!r}: cirflow.model.lavis_modules imported "
            f"only LAVIS's model modules ({package}/__init__.py did not run); to use the rest of "
            "LAVIS, `import lavis` before anything of cirflow.model"
        )

    return __getattr__


def _register_bare_packages() -> None:
    """Put the BARE_PACKAGES into sys.modules without executing them (only if `lavis` is not
    imported yet: a full LAVIS already there is never replaced)."""
    if "lavis" in sys.modules:
        return
    made: dict[str, ModuleType] = {}
    try:
        _make_bare_packages(made)
    except BaseException:
        # Leave no bare package behind: a later import would take it for a real LAVIS.
        for name in made:
            sys.modules.pop(name, None)
        raise


def _make_bare_packages(made: dict[str, ModuleType]) -> None:
    for name in BARE_PACKAGES:
        parent, _, child = name.rpartition(".")
        path = made[parent].__path__ if parent else None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.submodule_search_locations is None:
            raise ModuleNotFoundError(
                f"{name} not found: salesforce-lavis is not installed "
                "(requirements/3-lavis-nodeps.txt)",
                name=name,
            )
        module = importlib.util.module_from_spec(spec)  # does not run __init__.py
        module.__getattr__ = _not_in_bare_package(name)
        sys.modules[name] = made[name] = module
        if parent:
            setattr(made[parent], child, module)
    for name, export in BARE_PACKAGES.items():
        if export:
            module_name, attribute = export
            setattr(made[name], attribute, getattr(importlib.import_module(module_name), attribute))


def lavis_module(name: str) -> ModuleType:
    """The LAVIS module `name` (e.g. "lavis.processors.blip_processors"), imported the same way."""
    _register_bare_packages()
    return importlib.import_module(name)


_register_bare_packages()

# What cirflow uses of LAVIS. The ViT classes and the position-embedding interpolations exist in
# both eva_vit and clip_vit, hence the prefixes.
from lavis.common.dist_utils import download_cached_file  # noqa: E402
from lavis.common.utils import is_url  # noqa: E402
from lavis.models.blip2_models.blip2 import Blip2Base, LayerNorm, disabled_train  # noqa: E402
from lavis.models.blip2_models.Qformer import BertConfig, BertLMHeadModel  # noqa: E402
from lavis.models.clip_vit import VisionTransformer as ClipVisionTransformer  # noqa: E402
from lavis.models.clip_vit import interpolate_pos_embed as clip_interpolate_pos_embed  # noqa: E402
from lavis.models.eva_vit import VisionTransformer as EvaVisionTransformer  # noqa: E402
from lavis.models.eva_vit import convert_weights_to_fp16  # noqa: E402
from lavis.models.eva_vit import interpolate_pos_embed as eva_interpolate_pos_embed  # noqa: E402

__all__ = [
    "BARE_PACKAGES",
    "BertConfig",
    "BertLMHeadModel",
    "Blip2Base",
    "ClipVisionTransformer",
    "EvaVisionTransformer",
    "LayerNorm",
    "clip_interpolate_pos_embed",
    "convert_weights_to_fp16",
    "disabled_train",
    "download_cached_file",
    "eva_interpolate_pos_embed",
    "is_url",
    "lavis_module",
]
