"""`vaccbench compare`: two result sets side by side (see compare.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import command, output_file


def _compare_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", type=Path, help="a --vaccbench-json report (side A)")
    parser.add_argument("b", type=Path, nargs="?", default=None,
                        help="another report (side B); without it, both sides come from A")
    parser.add_argument("--a", dest="select_a", default=None, metavar="RUN",
                        help="side A's runs: a precision (fp32), a backend, or backend/precision")
    parser.add_argument("--b", dest="select_b", default=None, metavar="RUN",
                        help="side B's runs, as --a (e.g. int8-percentile)")
    parser.add_argument("--flips", type=int, default=10, metavar="N",
                        help="flipped images listed per model (default 10; the HTML lists all)")
    parser.add_argument("--classes", type=int, default=5, metavar="N",
                        help="classes that lost most, listed per model (default 5)")
    parser.add_argument("--html", type=output_file, default=None, metavar="OUT",
                        help="also write the comparison as one self-contained HTML page")
    parser.add_argument("--images", type=Path, default=None, metavar="DIR",
                        help="the dataset's images, for thumbnails of the flipped ones in --html "
                             "(default: the folder the report's session measured, when it is here)")


@command("compare", "compare two result sets: accuracy, agreement, flipped images, per-class losses",
         _compare_args)
def _compare(args: argparse.Namespace) -> int:
    from ..compare import compare_files, compare_html, compare_lines, images_folder
    from ..safefiles import atomic_write
    from ..thumbnails import files_in

    pairs = compare_files(args.a, args.b, args.select_a, args.select_b)
    if not pairs:
        print("no model was measured on the same dataset by both sides "
              "(select runs with --a and --b)")
        return 1
    for line in compare_lines(pairs, args.flips, args.classes):
        print(line)
    if args.html:
        title = f"A: {args.a}{f' ({args.select_a})' if args.select_a else ''}, " \
                f"B: {args.b or args.a}{f' ({args.select_b})' if args.select_b else ''}"
        folder = args.images or images_folder(args.a) or (images_folder(args.b) if args.b else None)
        images = files_in(folder) if folder else None
        atomic_write(args.html, compare_html(pairs, title, images))
        print(f"HTML: {args.html}")
    return 0
