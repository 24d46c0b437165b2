"""`vaccbench calib-set`: the int8 calibration images of a dataset (see calibration.py)."""

from __future__ import annotations

import argparse

from ..calibration import DEFAULT_CALIBRATION_IMAGES, calibration_set, coverage
from ..dataset import limit, resolve
from ..safefiles import atomic_write
from . import command, count, dataset_args, output_file


def _calib_args(parser: argparse.ArgumentParser) -> None:
    dataset_args(parser)
    parser.add_argument("-n", "--images", type=count, default=DEFAULT_CALIBRATION_IMAGES,
                        help=f"calibration images (default {DEFAULT_CALIBRATION_IMAGES})")
    parser.add_argument("--output", type=output_file, default=None, metavar="FILE",
                        help="write `<image path relative to the dataset> <class index>` lines "
                             "(the val_label.txt format) instead of printing them")


@command("calib-set", "pick the int8 calibration images of a dataset (deterministic, every class)",
         _calib_args)
def _calib_set(args: argparse.Namespace) -> int:
    data = limit(resolve(args.dataset, args.labels), args.limit)
    calib = calibration_set(data, args.images)
    # relative to the dataset folder; an image the label file found beside itself, outside
    # that folder, by its absolute path
    lines = [f"{s.path.relative_to(data.root) if s.path.is_relative_to(data.root) else s.path.resolve()}"
             f" {s.label}" for s in calib.samples]
    summary = (f"{coverage(calib, data).describe()}, from {len(data.samples)} images of "
               f"{data.name} (fingerprint {calib.fingerprint()})")
    if args.output:
        atomic_write(args.output, "\n".join(lines) + "\n")
        print(f"{summary}; written to {args.output}")
    else:
        print(f"# {summary}")
        print("\n".join(lines))
    return 0
