"""Backends: a registry of ways to run a model over a dataset and return class scores.

A backend is one module with one `Backend` subclass. Register it in `BUILTIN` (name ->
"module:Class", imported only when used, so the core needs neither torch nor onnxruntime)
or, from another package, under the entry point group `vaccbench.backends`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np

from .. import progress
from ..baselines import ModelEntry
from ..cache import kind_dir
from ..dataset import Dataset, Sample
from ..errors import BackendError, ImageDecodeError, VaccbenchError
from ..image_cache import CacheEntry, CacheMiss, PendingEntry
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
    batch_size: int | None = None  # None: the backend's own `default_batch_size`
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    extra: dict[str, Any] = field(default_factory=dict)
    image_cache: bool = True  # keep decoded crops in cache_dir / "images" (see image_cache)

    @property
    def image_cache_dir(self) -> Path | None:
        """Where iter_batches keeps preprocessed images, or None when the cache is off."""
        return kind_dir(self.cache_dir, "images") if self.image_cache else None


class Backend(ABC):
    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    preprocesses_on_device: ClassVar[bool] = False  # True: --preprocess does not apply
    packages: ClassVar[tuple[str, ...]] = ()  # Python packages whose versions a baseline records
    option_keys: ClassVar[tuple[str, ...]] = ()  # RunOptions.extra keys that shape the numbers
    default_batch_size: ClassVar[int] = 32  # what runs fastest on this backend's hardware

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

    def provenance(self, entry: ModelEntry, precision: str, options: RunOptions) -> dict[str, Any]:
        """Per-model settings that shaped the numbers besides `option_keys` (e.g. the digest of
        a build config the run mirrored): recorded with the result."""
        return {}

    def source(self, entry: ModelEntry, precision: str, options: RunOptions) -> str:
        """sha256 of what this run's network derives from (by default its weights file; ""
        when unknown): recorded with its predictions, so that an int8 run is paired only with
        the fp32 run of the same weights or graph (run._fp32_rows)."""
        from ..export import file_digest
        from ..weights import find_weights

        path = find_weights(entry, options.weights_dir).path
        return file_digest(path, options.cache_dir) if path is not None else ""

    def batch_size(self, entry: ModelEntry, options: RunOptions) -> int:
        """The model's forced size (baseline `batch_size`), else --batch-size, else the default."""
        return entry.batch_size or options.batch_size or self.default_batch_size

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


def cached_crops(samples: Sequence[Sample], spec: PreprocessSpec, workers: int, cache_dir: Path) -> np.ndarray:
    """The uint8 (N, H, W, 3) crops of `samples` from the image cache (memory-mapped),
    decoded into it first when it does not hold them: what evaluation reads, read once."""
    entry = CacheEntry(cache_dir, tuple(samples), spec)
    try:
        return entry.read()
    except CacheMiss:
        for _ in iter_batches(samples, spec, 64, workers, cache_dir=cache_dir):
            pass
    return entry.read()


PREFETCH = 2  # batches decoded ahead of the consumer: decoding overlaps inference
CHUNK = 8  # images per task on the worker threads, at most


def iter_batches(samples: Sequence[Sample], spec: PreprocessSpec, batch_size: int,
                 workers: int, *, cache_dir: Path | None = None) -> Iterator[np.ndarray]:
    """Normalised float32 (B, 3, H, W) batches in sample order.

    The uint8 crops come from the on-disk cache in `cache_dir` when it holds this dataset
    with this geometry (see image_cache). Otherwise they are decoded on `workers` threads
    (Pillow and OpenCV release the GIL while decoding and resizing; threads measured faster
    than processes, which must ship every crop back) and, with `cache_dir`, appended batch
    by batch to a new cache entry that is published when the last image is decoded. Up to
    PREFETCH batches are decoded and normalised ahead of the consumer, so this work
    overlaps inference. Every image of a batch is decoded before an error is raised, so
    the message lists all unreadable files of that batch, not just the first.
    """
    samples = tuple(samples)
    if batch_size < 1:
        raise VaccbenchError(f"batch size must be positive, got {batch_size}")
    if not spec.crop and spec.resize_mode != "square":
        raise VaccbenchError("preprocessing without `crop` needs `resize_mode: square`: a "
                             "short-side resize alone gives images of different sizes")
    if not samples:
        return
    size = spec.output_size
    cached: np.ndarray | None = None
    pending: PendingEntry | None = None
    if cache_dir is not None:
        entry = CacheEntry(cache_dir, samples, spec)
        try:
            cached = entry.read()
        except CacheMiss:
            pending = entry.create()

    def fill(start: int, lo: int, hi: int, crops: np.ndarray, out: np.ndarray) -> list[ImageDecodeError]:
        """Rows lo:hi of the batch at `start`: decode (unless cached), then normalise."""
        errors = []
        if cached is None:
            for i in range(lo, hi):
                try:
                    load_crop(samples[start + i].path, spec, out=crops[i])
                except ImageDecodeError as exc:
                    errors.append(exc)
        normalize(crops[lo:hi], spec, out=out[lo:hi])
        return errors

    chunk = max(1, min(CHUNK, -(-batch_size // max(1, workers))))  # every thread gets work

    def submit(start: int) -> tuple[np.ndarray, np.ndarray, list[Future[list[ImageDecodeError]]]]:
        stop = min(start + batch_size, len(samples))
        crops = cached[start:stop] if cached is not None else np.empty((stop - start, size, size, 3), np.uint8)
        out = np.empty((stop - start, 3, size, size), np.float32)
        return out, crops, [pool.submit(fill, start, lo, min(lo + chunk, stop - start), crops, out)
                            for lo in range(0, stop - start, chunk)]

    starts = deque(range(0, len(samples), batch_size))
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vaccbench-decode")
    try:
        in_flight = deque(submit(starts.popleft()) for _ in range(min(PREFETCH, len(starts))))
        while in_flight:
            out, crops, futures = in_flight.popleft()
            errors = [exc for future in futures for exc in future.result()]
            if errors:
                listed = "\n  ".join(str(e) for e in errors)
                raise ImageDecodeError(f"{len(errors)} unreadable image(s):\n  {listed}")
            if pending is not None:
                pending.write(crops)  # batches complete in order: the file grows in order
            if starts:
                in_flight.append(submit(starts.popleft()))
            elif not in_flight and pending is not None:
                pending.commit()  # every crop is written: publish before the last batch goes out
                pending = None
            yield out
            progress.advance(len(out))  # the consumer asked for more: this batch is done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if pending is not None:
            pending.discard()
