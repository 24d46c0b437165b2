"""The `vaccbench` console script: the tasks that are not tests (data prep, export, import, report).

The top room: each subcommand is one module of this package, a handler registered with
`@command(name, help, configure)` where `configure(parser)` adds its arguments. The handlers
call the stages' plain functions; no stage imports this package. The modules are imported
only when the script runs.

Two rules hold for every subcommand, as plain pieces a new one reuses:
- outputs are declared with `type=output_file` or `type=output_folder` (and counts with
  `type=count`): argparse checks them while it parses, before any work starts, with
  safefiles.output_target's rule (no folder where a file goes, no file where a folder goes,
  an existing parent); report options named as pytest's (`score`) use `type=report_file`,
  which makes missing folders as pytest does;
- `guarded` is the error boundary: a VaccbenchError or an OSError is one line naming the file
  (exit 2), Ctrl-C is exit 130, and anything else is a bug: one line that says so (exit 3),
  its traceback shown only with `--traceback`.
"""

from __future__ import annotations

import argparse
import os
import pkgutil
import sys
import traceback
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import __version__
from ..errors import VaccbenchError
from ..safefiles import output_target

USER_ERROR, INTERNAL_ERROR, INTERRUPTED = 2, 3, 130

Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]
_COMMANDS: dict[str, tuple[Configure, Handler, str]] = {}


def command(name: str, help: str, configure: Configure | None = None) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _COMMANDS[name] = (configure or (lambda parser: None), handler, help)
        return handler

    return register


def _target(text: str, **rule: bool) -> Path:
    try:
        return output_target(Path(text), **rule)
    except VaccbenchError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def output_file(text: str) -> Path:
    """argparse type of an option that names a file to write (see safefiles.output_target)."""
    return _target(text)


def output_folder(text: str) -> Path:
    """argparse type of an option that names a folder to write into (made when absent)."""
    return _target(text, folder=True)


def report_file(text: str) -> Path:
    """argparse type of a report option named as pytest's (--vaccbench-json, --junitxml, ...):
    as `output_file`, but missing folders are made, as pytest makes them."""
    return _target(text, parents=True)


def count(text: str) -> int:
    """argparse type of a positive count (images, classes, pixels)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count: it must be 1 or more")
    return value


def guarded(name: str, call: Callable[[], int], show_traceback: bool = False) -> int:
    """Run a command's `call` inside the error boundary: its exit code, or the exit code of
    the one-line message printed to stderr for what it raised (see the module doc)."""
    try:
        return call()
    except VaccbenchError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `vaccbench ... | head`: the reader has gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{name}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return USER_ERROR
    except Exception as exc:  # noqa: BLE001 - the boundary: a bug, reported as one
        if show_traceback:
            traceback.print_exc()
        text = str(exc).splitlines()[0][:300] if str(exc).strip() else ""
        print(f"{name}: internal error: {type(exc).__name__}{f': {text}' if text else ''}\n"
              f"This is a bug in pytest-vaccbench {__version__}, not a problem of your input; "
              + ("please report it with the traceback above" if show_traceback else
                 "rerun with --traceback and report what it prints"), file=sys.stderr)
        return INTERNAL_ERROR


def dataset_args(parser: argparse.ArgumentParser) -> None:
    """The dataset arguments several subcommands share."""
    parser.add_argument("dataset", help="dataset folder or built-in name (skimage-photos)")
    parser.add_argument("--labels", default=None, help="label file for a flat folder")
    parser.add_argument("--limit", type=count, default=None, help="stratified subset of N images")


def model_args(parser: argparse.ArgumentParser) -> None:
    """The arguments of the commands that run one baseline model on a dataset as the plugin
    does (triage, explain)."""
    parser.add_argument("model", help="a baseline model, `family/key` or `key`")
    dataset_args(parser)
    parser.add_argument("--per-tensor", action="store_true",
                        help="int8 weights quantized per tensor (default: per channel, as the zoo's builds)")
    parser.add_argument("--calib-images", type=count, default=1000, metavar="N",
                        help="int8 calibration images drawn from the dataset (default 1000)")
    parser.add_argument("--baselines", default="baselines", help="folder of baseline YAMLs")
    parser.add_argument("--weights-dir", default=os.environ.get("VACCBENCH_WEIGHTS", "weights"),
                        help="folder of weight files (default $VACCBENCH_WEIGHTS or ./weights)")
    parser.add_argument("--onnx-dir", default=None, help="ready ONNX graphs (as the plugin's option)")
    parser.add_argument("--cache", default=None,
                        help="cache folder (default as the plugin's: $VACCBENCH_CACHE, else "
                             "$XDG_CACHE_HOME/vaccbench, else ~/.cache/vaccbench)")
    parser.add_argument("--threads", type=count, default=None, help="inference threads (default: all cores)")


def model_run(args: argparse.Namespace, **extra: Any) -> tuple[Any, Any, Any]:
    """The baseline entry, the dataset and the backends' RunOptions that `model_args` name
    (`extra`: more backend options)."""
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


TRACEBACK_HELP = "on an internal error (a bug), show its Python traceback"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaccbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pytest-vaccbench {__version__}")
    parser.add_argument("--traceback", action="store_true", help=TRACEBACK_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, handler, help_text) in sorted(registered().items()):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS, help=TRACEBACK_HELP)
        configure(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(f"vaccbench {args.command}", lambda: args.handler(args), args.traceback)

