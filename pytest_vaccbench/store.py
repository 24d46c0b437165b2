"""Predictions store: the per-image predictions of the runs baseline entries were recorded from.

`--vaccbench-store DIR` (a shared folder, or a CI artifact) keeps, for every result that
`--update-baselines` records, what that run predicted for each image; the baseline entry
names it by digest (`predictions: <digest>`). A later run of the same build on the same images
is then compared image by image with the run its baseline came from (`sequential`), instead
of only with its totals.

Content-addressed: an entry's name is the first 32 hex digits of the sha256 of its bytes,
stored as `DIR/<2 hex>/<digest>`; the same predictions always make the same bytes, so
recording them twice keeps one file. A reader checks the bytes against the name, so a
damaged or replaced entry is refused, never used.

Compact: per image, the top-1 class (0 when it is the true label, else class + 1) and the
true label's place in the top 5 (0-4, 5 when absent), xz-compressed: ~0.7 bytes per image
for a typical ImageNet run (`benchmarks/sequential.py` measures it). File names and labels
are not kept: an entry belongs to the images its `fingerprint` names (file names, sizes and
labels in order, dataset.fingerprint), which a run must have to be compared with it.

    VACCBENCH-PREDICTIONS 1\\n
    {"fingerprint": "...", "n": N}\\n
    xz(top1 code as N little-endian uint16, then label rank as N uint8)
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import VaccbenchError
from .safefiles import write_atomic

MAGIC = b"VACCBENCH-PREDICTIONS 1\n"
DIGEST_RE = re.compile(r"^[0-9a-f]{32}$")
ABSENT = 5  # label rank of an image whose true label is not in the top 5
_XZ = lzma.PRESET_DEFAULT | lzma.PRESET_EXTREME
MAX_HEADER = 4096  # bytes: the JSON line holds two fields


class StoreError(VaccbenchError):
    """A store entry that is missing, unreadable or damaged."""


@dataclass(frozen=True)
class StoredRun:
    """The predictions of one run: per image (in dataset order), whether top-1 and top-5 were
    right and the top-1 class."""

    digest: str
    fingerprint: str
    code: np.ndarray  # uint16: 0 = top-1 is the true label, else top-1 class + 1
    rank: np.ndarray  # uint8: place of the true label in the top 5, ABSENT when not there

    @property
    def n(self) -> int:
        return int(self.rank.shape[0])

    @property
    def correct1(self) -> np.ndarray:
        return self.rank == 0

    @property
    def correct5(self) -> np.ndarray:
        return self.rank < ABSENT

    def top1(self, labels: Sequence[int]) -> np.ndarray:
        """Top-1 classes, given the images' labels (the entry keeps only where it was wrong)."""
        return np.where(self.code == 0, np.asarray(labels), self.code.astype(np.int64) - 1)


def encode(top5: np.ndarray, labels: Sequence[int], fingerprint: str) -> bytes:
    """The entry's bytes for (N, 5) top-5 predictions and N labels; the same input always
    gives the same bytes."""
    top5 = np.asarray(top5)
    truth = np.asarray(labels).reshape(-1, 1)
    if top5.ndim != 2 or top5.shape[0] != truth.shape[0] or top5.shape[0] == 0:
        raise ValueError(f"top-5 of shape {top5.shape} for {truth.shape[0]} labels")
    hits = top5[:, :5] == truth
    rank = np.where(hits.any(axis=1), hits.argmax(axis=1), ABSENT).astype(np.uint8)
    code = np.where(rank == 0, 0, top5[:, 0].astype(np.int64) + 1).astype("<u2")
    header = json.dumps({"fingerprint": fingerprint, "n": int(rank.shape[0])}, sort_keys=True)
    return MAGIC + header.encode() + b"\n" + lzma.compress(code.tobytes() + rank.tobytes(), preset=_XZ)


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def decode(data: bytes, digest: str, where: Path) -> StoredRun:
    """An entry's bytes, checked against its digest and its own header."""
    if digest_of(data) != digest:
        raise StoreError(f"damaged store entry: its content does not match its name {digest} "
                         "(truncated or overwritten); record the baseline again with "
                         "--update-baselines --vaccbench-store to replace it", where)
    try:
        if not data.startswith(MAGIC):
            raise ValueError("not a vaccbench predictions entry")
        line, _, payload = data[len(MAGIC):].partition(b"\n")
        if len(line) > MAX_HEADER:
            raise ValueError("header too long")
        header = json.loads(line)
        n, fingerprint = header["n"], header["fingerprint"]
        if not isinstance(n, int) or n < 1 or not isinstance(fingerprint, str):
            raise ValueError(f"bad header {header!r}")
        raw = lzma.LZMADecompressor().decompress(payload, max_length=3 * n + 1)
        if len(raw) != 3 * n:
            raise ValueError(f"{len(raw)} bytes of predictions for {n} images")
    except (ValueError, KeyError, TypeError, lzma.LZMAError) as exc:
        raise StoreError(f"unreadable store entry ({exc})", where) from None
    code = np.frombuffer(raw[:2 * n], dtype="<u2")
    rank = np.frombuffer(raw[2 * n:], dtype=np.uint8)
    if code.max() > 1000 or rank.max() > ABSENT:
        raise StoreError("unreadable store entry (values out of range)", where)
    return StoredRun(digest, fingerprint, code, rank)


class PredictionsStore:
    """The folder of entries (`--vaccbench-store`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def path(self, digest: str) -> Path:
        if not DIGEST_RE.match(digest):  # a baseline file's text never becomes a path
            raise StoreError(f"{digest!r} is not a predictions digest (32 hex digits)")
        return self.root / digest[:2] / digest

    def put(self, top5: np.ndarray, labels: Sequence[int], fingerprint: str,
            dry_run: bool = False) -> str:
        """Keep a run's predictions (unless `dry_run`) and return their digest."""
        data = encode(top5, labels, fingerprint)
        digest = digest_of(data)
        if dry_run:
            return digest
        target = self.path(digest)
        try:
            if not (target.is_file() and target.read_bytes() == data):
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(target, lambda handle: handle.write(data), durable=True)
        except OSError as exc:
            raise StoreError(f"cannot write to the predictions store ({exc.strerror or exc})",
                             target.parent) from None
        return digest

    def put_file(self, predictions: Path, fingerprint: str, dry_run: bool = False) -> str:
        """Keep the predictions a run saved (an .npz with top5 and labels)."""
        if not predictions.is_file():
            raise StoreError("the run's predictions file is missing", predictions)
        try:
            with np.load(predictions) as saved:
                top5, labels = saved["top5"], saved["labels"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise StoreError(f"cannot read the run's predictions ({exc})", predictions) from None
        return self.put(top5, labels, fingerprint, dry_run)

    def get(self, digest: str) -> StoredRun:
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"no store entry {digest} (recorded with another --vaccbench-store, "
                             "or removed); record the baseline again with --update-baselines "
                             "--vaccbench-store to keep its predictions", path) from None
        except OSError as exc:
            raise StoreError(f"cannot read the store entry ({exc.strerror or exc})", path) from None
        return decode(data, digest, path)
