"""The workflow configuration: types made what the schema says, messages a user can act on, and
canonical rule params.

Three steps run when the workflow is parsed (`rules/common.smk`), all torch-free:

1. `normalise_config` gives every value the type the schema asks for, in place:

   * a string where the schema wants a number, an integer, a boolean or null becomes one when it
     reads as one. PyYAML follows YAML 1.1, which reads `1e-3` (no dot) as the *string* "1e-3";
     and a nested `--config key='{a: {b: 16}}'` reaches the workflow as strings throughout
     (Snakemake parses those values with YAML's BaseLoader). Both are converted: `1e-3`,
     `1.0e-3` and `0.001` are the same learning rate;
   * where the schema says `number`, an integer becomes a float (`loss_region: 1` = `1.0`);
     where it says `integer`, an integral float becomes an int (`num_epochs: 16.0` = `16`).

   A string that does not read as the wanted type is left alone for step 2 to report.

2. `check_config` lists every invalid key as `key.path: problem` (Snakemake's own validation
   stops at the first and dumps the whole schema): unknown keys by name, with the closest known
   one; a key required by a condition (`dataset.cirr_root` for `dataset.name: cirr`) says so.

3. `canonical` is applied to every rule's params: keys sorted at every level. Snakemake compares
   params by their `repr`, so without it reordering keys in an override file, restating a
   default or running a formatter that sorts keys reran everything ("Params have changed").
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cirflow.errors import CirflowError

_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}
_NULL = {"null", "~", "none"}
# Keys that existed once: an old config names them with what replaced them.
REMOVED_KEYS = {
    "report.training_comparison": "removed: the box report never waits for training; the stage "
    "comparison is on the results page, results/{ds}/report/results.html (rule results_report)",
}


# ------------------------------------------------------------------------------ canonical params
def canonical(value: Any) -> Any:
    """`value` with the keys of every mapping sorted (recursively), tuples as lists and -0.0 as
    0.0: equal settings give equal `repr`s, whatever order they were written in."""
    if isinstance(value, Mapping):
        return {str(k): canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value == 0.0:
        return 0.0
    return value


# ------------------------------------------------------------------------------ types by schema
def load_schema(schema_path: str | Path) -> dict:
    return yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))


def _resolve(schema: dict, root: dict) -> dict:
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return schema
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


def _types(schema: dict) -> set[str]:
    t = schema.get("type")
    if t is None:
        return set()
    return {t} if isinstance(t, str) else set(t)


def _is_valid(value: Any, schema: dict, root: dict) -> bool:
    return jsonschema.Draft202012Validator({"$defs": root.get("$defs", {}), **schema}).is_valid(
        value
    )


def _from_string(text: str, types: set[str]) -> tuple[bool, Any]:
    """(True, value) when `text` reads as one of `types` (schema type names), else (False, None)."""
    s = text.strip()
    low = s.lower()
    if "null" in types and low in _NULL:
        return True, None
    if "boolean" in types and low in _TRUE | _FALSE:
        return True, low in _TRUE
    if "integer" in types and _INT.fullmatch(s):
        return True, int(s)
    if "number" in types and _FLOAT.fullmatch(s):
        number = float(s)
        return True, int(number) if number.is_integer() and "integer" in types else number
    return False, None


def _coerce(value: Any, schema: dict, root: dict) -> Any:
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return value
    branches = schema.get("oneOf") or schema.get("anyOf")
    if branches:
        if any(_is_valid(value, b, root) for b in branches):
            return _coerce_plain(value, schema, root)
        for branch in branches:
            candidate = _coerce(value, branch, root)
            if candidate is not value and _is_valid(candidate, branch, root):
                return candidate
        return value
    return _coerce_plain(value, schema, root)


def _coerce_plain(value: Any, schema: dict, root: dict) -> Any:
    types = _types(schema)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key in list(value):
            if key in props:
                value[key] = _coerce(value[key], props[key], root)
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [_coerce(v, items, root) for v in value]
        return value
    if not types:
        return value
    if isinstance(value, str) and "string" not in types:
        ok, converted = _from_string(value, types)
        return converted if ok else value
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and "number" in types and "integer" not in types:
        return float(value)
    if (
        isinstance(value, float)
        and value.is_integer()
        and "integer" in types
        and "number" not in types
    ):
        return int(value)
    return value


def normalise_config(config: dict, schema: dict | str | Path) -> dict:
    """Give every value of `config` the type the schema asks for (in place; see the module
    docstring). Returns `config`."""
    root = load_schema(schema) if not isinstance(schema, dict) else schema
    _coerce(config, root, root)
    return config


# ------------------------------------------------------------------------------ error messages
def _key(path) -> str:
    return ".".join(str(p) for p in path)


def _condition(error: jsonschema.ValidationError, root: dict) -> str | None:
    """For an error raised inside an `if/then`, the condition ("dataset.name: cirr"), else None."""
    path = list(error.absolute_schema_path)
    if "then" not in path:
        return None
    at = len(path) - 1 - path[::-1].index("then")
    node: Any = root
    for part in path[:at]:
        node = node[part]
    condition = node.get("if", {}).get("properties", {}) if isinstance(node, dict) else {}
    # The instance the `then` applies to: drop one path element per `properties` step after it.
    tail = path[at + 1 :]
    depth = sum(1 for i, p in enumerate(tail[:-1]) if p == "properties")
    instance = list(error.absolute_path)
    parent = instance[: len(instance) - depth]
    parts = [
        f"{_key([*parent, name])}: {spec['const']}"
        for name, spec in condition.items()
        if isinstance(spec, dict) and "const" in spec
    ]
    return " and ".join(parts) if parts else None


def _describe(error: jsonschema.ValidationError, root: dict) -> list[str]:
    path = list(error.absolute_path)
    condition = _condition(error, root)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted((error.schema.get("properties") or {}).keys())
        lines = []
        for name in sorted(set(error.instance) - set(known), key=str):
            key = _key([*path, name])
            if key in REMOVED_KEYS:
                lines.append(f"{key}: {REMOVED_KEYS[key]}")
                continue
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"{key}: unknown key{hint}")
        return lines
    if error.validator == "required":
        lines = []
        for name in error.validator_value:
            if isinstance(error.instance, dict) and name not in error.instance:
                where = f" for {condition}" if condition else ""
                lines.append(f"{_key([*path, name])}: required{where}, but not given")
        return lines
    key = _key(path) or "(top level)"
    if condition:
        if error.instance is None:
            about = _property_description(error, root)
            return [
                f"{key}: required for {condition}, but it is null"
                + (f" ({about})" if about else "")
            ]
        return [f"{key}: {error.message} (for {condition})"]
    return [f"{key}: {error.message}"]


def _property_description(error: jsonschema.ValidationError, root: dict) -> str | None:
    """The schema description of the key an error is about (its `properties:` entry)."""
    node: Any = root
    for part in error.absolute_path:
        node = _resolve(node, root)
        props = node.get("properties") if isinstance(node, dict) else None
        if not props or part not in props:
            return None
        node = props[part]
    node = _resolve(node, root)
    return node.get("description") if isinstance(node, dict) else None


def config_errors(config: dict, schema_path: str | Path | dict) -> list[str]:
    """Every problem of `config`, one `key.path: problem` line each, sorted by key."""
    schema = load_schema(schema_path) if not isinstance(schema_path, dict) else schema_path
    validator = jsonschema.Draft202012Validator(schema)
    messages: list[str] = []
    for error in validator.iter_errors(copy.deepcopy(config)):
        for line in _describe(error, schema):
            if line not in messages:
                messages.append(line)
    return sorted(messages, key=lambda m: m.split(":", 1)[0])


def check_config(config: dict, schema_path: str | Path | dict) -> None:
    """Raise CirflowError listing every invalid key of `config`."""
    errors = config_errors(config, schema_path)
    if errors:
        raise CirflowError(
            "invalid configuration (config.yaml and any --configfile/--config):\n  "
            + "\n  ".join(errors)
        )
