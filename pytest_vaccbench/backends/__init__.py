"""Backends: a registry of ways to run a model over a dataset and return class scores.

A backend is one module with one `Backend` subclass. Register it in `BUILTIN` (name ->
"module:Class", imported only when used, so the core needs neither torch nor onnxruntime)
or, from another package, under the entry point group `vaccbench.backends`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np

from .. import progress
from ..baselines import ModelEntry
from ..dataset import Dataset, Sample
from ..errors import BackendError, ImageDecodeError, VaccbenchError
from ..preprocess import PreprocessSpec, load_crop, normalize

BUILTIN = {
    "reference": "pytest_vaccbench.backends.reference:ReferenceBackend",
    "onnxruntime": "pytest_vaccbench.backends.onnxruntime:OnnxRuntimeBackend",
    "vamp": "pytest_vaccbench.backends.vamp:VampBackend",
}


@dataclass(frozen=True)
class RunOptions:
    """Options every backend may read; backend-specific ones live in `extra`."""

    weights_dir: Path
    cache_dir: Path
    batch_size: int = 32
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    preprocesses_on_device: ClassVar[bool] = False  # True: --preprocess does not apply
    packages: ClassVar[tuple[str, ...]] = ()  # Python packages whose versions a baseline records
    option_keys: ClassVar[tuple[str, ...]] = ()  # RunOptions.extra keys that shape the numbers

    def precisions_for(self, entry: ModelEntry, requested: tuple[str, ...] | None,
                       options: RunOptions) -> tuple[str, ...] | None:
        """Precisions to collect for `entry`; `requested` is --precision (None when not given).

        None means the suite file's precisions.
        """
        return requested

    def versions(self, options: RunOptions) -> list[str]:
        """Versions ("name 1.2.3") of what computed the scores: provenance of a baseline entry.

        The default lists `packages`; a backend that runs an external tool adds its version.
        """
        from importlib.metadata import PackageNotFoundError, version

        found = []
        for name in self.packages:
            try:
                found.append(f"{name} {version(name)}")
            except PackageNotFoundError:
                pass
        return found

    def skip_reason(self, entry: ModelEntry, precision: str, options: RunOptions) -> str | None:
        """Why this case cannot run here (missing weights, tool, device), or None."""
        return None

    def excluded_samples(self, entry: ModelEntry, precision: str, dataset: Dataset,
                         options: RunOptions) -> tuple[Sample, ...]:
        """Samples this run built its model from (int8 calibration images): not counted."""
        return ()

    @abstractmethod
    def scores(self, entry: ModelEntry, precision: str, dataset: Dataset,
               options: RunOptions) -> np.ndarray:
        """(N, classes) scores for the dataset's samples, in dataset order."""


def available() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in entry_points(group="vaccbench.backends"):
        found.setdefault(ep.name, ep.value)
    return found


def get_backend(name: str) -> Backend:
    registry = available()
    if name not in registry:
        raise VaccbenchError(f"unknown backend {name!r}; available: {', '.join(sorted(registry))}")
    module, _, cls = registry[name].partition(":")
    return getattr(import_module(module), cls)()


def class_scores(scores: np.ndarray, entry: ModelEntry) -> np.ndarray:
    """Scores over the 1000 ImageNet classes.

    A model with 1001 outputs has a background class at index 0 (TF-trained checkpoints,
    some ppcls exports): its column is dropped so that index i is ImageNet class i.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim == 1:
        scores = scores[None]
    if scores.ndim != 2:
        raise BackendError(f"{entry.test_name}: expected (N, classes) scores, got {scores.shape}")
    if scores.shape[1] == 1001:
        return scores[:, 1:]
    if scores.shape[1] != 1000:
        raise BackendError(f"{entry.test_name}: model gives {scores.shape[1]} classes, expected "
                           "1000 (or 1001 with a background class first)")
    return scores


def iter_batches(samples: Sequence[Sample], spec: PreprocessSpec, batch_size: int,
                 workers: int) -> Iterator[np.ndarray]:
    """Normalised float32 (B, 3, H, W) batches in sample order, decoded on `workers` threads.

    Every image of a batch is decoded before an error is raised, so the message lists all
    unreadable files of that batch, not just the first.
    """
    from concurrent.futures import ThreadPoolExecutor

    def load(sample: Sample) -> np.ndarray | ImageDecodeError:
        try:
            return load_crop(sample.path, spec)
        except ImageDecodeError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(samples), batch_size):
            crops = list(pool.map(load, samples[start:start + batch_size]))
            errors = [c for c in crops if isinstance(c, ImageDecodeError)]
            if errors:
                listed = "\n  ".join(str(e) for e in errors)
                raise ImageDecodeError(f"{len(errors)} unreadable image(s):\n  {listed}")
            yield normalize(np.stack(crops), spec)
            progress.advance(len(crops))  # the consumer asked for more: this batch is done
