"""The `cirflow` console script.

Each package owns its sub-commands in its own `cli.py` (a `register(subparsers)` function), so
this file only wires them together and turns `CirflowError` into a clean message + exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cirflow.errors import CirflowError

# Modules that register sub-commands, in the order they appear in --help.
COMMAND_MODULES = (
    "cirflow.data.cli",  # demo-data
    "cirflow.boxes.cli",  # boxes generate|stats|quality (+ report, below)
    "cirflow.train.cli",  # train
    "cirflow.evaluate.cli",  # evaluate, submission
    "cirflow.summary",  # summary
    "cirflow.weights",  # weights fetch|check|env
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cirflow",
        description="Boxes, validation, SPRC training and evaluation for composed image retrieval on CIRR.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups = {}
    for module_name in COMMAND_MODULES:
        groups[module_name] = importlib.import_module(module_name).register(subparsers)
    # `cirflow boxes report` is the report package's command in the boxes group.
    importlib.import_module("cirflow.report.cli").register(groups["cirflow.boxes.cli"])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = args.func(args)
    except CirflowError as exc:
        print(f"cirflow: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
