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
from typing import Any, Callable, Sequence

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


def model_args(parser: argparse.ArgumentParser) -> None:
    """The arguments of the commands that run one baseline model on a dataset as the plugin
    does (triage, explain)."""
    import os

    parser.add_argument("model", help="a baseline model, `family/key` or `key`")
    dataset_args(parser)
    parser.add_argument("--per-tensor", action="store_true",
                        help="int8 weights quantized per tensor (default: per channel, as the zoo's builds)")
    parser.add_argument("--calib-images", type=int, default=1000, metavar="N",
                        help="int8 calibration images drawn from the dataset (default 1000)")
    parser.add_argument("--baselines", default="baselines", help="folder of baseline YAMLs")
    parser.add_argument("--weights-dir", default=os.environ.get("VACCBENCH_WEIGHTS", "weights"),
                        help="folder of weight files (default $VACCBENCH_WEIGHTS or ./weights)")
    parser.add_argument("--onnx-dir", default=None, help="ready ONNX graphs (as the plugin's option)")
    parser.add_argument("--cache", default=None,
                        help="cache folder (default as the plugin's: $VACCBENCH_CACHE, else "
                             "$XDG_CACHE_HOME/vaccbench, else ~/.cache/vaccbench)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")


def model_run(args: argparse.Namespace, **extra: Any) -> tuple[Any, Any, Any]:
    """The baseline entry, the dataset and the backends' RunOptions that `model_args` name
    (`extra`: more backend options)."""
    import os
    from pathlib import Path

    from ..backends import RunOptions
    from ..baselines import find_entry
    from ..cache import cache_dir
    from ..dataset import limit, resolve

    entry = find_entry(args.model, Path(args.baselines))
    data = limit(resolve(args.dataset, args.labels), args.limit)
    threads = args.threads or os.cpu_count() or 1
    options = RunOptions(weights_dir=Path(args.weights_dir).expanduser().resolve(),
                         cache_dir=cache_dir(args.cache), threads=threads, workers=threads,
                         extra={"int8_per_tensor": args.per_tensor, "calib_images": args.calib_images,
                                "onnx_dir": args.onnx_dir, **extra})
    return entry, data, options


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

