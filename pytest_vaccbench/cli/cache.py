"""`vaccbench cache`: the cache folder's size per kind, and clearing it (see cache.py)."""

from __future__ import annotations

import argparse

from . import command


def _cache_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=None, metavar="DIR",
                        help="the cache folder (default: $VACCBENCH_CACHE, else "
                             "$XDG_CACHE_HOME/vaccbench, else ~/.cache/vaccbench)")
    parser.add_argument("--clear", nargs="?", const="all", default=None, metavar="KIND",
                        help="remove KIND (images, predictions, onnx, vamp-npz, vamp-runs, "
                             "vsx-runs, digests.json), or every kind when KIND is left out")


def _files(count: int) -> str:
    return f"{count:>7} file{'' if count == 1 else 's'}"


@command("cache", "show the cache folder's size per kind, or clear it", _cache_args)
def _cache(args: argparse.Namespace) -> int:
    from ..cache import KINDS, cache_dir, clear, human, usage

    root = cache_dir(args.dir)
    if args.clear:
        removed = clear(root, None if args.clear == "all" else args.clear)
        print(f"{root}: removed {', '.join(removed) if removed else 'nothing (already empty)'}")
        return 0
    found = usage(root)
    print(f"cache: {root}")
    if not found:
        print("  empty")
    for u in found:
        print(f"  {u.kind:<13} {human(u.bytes):>10} {_files(u.files)}  "
              f"{KINDS.get(u.kind, 'not ours: never cleared')}")
    if found:
        print(f"  {'total':<13} {human(sum(u.bytes for u in found)):>10} "
              f"{_files(sum(u.files for u in found))}")
    return 0
