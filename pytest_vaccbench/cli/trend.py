"""`vaccbench trend`: top1 over time from a history database (see history.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..history import plot_png, series, trend_lines
from . import command, output_file

def _trend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("db", type=Path, help="history database written by --vaccbench-history")
    parser.add_argument("--model", default=None, help="glob over model keys or family/key")
    parser.add_argument("--backend", default=None, help="only this backend")
    parser.add_argument("--dataset", default=None, help="only this dataset name")
    parser.add_argument("--png", type=output_file, default=None, metavar="OUT", help="also plot to OUT.png")


@command("trend", "print (and plot) top1 over time per model from a --vaccbench-history database",
         _trend_args)
def _trend(args: argparse.Namespace) -> int:
    found = series(args.db, args.model, args.backend, args.dataset)
    if not found:
        print("no results match")
        return 1
    for line in trend_lines(found):
        print(line)
    if args.png:
        print(f"plot: {plot_png(found, args.png)}")
    return 0
