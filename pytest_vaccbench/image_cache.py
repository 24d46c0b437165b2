"""On-disk cache of preprocessed images, shared by every model with the same geometry.

Decoding and resizing are what an accuracy run spends its CPU on; normalising is cheap. So
an entry holds the uint8 crops, before normalisation: one memory-mappable `.npy` of shape
(N, H, W, 3) per (dataset fingerprint, `PreprocessSpec.geometry_key()`), which models with
the same resize/crop but different mean/std share. Beside it, a small JSON header says what
the entry holds (the file list digest, the geometry, the shape, a crc32 of the data) and
that it is complete.

Writers build the array under a temporary name and publish it with `os.replace`, the data
first and the header last, so a concurrent pytest-xdist worker or an interrupted run never
sees half an entry. Readers check the header against the dataset and the data against the
header (size, shape, crc32) before use: an entry that is stale (the files changed) or
corrupt (truncated, overwritten, half a pair) is reported as a `CacheMiss` and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .dataset import Sample, fingerprint
from .preprocess import PreprocessSpec

FORMAT = 1
_CRC_BLOCK = 1 << 24  # bytes per crc32 call: bounded memory, and the GIL is released


class CacheMiss(Exception):
    """No usable entry; the message says why (absent, stale or corrupt)."""


def files_digest(samples: Sequence[Sample]) -> str:
    """sha256 of (absolute path, size, mtime) in order: changes when any image file changes."""
    h = hashlib.sha256()
    for s in samples:
        st = os.stat(s.path)
        h.update(f"{os.path.abspath(s.path)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _crc32(data: np.ndarray) -> int:
    flat = data.reshape(-1)
    crc = 0
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
        expected = {"format": FORMAT, "geometry": self.spec.geometry_key(),
                    "shape": list(self.shape), "complete": True}
        for key, value in expected.items():
            if header.get(key) != value:
                raise CacheMiss(f"{self.header_path.name}: {key} is {header.get(key)!r}, "
                                f"expected {value!r}")
        try:
            files = files_digest(self.samples)
        except OSError as exc:
            raise CacheMiss(f"cannot read an image file: {exc}") from None
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
        """A writable array under a temporary name; `PendingEntry.commit` publishes it."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_orphans()
        tmp = self.root / f"{self.name}.npy.tmp-{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        files = files_digest(self.samples)  # before decoding: a file changed meanwhile is caught
        crops = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=self.shape)
        return PendingEntry(self, tmp, crops, files)

    def _remove_orphans(self) -> None:
        """Temporary files of this entry left by killed runs on this host (their pid is gone)."""
        host = socket.gethostname()
        for tmp in self.root.glob(f"{self.name}.*.tmp-*"):
            parts = tmp.name.rsplit(".tmp-", 1)[1].rsplit("-", 2)
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _alive(int(parts[1])):
                tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PendingEntry:
    """An entry being written; it becomes visible only through `commit`."""

    def __init__(self, entry: CacheEntry, tmp: Path, crops: np.ndarray, files: str) -> None:
        self.entry = entry
        self.tmp = tmp
        self.crops = crops  # writable memmap (N, H, W, 3) uint8
        self.files = files

    def commit(self) -> None:
        """Checksum, then publish: the data under its final name first, the header last."""
        self.crops.flush()
        spec = self.entry.spec
        header: dict[str, Any] = {
            "format": FORMAT, "geometry": spec.geometry_key(),
            "spec": {k: v for k, v in spec.to_mapping().items() if k not in ("mean", "std")},
            "shape": list(self.entry.shape), "files": self.files,
            "crc32": _crc32(self.crops), "bytes": self.tmp.stat().st_size, "complete": True}
        header_tmp = self.tmp.with_name(self.tmp.name.replace(".npy.tmp-", ".json.tmp-"))
        header_tmp.write_text(json.dumps(header, indent=1))
        os.replace(self.tmp, self.entry.data_path)
        os.replace(header_tmp, self.entry.header_path)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)
