"""On-disk cache of preprocessed images, shared by every model with the same geometry.

Decoding and resizing are what an accuracy run spends its CPU on; normalising is cheap. So
an entry holds the uint8 crops, before normalisation: one `.npy` of shape (N, H, W, 3) per
(dataset fingerprint, `PreprocessSpec.geometry_key()`), which models with the same
resize/crop but different mean/std share. Beside it, a JSON header says what the entry holds
(the geometry, the shape, the image files' paths) and that it is complete, and keeps two
digests per row: the content of the image file the crop was made from, and the crop.

Writers write the array with ordinary file writes, batch after batch, under a temporary
name, and publish it with `os.replace`, the data first and the header last, so a concurrent
pytest-xdist worker or an interrupted run never sees half an entry, and a full disk is an
`OSError` (reported as a `CacheWriteError` naming the file, the temporary file removed)
rather than the SIGBUS of a memory map that cannot be backed.

Readers check what costs nothing when the entry is opened (the header, the file list, the
data file's size and shape), and the rest row by row as the rows are read (`CachedCrops`):
each crop against its digest, and each image file's content against the digest of the file
it was made from (an image replaced by another of the same size and time is caught). A row
that fails either check raises `CacheMiss` before it is returned, so a stale or corrupt crop
never reaches a model; the caller decodes those images again and rebuilds the entry. The
checks run on the threads that read the rows, while the model runs; nothing reads the whole
entry or every image file before the first batch, and rows are read into the caller's
buffers (no memory map), so memory does not grow with the number of images.

The digests are xxHash's XXH3 (128 bits for the image files, 64 for the crops): they guard
against accidental change, at ~20 GB/s, 7 to 14 times sha256 and crc32 here.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import xxhash

from .dataset import Sample, fingerprint
from .errors import ImageDecodeError, VaccbenchError
from .preprocess import PreprocessSpec
from .safefiles import FILE_MODE, file_identity, owner_tag, remove_orphans

FORMAT = 2
DIGEST_BYTES = 16  # per image file: XXH3-128 of its content
_READ_BLOCK = 1 << 20  # bytes per read while digesting an image file
_COPY_ROWS = 64  # rows per read when an entry is copied into its rebuild
_buffers = threading.local()


class CacheMiss(Exception):
    """No usable entry, or a row of it that cannot be used; the message says why."""


class CacheWriteError(VaccbenchError):
    """The cache folder cannot be written (read-only, full disk)."""


# path -> (file identity, content digest) of the last time this process read the file:
# what `image_digests` answers from (about 200 bytes per image)
_SEEN: dict[str, tuple[list[int], bytes]] = {}


def content_digest(path: Path) -> bytes:
    """XXH3-128 of a file's content (16 bytes); an unreadable file is an ImageDecodeError.
    Remembered against the file's identity as it was opened (safefiles.file_identity), for
    `image_digests`."""
    buffer = getattr(_buffers, "block", None)
    if buffer is None:
        buffer = _buffers.block = bytearray(_READ_BLOCK)
    view = memoryview(buffer)
    h = xxhash.xxh3_128()
    try:
        with open(path, "rb", buffering=0) as handle:
            identity = file_identity(os.fstat(handle.fileno()))
            while size := handle.readinto(view):
                h.update(view[:size])
    except OSError as exc:
        raise ImageDecodeError(f"cannot read image file: {exc.strerror}", path) from None
    digest = h.digest()
    _SEEN[str(path)] = (identity, digest)
    return digest


def image_digests(samples: Sequence[Sample]) -> np.ndarray:
    """Each image's content digest (the first 64 bits of its XXH3-128, as uint64), in order:
    what a run's predictions record, so that runs are paired only on the same images, not on
    images of the same names. The run took these digests already, as it read the images
    (the image cache checks or writes each row with its file's digest; the decoding without
    the cache, and vamp's inputs, take it too): each is reused while the file's identity
    (inode, size, mtime, ctime: any write changes it) is the one it was read with, so no
    image is read again for this; a file no run of this process read is read here."""
    found = np.empty(len(samples), np.uint64)
    for i, s in enumerate(samples):
        seen = _SEEN.get(str(s.path))
        try:
            current = seen is not None and seen[0] == file_identity(os.stat(s.path))
        except OSError as exc:
            raise ImageDecodeError(f"cannot read image file: {exc.strerror}", s.path) from None
        digest = seen[1] if current else content_digest(s.path)  # type: ignore[index]
        found[i] = int.from_bytes(digest[:8], "big")
    return found


def npy_header(handle: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from the npy header at `handle`'s position, read
    without the array (formats 1.0 and 2.0, those numpy writes); ValueError otherwise."""
    version = np.lib.format.read_magic(handle)
    read = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"npy format version {version} is not one numpy writes by default")
    return read(handle)


def files_digest(samples: Sequence[Sample]) -> str:
    """sha256 over (absolute path, content digest) in order: changes when any image file
    changes, even to another of the same size with its time put back."""
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{os.path.abspath(s.path)}\t{content_digest(s.path).hex()}\n".encode())
    return h.hexdigest()


def paths_digest(samples: Sequence[Sample]) -> str:
    """sha256 of the absolute paths in order: the same names in another folder are another
    file list (no file is read)."""
    return hashlib.sha256("".join(f"{os.path.abspath(s.path)}\n" for s in samples).encode()).hexdigest()


def crop_digests(crops: np.ndarray) -> np.ndarray:
    """XXH3-64 of each row of uint8 (n, H, W, 3) crops, as uint64 (n,)."""
    return np.fromiter((xxhash.xxh3_64_intdigest(row) for row in np.ascontiguousarray(crops)),
                       np.uint64, len(crops))


def _pread(fd: int, out: np.ndarray, position: int, what: str) -> np.ndarray:
    """Fill `out` (C-contiguous) from `fd` at `position` (positioned reads: any thread, no
    shared offset)."""
    if not out.flags.c_contiguous:
        raise ValueError("rows are read into a C-contiguous array")
    view = memoryview(out.reshape(-1)).cast("B")
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], position + done)
        if got == 0:
            raise CacheMiss(f"{what} ends before byte {position + len(view)} (truncated)")
        done += got
    return out


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

    def open(self) -> "CachedCrops":
        """The entry, its rows to be read (and checked) as they are needed; CacheMiss when
        absent, or when the header, the file list or the data file's size or shape is wrong."""
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
        if header.get("paths") != paths_digest(self.samples):
            raise CacheMiss(f"{self.header_path.name}: the image files changed since it was written "
                            "(another file list)")
        try:
            sources = np.frombuffer(base64.b64decode(header["sources"], validate=True), np.uint8)
            crops = np.frombuffer(base64.b64decode(header["crops"], validate=True), "<u8")
        except (KeyError, TypeError, ValueError) as exc:
            raise CacheMiss(f"unreadable header {self.header_path}: row digests: {exc}") from None
        if sources.size != len(self.samples) * DIGEST_BYTES or crops.size != len(self.samples):
            raise CacheMiss(f"unreadable header {self.header_path}: row digests for "
                            f"{crops.size} rows, expected {len(self.samples)}")
        try:
            handle = open(self.data_path, "rb", buffering=0)
        except FileNotFoundError:
            raise CacheMiss(f"{self.data_path.name} is missing") from None
        except OSError as exc:
            raise CacheMiss(f"{self.data_path.name} cannot be read: {exc.strerror}") from None
        try:
            size = os.fstat(handle.fileno()).st_size
            if size != header.get("bytes"):
                raise CacheMiss(f"{self.data_path.name} has {size} bytes, the header says "
                                f"{header.get('bytes')} (truncated or replaced)")
            try:
                shape, fortran, dtype = npy_header(handle)
            except (OSError, ValueError) as exc:
                raise CacheMiss(f"{self.data_path.name} is not a readable .npy: {exc}") from None
            if tuple(shape) != self.shape or dtype != np.uint8 or fortran:
                raise CacheMiss(f"{self.data_path.name} holds {dtype} {tuple(shape)}, "
                                f"expected uint8 {self.shape}")
            return CachedCrops(self, handle, handle.tell(), sources.reshape(-1, DIGEST_BYTES), crops)
        except BaseException:
            handle.close()
            raise

    def read(self) -> np.ndarray:
        """Every crop, each row checked: uint8 (N, H, W, 3) in memory (for small entries and
        tests; runs read batch by batch through `open`)."""
        with self.open() as crops:
            return crops.read(0, len(self.samples))

    def create(self) -> "PendingEntry":
        """A file being written under a temporary name; `PendingEntry.commit` publishes it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            remove_orphans(self.root, f"{self.name}.*.tmp-*")
            tmp = self.root / f"{self.name}.npy.tmp-{owner_tag()}-{id(self):x}"
            return PendingEntry(self, tmp)
        except OSError as exc:
            raise CacheWriteError(_cannot_write(exc), self.root) from None


class CachedCrops:
    """The rows of a published entry, read with positioned reads (any thread) into the
    caller's buffers, each checked as it is read: the crop against its digest, then the
    image file it was made from against that file's digest."""

    def __init__(self, entry: CacheEntry, handle: Any, offset: int, sources: np.ndarray,
                 crops: np.ndarray) -> None:
        self.entry, self._handle, self._offset = entry, handle, offset
        self.sources, self.crops = sources, crops  # the header's digests, per row
        self._row_bytes = int(np.prod(entry.shape[1:]))

    def __len__(self) -> int:
        return len(self.entry.samples)

    def __enter__(self) -> "CachedCrops":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._handle.close()

    def read(self, start: int, stop: int, out: np.ndarray | None = None, check: bool = True) -> np.ndarray:
        """Rows start:stop as uint8 (n, H, W, 3), into `out` when given; CacheMiss naming
        the first row whose crop or image file does not match the header."""
        if out is None:
            out = np.empty((stop - start, *self.entry.shape[1:]), np.uint8)
        _pread(self._handle.fileno(), out, self._offset + start * self._row_bytes, self.entry.data_path.name)
        if check:
            self.check(range(start, stop), out)
        return out

    def take(self, rows: Sequence[int]) -> np.ndarray:
        """The given rows, in that order, each checked."""
        out = np.empty((len(rows), *self.entry.shape[1:]), np.uint8)
        for i, row in enumerate(rows):
            self.read(int(row), int(row) + 1, out[i:i + 1])
        return out

    def check(self, rows: range, crops: np.ndarray) -> None:
        """CacheMiss unless `crops` (the rows read) and their image files match the header."""
        bad = np.flatnonzero(crop_digests(crops) != self.crops[rows.start:rows.stop])
        if bad.size:
            row = rows.start + int(bad[0])
            raise CacheMiss(f"{self.entry.data_path.name}: checksum mismatch (corrupt) in row {row} "
                            f"({self.entry.samples[row].path.name})")
        for row in rows:
            path = self.entry.samples[row].path
            try:
                same = content_digest(path) == self.sources[row].tobytes()
            except ImageDecodeError as exc:
                raise CacheMiss(str(exc)) from None
            if not same:
                raise CacheMiss(f"{self.entry.header_path.name}: the image files changed since it "
                                f"was written ({path})")


def _cannot_write(exc: OSError) -> str:
    return (f"cannot write the image cache ({exc.strerror}); free space there, choose another "
            "folder with --vaccbench-cache DIR, or run with --no-image-cache")


class PendingEntry:
    """An entry being written, rows in any order and from any thread (positioned writes);
    visible only through `commit`, once every row is written."""

    def __init__(self, entry: CacheEntry, tmp: Path) -> None:
        self.entry = entry
        self.tmp = tmp
        self.rows = 0  # rows written so far
        n = entry.shape[0]
        self.sources = np.zeros((n, DIGEST_BYTES), np.uint8)
        self.crops = np.zeros(n, np.uint64)
        self._row_bytes = int(np.prod(entry.shape[1:]))
        self._lock = threading.Lock()
        self._handle = open(tmp, "x+b", buffering=0)  # read back while being written
        try:
            os.chmod(tmp, FILE_MODE)
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {
                "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                "fortran_order": False, "shape": entry.shape})
            self._offset = len(header.getvalue())
            os.pwrite(self._handle.fileno(), header.getvalue(), 0)
        except OSError:
            self.discard()
            raise

    def write(self, crops: np.ndarray, sources: np.ndarray | None = None,
              digests: np.ndarray | None = None) -> None:
        """Append the next rows: `write_rows` after the rows written so far."""
        self.write_rows(self.rows, crops, sources, digests)

    def write_rows(self, start: int, crops: np.ndarray, sources: np.ndarray | None = None,
                   digests: np.ndarray | None = None) -> None:
        """Write rows start:start+n (uint8 (n, H, W, 3)) made from image files of the given
        content digests ((n, 16) uint8, best taken before decoding, so that a file changed
        meanwhile leaves a stale row; None: the files are digested now); `digests`: the
        crops' own, when already known. A full disk raises CacheWriteError (`discard`
        removes the temporary file)."""
        if crops.shape[1:] != self.entry.shape[1:] or start + len(crops) > self.entry.shape[0]:
            raise ValueError(f"{crops.shape} rows do not fit the entry {self.entry.shape} "
                             f"at row {start}")
        data = np.ascontiguousarray(crops, dtype=np.uint8)
        view = memoryview(data.reshape(-1))
        position, done = self._offset + start * self._row_bytes, 0
        try:
            while done < len(view):
                done += os.pwrite(self._handle.fileno(), view[done:], position + done)
        except OSError as exc:
            raise CacheWriteError(_cannot_write(exc), self.tmp) from None
        rows = slice(start, start + len(crops))
        if sources is None:
            sources = [np.frombuffer(content_digest(s.path), np.uint8) for s in self.entry.samples[rows]]
        self.sources[rows] = sources
        self.crops[rows] = crop_digests(data) if digests is None else digests
        with self._lock:
            self.rows += len(crops)

    def read(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Rows start:stop as written (the caller knows they are)."""
        return _pread(self._handle.fileno(), out, self._offset + start * self._row_bytes, self.tmp.name)

    def copy(self, source: CachedCrops, stop: int) -> None:
        """Append rows rows..stop of a published entry with their digests, as they are (they
        were checked when first read)."""
        for start in range(self.rows, stop, _COPY_ROWS):
            end = min(start + _COPY_ROWS, stop)
            self.write(source.read(start, end, check=False), source.sources[start:end],
                       source.crops[start:end])

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
                "shape": list(self.entry.shape), "paths": paths_digest(self.entry.samples),
                "bytes": self.tmp.stat().st_size, "complete": True,
                "sources": base64.b64encode(self.sources.tobytes()).decode(),
                "crops": base64.b64encode(self.crops.astype("<u8").tobytes()).decode()}
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
