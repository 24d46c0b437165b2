"""The `vaccbench` console script: the tasks that are not tests (data prep, export, import, report).

The top room: each subcommand is one module of this package, a handler registered with
`@command(name, help, configure)` where `configure(parser)` adds its arguments. The handlers
call the stages' plain functions; no stage imports this package. The modules are imported
only when the script runs.
"""

from __future__ import annotations

import argparse
import pkgutil
import sys
from importlib import import_module
from typing import Callable, Sequence

from .. import __version__
from ..errors import VaccbenchError

Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]
_COMMANDS: dict[str, tuple[Configure, Handler, str]] = {}


def command(name: str, help: str, configure: Configure | None = None) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _COMMANDS[name] = (configure or (lambda parser: None), handler, help)
        return handler

    return register


def dataset_args(parser: argparse.ArgumentParser) -> None:
    """The dataset arguments several subcommands share."""
    parser.add_argument("dataset", help="dataset folder or built-in name (skimage-photos)")
    parser.add_argument("--labels", default=None, help="label file for a flat folder")
    parser.add_argument("--limit", type=int, default=None, help="stratified subset of N images")


def registered() -> dict[str, tuple[Configure, Handler, str]]:
    """Every subcommand: name -> (configure, handler, help), its modules imported."""
    for module in pkgutil.iter_modules(__path__):
        if module.name != "__main__":
            import_module(f"{__name__}.{module.name}")
    return dict(_COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaccbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pytest-vaccbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, handler, help_text) in sorted(registered().items()):
        p = sub.add_parser(name, help=help_text, description=help_text)
        configure(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except VaccbenchError as exc:
        print(f"vaccbench {args.command}: error: {exc}", file=sys.stderr)
        return 2

