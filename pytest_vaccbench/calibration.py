"""Calibration sets for int8: N images of a dataset covering every class present.

The accelerator's compiler (and onnxruntime's static quantization) calibrate activation
ranges on "1000 images from the validation set, covering every class". The pick is
deterministic: one image of each class first (class index order), then a second of each,
and so on, each class's images in the order of a salted hash of their file names — an
independent draw from `--limit`'s, so `--limit N` and the calibration set do not coincide.
An int8 run leaves these images out of its accuracy count unless told otherwise.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .cli import _dataset_args, command
from .dataset import Dataset, stratified

DEFAULT_CALIBRATION_IMAGES = 1000
SALT = "vaccbench-calibration:"


@dataclass(frozen=True)
class Coverage:
    images: int
    classes: int  # classes among the calibration images
    classes_present: int  # classes in the dataset they were drawn from

    @property
    def complete(self) -> bool:
        return self.classes == self.classes_present

    def describe(self) -> str:
        note = "every class present" if self.complete else \
            f"{self.classes} of the {self.classes_present} classes present (fewer images than classes)"
        return f"{self.images} calibration images covering {note}"


def calibration_set(dataset: Dataset, n: int = DEFAULT_CALIBRATION_IMAGES) -> Dataset:
    """The first `n` images (at most all) of the class-covering order above, in dataset order."""
    if n <= 0:
        raise ValueError(f"the calibration set needs at least one image, got n={n}")
    return stratified(dataset, n, salt=SALT)


def coverage(calibration: Dataset, dataset: Dataset) -> Coverage:
    return Coverage(len(calibration.samples), len(set(calibration.labels)), len(set(dataset.labels)))


def _calib_args(parser: argparse.ArgumentParser) -> None:
    _dataset_args(parser)
    parser.add_argument("-n", "--images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                        help=f"calibration images (default {DEFAULT_CALIBRATION_IMAGES})")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="write `<image path relative to the dataset> <class index>` lines "
                             "(the val_label.txt format) instead of printing them")


@command("calib-set", "pick the int8 calibration images of a dataset (deterministic, every class)",
         _calib_args)
def _calib_set(args: argparse.Namespace) -> int:
    from .baselines import atomic_write
    from .dataset import limit, resolve

    data = limit(resolve(args.dataset, args.labels), args.limit)
    calib = calibration_set(data, args.images)
    lines = [f"{s.path.relative_to(data.root)} {s.label}" for s in calib.samples]
    summary = (f"{coverage(calib, data).describe()}, from {len(data.samples)} images of "
               f"{data.name} (fingerprint {calib.fingerprint()})")
    if args.output:
        atomic_write(Path(args.output), "\n".join(lines) + "\n")
        print(f"{summary}; written to {args.output}")
    else:
        print(f"# {summary}")
        print("\n".join(lines))
    return 0
