"""Settings declared once: each field of a settings dataclass says, beside its default, what it
means, where the workflow config holds it, its command-line flag, its bounds and whether it
decides the trained weights. The value checks, the CLI flags, which config keys are rule params
and which fields the resume fingerprint leaves out are all derived from that one declaration
(`TrainSettings`, `PretrainSettings`; tests/test_settings.py checks it against the JSON schema).

Torch-free: the workflow imports the training settings when it parses.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cirflow.errors import CirflowError

NO_FLAG = ""
# `cli_default` when the flag's default is the field's own.
FIELD_DEFAULT = object()


@dataclass(frozen=True)
class Declared:
    """A setting's declaration (the metadata of its dataclass field).

    `config`: the config block holding it (the owner decides what a block name means, e.g.
    "stage" = `train.stageN`); `key`: its key there (default: the field name). `param`: a
    rule param, i.e. a change reruns the rule; `fingerprint`: part of the resume fingerprint
    (default: = param). `flag`: the command-line flag (default `--field-name`; NO_FLAG: none),
    `invert`: a store-true flag that sets the value false (`--no-amp`), `parse`: how the flag's
    text becomes the value (default: the type of the default), `cli_default`: the flag's
    default where it differs from the field's.
    """

    help: str
    config: str | None = None
    key: str | None = None
    param: bool = True
    fingerprint: bool | None = None
    flag: str | None = None
    invert: bool = False
    parse: Callable[[str], Any] | None = None
    cli_default: Any = FIELD_DEFAULT
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None


def setting(default: Any, help: str, **declared: Any) -> Any:
    """A dataclass field with its declaration (see `Declared`)."""
    return dataclasses.field(default=default, metadata={"declared": Declared(help, **declared)})


def declarations(cls_or_obj) -> Iterator[tuple[dataclasses.Field, Declared]]:
    for f in dataclasses.fields(cls_or_obj):
        if "declared" in f.metadata:
            yield f, f.metadata["declared"]


def config_key(f: dataclasses.Field, d: Declared) -> str:
    return d.key or f.name


def in_fingerprint(f: dataclasses.Field, d: Declared) -> bool:
    return d.param if d.fingerprint is None else d.fingerprint


def flag_of(f: dataclasses.Field, d: Declared) -> str | None:
    if d.flag == NO_FLAG:
        return None
    return d.flag or "--" + f.name.replace("_", "-")


# ------------------------------------------------------------------------------------ checks
def value_problem(value: Any, d: Declared) -> str | None:
    """What is wrong with `value` against its declared bounds, or None."""
    if value is None:
        return None
    if d.choices is not None and value not in d.choices:
        return f"must be one of {', '.join(map(str, d.choices))} (got {value!r})"
    if d.minimum == 0 and d.maximum == 1:
        if not 0 <= float(value) <= 1:
            return f"must be a fraction in [0, 1] (got {value!r})"
        return None
    if d.minimum is not None and not value >= d.minimum:
        return f"must be ≥ {d.minimum:g} (got {value!r})"
    if d.exclusive_minimum is not None and not value > d.exclusive_minimum:
        return f"must be > {d.exclusive_minimum:g} (got {value!r})"
    if d.maximum is not None and not value <= d.maximum:
        return f"must be ≤ {d.maximum:g} (got {value!r})"
    return None


def check_declared(obj: Any, key_of: Callable[[str], str]) -> None:
    """Every declared field of `obj` within its bounds; the first that is not is an error
    naming its key (`key_of(field name)`)."""
    for f, d in declarations(obj):
        problem = value_problem(getattr(obj, f.name), d)
        if problem:
            raise CirflowError(f"{key_of(f.name)} {problem}")


# ---------------------------------------------------------------------------------- CLI flags
def add_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per declared field of `cls` that has one (help and default from the
    declaration)."""
    for f, d in declarations(cls):
        flag = flag_of(f, d)
        if flag is None or f.name in skip:
            continue
        if d.invert:
            parser.add_argument(flag, dest=f.name, action="store_false", help=d.help)
            parser.set_defaults(**{f.name: f.default})
            continue
        default = f.default if d.cli_default is FIELD_DEFAULT else d.cli_default
        parse = d.parse or (type(default) if default is not None else str)
        parser.add_argument(
            flag,
            dest=f.name,
            type=parse,
            default=default,
            choices=d.choices if d.parse is None else None,
            help=d.help,
        )


def from_flags(args: argparse.Namespace, cls) -> dict[str, Any]:
    """The values of `cls`'s flagged fields in parsed `args`."""
    return {f.name: getattr(args, f.name) for f, d in declarations(cls) if hasattr(args, f.name)}


def optional_bool(text: str) -> bool:
    """A `true` / `false` flag value."""
    low = text.lower()
    if low not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return low == "true"
