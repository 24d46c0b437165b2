"""On-disk cache of preprocessed images, shared by every model with the same geometry.

Decoding and resizing are what an accuracy run spends its CPU on; normalising is cheap. So
an entry holds the uint8 crops, before normalisation: one memory-mappable `.npy` of shape
(N, H, W, 3) per (dataset fingerprint, `PreprocessSpec.geometry_key()`), which models with
the same resize/crop but different mean/std share. Beside it, a small JSON header says what
the entry holds (the file list digest, the geometry, the shape, a crc32 of the data) and
that it is complete.

Writers write the array with ordinary file writes, batch after batch, under a temporary
name, and publish it with `os.replace`, the data first and the header last, so a concurrent
pytest-xdist worker or an interrupted run never sees half an entry, and a full disk is an
`OSError` (reported as a `CacheWriteError` naming the file, the temporary file removed)
rather than the SIGBUS of a memory map that cannot be backed. Readers check the header
against the dataset (file paths and a sha256 of each file's content: an image replaced by
another of the same size and time is caught) and the data against the header (size, shape,
crc32) before use: an entry that is stale or corrupt (truncated, overwritten, half a pair)
is reported as a `CacheMiss` and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .dataset import Sample, fingerprint
from .errors import ImageDecodeError, VaccbenchError
from .preprocess import PreprocessSpec
from .safefiles import FILE_MODE, owner_tag, remove_orphans

FORMAT = 1
_CRC_BLOCK = 1 << 24  # bytes per crc32 call: bounded memory, and the GIL is released
_READ_BLOCK = 1 << 20  # bytes per read while digesting an image file


class CacheMiss(Exception):
    """No usable entry; the message says why (absent, stale or corrupt)."""


class CacheWriteError(VaccbenchError):
    """The cache folder cannot be written (read-only, full disk)."""


def files_digest(samples: Sequence[Sample]) -> str:
    """sha256 over (absolute path, size, sha256 of the content) in order: changes when any
    image file changes, even to another of the same size with its time put back.
    benchmarks/cache_digest.py measures its cost against decoding the same files."""
    h = hashlib.sha256()
    for s in samples:
        try:
            with open(s.path, "rb") as handle:
                content = hashlib.sha256()
                for block in iter(lambda: handle.read(_READ_BLOCK), b""):
                    content.update(block)
                size = os.fstat(handle.fileno()).st_size
        except OSError as exc:
            raise ImageDecodeError(f"cannot read image file: {exc.strerror}", s.path) from None
        h.update(f"{os.path.abspath(s.path)}\t{size}\t{content.hexdigest()}\n".encode())
    return h.hexdigest()


def _crc32(data: np.ndarray, crc: int = 0) -> int:
    flat = data.reshape(-1)
    for start in range(0, flat.size, _CRC_BLOCK):
        crc = zlib.crc32(flat[start:start + _CRC_BLOCK], crc)
    return crc


@dataclass(frozen=True)
class CacheEntry:
    """Where the crops of one (dataset, geometry) live, and how to read or write them."""

    root: Path
    samples: tuple[Sample, ...]
    spec: PreprocessSpec

    @cached_property
    def name(self) -> str:
        geometry = hashlib.sha256(self.spec.geometry_key().encode()).hexdigest()[:12]
        return f"{fingerprint(self.samples)}-{geometry}"

    @property
    def data_path(self) -> Path:
        return self.root / f"{self.name}.npy"

    @property
    def header_path(self) -> Path:
        return self.root / f"{self.name}.json"

    @cached_property
    def files(self) -> str:
        """`files_digest` of the samples, read once per entry (before any decoding, so that a
        file changed meanwhile makes the entry written now stale)."""
        return files_digest(self.samples)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.samples), self.spec.output_size, self.spec.output_size, 3)

    def read(self) -> np.ndarray:
        """The cached crops, memory-mapped read-only; CacheMiss when absent, stale or corrupt."""
        try:
            header = json.loads(self.header_path.read_text())
        except FileNotFoundError:
            raise CacheMiss(f"no entry {self.header_path.name}") from None
        except (OSError, ValueError) as exc:
            raise CacheMiss(f"unreadable header {self.header_path}: {exc}") from None
        if not isinstance(header, dict):
            raise CacheMiss(f"unreadable header {self.header_path}: a JSON "
                            f"{type(header).__name__}, not an object")
        expected = {"format": FORMAT, "geometry": self.spec.geometry_key(),
                    "shape": list(self.shape), "complete": True}
        for key, value in expected.items():
            if header.get(key) != value:
                raise CacheMiss(f"{self.header_path.name}: {key} is {header.get(key)!r}, "
                                f"expected {value!r}")
        try:
            files = self.files
        except ImageDecodeError as exc:
            raise CacheMiss(str(exc)) from None
        if header.get("files") != files:
            raise CacheMiss(f"{self.header_path.name}: the image files changed since it was written")
        try:
            size = self.data_path.stat().st_size
        except FileNotFoundError:
            raise CacheMiss(f"{self.data_path.name} is missing") from None
        if size != header.get("bytes"):
            raise CacheMiss(f"{self.data_path.name} has {size} bytes, the header says "
                            f"{header.get('bytes')} (truncated or replaced)")
        try:
            crops = np.load(self.data_path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise CacheMiss(f"{self.data_path.name} is not a readable .npy: {exc}") from None
        if crops.shape != self.shape or crops.dtype != np.uint8:
            raise CacheMiss(f"{self.data_path.name} holds {crops.dtype} {crops.shape}, "
                            f"expected uint8 {self.shape}")
        if _crc32(crops) != header.get("crc32"):
            raise CacheMiss(f"{self.data_path.name}: checksum mismatch (corrupt)")
        return crops

    def create(self) -> "PendingEntry":
        """A file being written under a temporary name; `PendingEntry.commit` publishes it."""
        files = self.files
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            remove_orphans(self.root, f"{self.name}.*.tmp-*")
            tmp = self.root / f"{self.name}.npy.tmp-{owner_tag()}-{id(self):x}"
            return PendingEntry(self, tmp, files)
        except OSError as exc:
            raise CacheWriteError(_cannot_write(exc), self.root) from None


def _cannot_write(exc: OSError) -> str:
    return (f"cannot write the image cache ({exc.strerror}); free space there, choose another "
            "folder with --vaccbench-cache DIR, or run with --no-image-cache")


class PendingEntry:
    """An entry being written, batch after batch in order; visible only through `commit`."""

    def __init__(self, entry: CacheEntry, tmp: Path, files: str) -> None:
        self.entry = entry
        self.tmp = tmp
        self.files = files
        self.rows = 0
        self.crc = 0
        self._handle = open(tmp, "xb")
        try:
            os.chmod(tmp, FILE_MODE)
            np.lib.format.write_array_header_1_0(self._handle, {
                "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                "fortran_order": False, "shape": entry.shape})
        except OSError:
            self.discard()
            raise

    def write(self, crops: np.ndarray) -> None:
        """Append the next rows (uint8 (n, H, W, 3)); a full disk raises CacheWriteError
        and removes the temporary file."""
        if crops.shape[1:] != self.entry.shape[1:] or self.rows + len(crops) > self.entry.shape[0]:
            raise ValueError(f"{crops.shape} rows do not fit the entry {self.entry.shape} "
                             f"after {self.rows} rows")
        data = np.ascontiguousarray(crops, dtype=np.uint8).reshape(-1)
        try:
            self._handle.write(memoryview(data))
        except OSError as exc:
            self.discard()
            raise CacheWriteError(_cannot_write(exc), self.tmp) from None
        self.crc = _crc32(data, self.crc)
        self.rows += len(crops)

    def commit(self) -> None:
        """Publish: the data under its final name first, the header last."""
        if self.rows != self.entry.shape[0]:
            raise ValueError(f"{self.rows} rows written of {self.entry.shape[0]}")
        spec = self.entry.spec
        try:
            self._handle.close()
            header: dict[str, Any] = {
                "format": FORMAT, "geometry": spec.geometry_key(),
                "spec": {k: v for k, v in spec.to_mapping().items() if k not in ("mean", "std")},
                "shape": list(self.entry.shape), "files": self.files,
                "crc32": self.crc, "bytes": self.tmp.stat().st_size, "complete": True}
            header_tmp = self.tmp.with_name(self.tmp.name.replace(".npy.tmp-", ".json.tmp-"))
            try:
                header_tmp.write_text(json.dumps(header, indent=1))
                os.chmod(header_tmp, FILE_MODE)
                os.replace(self.tmp, self.entry.data_path)
                os.replace(header_tmp, self.entry.header_path)
            finally:
                header_tmp.unlink(missing_ok=True)
        except OSError as exc:
            self.discard()
            raise CacheWriteError(_cannot_write(exc), self.entry.header_path) from None

    def discard(self) -> None:
        self._handle.close()
        self.tmp.unlink(missing_ok=True)
