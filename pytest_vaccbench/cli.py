"""The `vaccbench` console script: the tasks that are not tests (data prep, export, import, report).

A subcommand is a handler registered with `@command(name, help, configure)`, where
`configure(parser)` adds its arguments. Modules that define subcommands are listed in
`COMMAND_MODULES` and imported only when the script runs.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import Callable, Sequence

from . import __version__
from .errors import VaccbenchError

Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]
COMMAND_MODULES: list[str] = ["pytest_vaccbench.importer", "pytest_vaccbench.prep",
                              "pytest_vaccbench.history", "pytest_vaccbench.export",
                              "pytest_vaccbench.calibration", "pytest_vaccbench.cli_triage"]
_COMMANDS: dict[str, tuple[Configure, Handler, str]] = {}


def command(name: str, help: str, configure: Configure | None = None) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _COMMANDS[name] = (configure or (lambda parser: None), handler, help)
        return handler

    return register


def _dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset folder or built-in name (skimage-photos)")
    parser.add_argument("--labels", default=None, help="label file for a flat folder")
    parser.add_argument("--limit", type=int, default=None, help="stratified subset of N images")


@command("dataset", "show how a dataset is read: layout, images, classes, fingerprint", _dataset_args)
def _dataset_info(args: argparse.Namespace) -> int:
    from .dataset import limit, resolve

    data = limit(resolve(args.dataset, args.labels), args.limit)
    print(f"name:        {data.name}\nroot:        {data.root}\nlayout:      {data.layout}\n"
          f"images:      {len(data.samples)} of {data.total}\n"
          f"classes:     {len(set(data.labels))}\nfingerprint: {data.fingerprint()}")
    return 0


@command("backends", "list the registered backends and their precisions")
def _backends(args: argparse.Namespace) -> int:
    from .backends import available, get_backend

    for name, target in sorted(available().items()):
        try:
            precisions = ", ".join(get_backend(name).precisions)
        except ImportError as exc:  # e.g. onnxruntime not installed
            precisions = f"(cannot import: {exc})"
        print(f"{name:<12} {target}\n{'':<12} precisions: {precisions}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    for module in COMMAND_MODULES:
        import_module(module)
    parser = argparse.ArgumentParser(prog="vaccbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pytest-vaccbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, handler, help_text) in sorted(_COMMANDS.items()):
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


if __name__ == "__main__":
    sys.exit(main())
