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
    "cirflow.boxes.cli",  # boxes generate|stats|quality|report
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
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A package still under construction must not break the other commands.
            if exc.name and exc.name.startswith(module_name.rsplit(".", 1)[0]):
                continue
            raise
        module.register(subparsers)
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
