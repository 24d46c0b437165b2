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
from dataclasses import dataclass, field, replace
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Sequence

import numpy as np

from .. import progress
from ..baselines import ModelEntry
from ..cache import kind_dir
from ..dataset import Dataset, Sample
from ..errors import BackendError, ImageDecodeError, VaccbenchError
from ..image_cache import DIGEST_BYTES, CacheEntry, CachedCrops, CacheMiss, PendingEntry, content_digest
from ..preprocess import PreprocessSpec, load_crop, normalize

BUILTIN = {
    "reference": "pytest_vaccbench.backends.reference:ReferenceBackend",
    "onnxruntime": "pytest_vaccbench.backends.onnxruntime:OnnxRuntimeBackend",
    "vamp": "pytest_vaccbench.backends.vamp:VampBackend",
    "vsx": "pytest_vaccbench.backends.vsx:VsxBackend",
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

    def scorer(self, entry: ModelEntry, precision: str, dataset: Dataset,
               options: RunOptions) -> Callable[[Sequence[Sample]], np.ndarray]:
        """A function that scores some of `dataset`'s samples at a time, in the order given:
        a sequential run evaluates the dataset in chunks and may stop after any of them.

        The default runs `scores` on a dataset of just those samples (for vamp, one datalist
        per chunk). A backend whose model depends on the whole dataset (int8 calibration
        images are drawn from it) or that is slow to set up builds it once here instead."""
        return lambda samples: self.scores(entry, precision, replace(dataset, samples=tuple(samples)),
                                           options)


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


def cached_crops(samples: Sequence[Sample], spec: PreprocessSpec, workers: int, cache_dir: Path,
                 rows: Sequence[int]) -> CachedCrops:
    """The image cache entry of `samples`, open for reading, its `rows` checked: decoded
    into the cache first when it does not hold them or they are stale (the whole entry is
    then rebuilt). The caller closes it."""
    entry = CacheEntry(cache_dir, tuple(samples), spec)
    try:
        crops = entry.open()
    except CacheMiss:
        pass
    else:
        try:
            for start in range(0, len(rows), CHECK_ROWS):
                crops.take(rows[start:start + CHECK_ROWS])
            return crops
        except CacheMiss:
            crops.close()
    for _ in iter_batches(samples, spec, 64, workers, cache_dir=cache_dir):
        pass
    return entry.open()


PREFETCH = 2  # batches read (or decoded) and normalised ahead of the consumer
CHUNK = 8  # images per task on the worker threads, at most
CHECK_ROWS = 64  # rows read at a time to check them


def _unreadable(errors: Sequence[ImageDecodeError]) -> ImageDecodeError:
    listed = "\n  ".join(str(e) for e in errors)
    return ImageDecodeError(f"{len(errors)} unreadable image(s):\n  {listed}")


class DecodeAhead:
    """Every image of a dataset decoded into a new image cache entry on `workers` threads,
    as fast as they go, each chunk of rows written in place as it is done; `read` returns
    rows once they are written, and `commit` publishes the entry. Decoding does not wait
    for the consumer: started before the model is ready (an ONNX export), it overlaps with
    that too, and the crops wait on disk (memory stays flat). `close` stops it and removes
    an unpublished entry."""

    def __init__(self, entry: CacheEntry, workers: int) -> None:
        self.entry = entry
        self.pending = entry.create()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vaccbench-decode")
        n = len(entry.samples)
        self._chunks = [self._pool.submit(self._decode, lo, min(lo + CHUNK, n)) for lo in range(0, n, CHUNK)]

    def _decode(self, lo: int, hi: int) -> list[tuple[int, ImageDecodeError]]:
        entry = self.entry
        crops = np.zeros((hi - lo, *entry.shape[1:]), np.uint8)
        sources = np.empty((hi - lo, DIGEST_BYTES), np.uint8)
        errors = []
        for i in range(lo, hi):
            path = entry.samples[i].path
            try:  # the file digested before decoding: a change meanwhile is caught next time
                sources[i - lo] = np.frombuffer(content_digest(path), np.uint8)
                load_crop(path, entry.spec, out=crops[i - lo])
            except ImageDecodeError as exc:
                errors.append((i, exc))
        self.pending.write_rows(lo, crops, sources)  # an unreadable image's row is never served
        return errors

    def read(self, start: int, stop: int, out: np.ndarray) -> list[ImageDecodeError]:
        """Rows start:stop into `out`, waiting for them; their decode errors instead, when
        any of their images is unreadable."""
        errors = [exc for k in range(start // CHUNK, -(-stop // CHUNK))
                  for row, exc in self._chunks[k].result() if start <= row < stop]
        if not errors:
            self.pending.read(start, stop, out)
        return errors

    def commit(self) -> None:
        for chunk in self._chunks:
            chunk.result()
        self.pending.commit()
        self.pending = None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.pending is not None:
            self.pending.discard()
            self.pending = None

    def __enter__(self) -> "DecodeAhead":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_entry(samples: Sequence[Sample], spec: PreprocessSpec, workers: int,
               cache_dir: Path) -> CachedCrops | DecodeAhead:
    """What batches of `samples` are read from: the published cache entry, or one being
    decoded now (`DecodeAhead`). The caller closes it."""
    entry = CacheEntry(cache_dir, tuple(samples), spec)
    try:
        return entry.open()
    except CacheMiss:
        return DecodeAhead(entry, workers)


def iter_batches(samples: Sequence[Sample], spec: PreprocessSpec, batch_size: int,
                 workers: int, *, cache_dir: Path | None = None,
                 source: CachedCrops | DecodeAhead | None = None) -> Iterator[np.ndarray]:
    """Normalised float32 (B, 3, H, W) batches in sample order.

    With `cache_dir`, the uint8 crops come from the on-disk cache (see image_cache), or
    from `source`, that cache's entry opened by the caller (`open_entry`; the caller closes
    it). A published entry's rows are read and checked (each crop and its image file
    against the entry's digests) on the worker threads; rows that fail the check are
    decoded again, and the entry rebuilt (the rows before the first bad one copied). With
    no entry yet, `DecodeAhead` decodes every image into a new one on its own threads,
    ahead of the consumer, and the batches are read back as their rows are written; the
    entry is published when the last batch is read. Without `cache_dir` the crops are
    decoded on the worker threads. Pillow and OpenCV release the GIL while decoding and
    resizing, so threads work in parallel (they measured faster than processes, which must
    ship every crop back). Up to PREFETCH batches are read or decoded and normalised ahead
    of the consumer, so this work overlaps inference. Every image of a batch is decoded
    before an error is raised, so the message lists all unreadable files of that batch,
    not just the first.
    """
    samples = tuple(samples)
    if batch_size < 1:
        raise VaccbenchError(f"batch size must be positive, got {batch_size}")
    if not spec.crop and spec.resize_mode != "square":
        raise VaccbenchError("preprocessing without `crop` needs `resize_mode: square`: a "
                             "short-side resize alone gives images of different sizes")
    if not samples:
        return
    owned = source is None and cache_dir is not None
    if owned:
        source = open_entry(samples, spec, workers, cache_dir)
    cached = source if isinstance(source, CachedCrops) else None
    ahead = source if isinstance(source, DecodeAhead) else None
    pending: PendingEntry | None = None  # the rebuild of a stale or corrupt published entry
    size = spec.output_size

    def fill(start: int, lo: int, hi: int, crops: np.ndarray, sources: np.ndarray,
             out: np.ndarray) -> tuple[list[ImageDecodeError], bool]:
        """Rows lo:hi of the batch at `start`, normalised into `out`. Returns the decode
        errors and whether the rows were decoded here (no entry, or stale rows)."""
        rows = slice(start + lo, start + hi)
        decode = source is None
        if ahead is not None:
            errors = ahead.read(rows.start, rows.stop, crops[lo:hi])
            if errors:
                return errors, False
        elif cached is not None:
            try:
                cached.read(rows.start, rows.stop, out=crops[lo:hi])
                sources[lo:hi] = cached.sources[rows]
            except CacheMiss:  # stale or corrupt: these rows are decoded, the entry rebuilt
                decode = True
        errors = []
        if decode:
            for i in range(lo, hi):
                path = samples[start + i].path
                try:  # digested before decoding: a change meanwhile is caught next time; without
                    # the cache, the digest is what the run's predictions record (image_digests)
                    sources[i] = np.frombuffer(content_digest(path), np.uint8)
                    load_crop(path, spec, out=crops[i])
                except ImageDecodeError as exc:
                    errors.append(exc)
        normalize(crops[lo:hi], spec, out=out[lo:hi])
        return errors, decode

    chunk = max(1, min(CHUNK, -(-batch_size // max(1, workers))))  # every thread gets work

    def submit(start: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, list[Future]]:
        n = min(start + batch_size, len(samples)) - start
        crops = np.empty((n, size, size, 3), np.uint8)
        sources = np.empty((n, DIGEST_BYTES), np.uint8)
        out = np.empty((n, 3, size, size), np.float32)
        return start, out, crops, sources, [pool.submit(fill, start, lo, min(lo + chunk, n), crops, sources, out)
                                            for lo in range(0, n, chunk)]

    starts = deque(range(0, len(samples), batch_size))
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vaccbench-read")
    try:
        in_flight = deque(submit(starts.popleft()) for _ in range(min(PREFETCH, len(starts))))
        while in_flight:
            start, out, crops, sources, futures = in_flight.popleft()
            results = [future.result() for future in futures]
            errors = [exc for found, _ in results for exc in found]
            if errors:
                raise _unreadable(errors)
            if pending is None and cached is not None and any(decoded for _, decoded in results):
                pending = cached.entry.create()  # stale or corrupt rows: rebuild the entry
                pending.copy(cached, start)
            if pending is not None:
                pending.write(crops, sources)  # batches complete in order: the file grows in order
            if starts:
                in_flight.append(submit(starts.popleft()))
            elif not in_flight:  # every crop is written: publish before the last batch goes out
                if pending is not None:
                    pending.commit()
                    pending = None
                if ahead is not None:
                    ahead.commit()
            yield out
            progress.advance(len(out))  # the consumer asked for more: this batch is done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if pending is not None:
            pending.discard()
        if owned and source is not None:
            source.close()
