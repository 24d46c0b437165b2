"""Calibration sets for int8: N images of a dataset covering every class present.

The accelerator's compiler (and onnxruntime's static quantization) calibrate activation
ranges on "1000 images from the validation set, covering every class". The pick is
deterministic: one image of each class first (class index order), then a second of each,
and so on, each class's images in the order of a salted hash of their file names — an
independent draw from `--limit`'s, so `--limit N` and the calibration set do not coincide.
An int8 run leaves these images out of its accuracy count unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

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
