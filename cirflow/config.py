"""Config validation messages a user can act on.

`snakemake.utils.validate` reports the first error with the whole schema dumped beside it. We
first list every error as `key.path: problem`, then let Snakemake validate (and fill defaults).
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from cirflow.errors import CirflowError


def config_errors(config: dict, schema_path: str | Path) -> list[str]:
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        messages.append(f"{key}: {error.message}")
    return messages


def check_config(config: dict, schema_path: str | Path) -> None:
    """Raise CirflowError listing every invalid key of `config`."""
    errors = config_errors(config, schema_path)
    if errors:
        raise CirflowError(
            "invalid configuration (config.yaml and any --configfile/--config):\n  "
            + "\n  ".join(errors)
        )
