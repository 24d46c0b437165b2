"""A pytester project for the hostile-input probes (tests/test_hostile*.py).

Small synthetic PNGs in a flat folder with a label file, one baseline file, a suite, and a
backend that reads the images through the shared batch loop (so the image cache, the
decoders and the pixel limit are the real ones) and scores every image right: each test
measures top1 = top5 = 100 unless an input breaks it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

LABELS = [1, 2, 3, 4]
TRACEBACK = "Traceback (most recent call last)"

BACKEND = '''
import numpy as np
from pytest_vaccbench.backends import Backend, class_scores, iter_batches
from pytest_vaccbench.weights import find_weights


class HostileBackend(Backend):
    name = "hostile"
    precisions = ("fp32",)

    def skip_reason(self, entry, precision, options):
        if entry.weights.package or entry.weights.file:
            lookup = find_weights(entry, options.weights_dir)
            return None if lookup.path else lookup.skip_reason(entry)
        return None

    def scores(self, entry, precision, dataset, options):
        for _ in iter_batches(dataset.samples, entry.preprocess, 2, 1,
                              cache_dir=options.image_cache_dir):
            pass
        scores = np.zeros((len(dataset.samples), 1000), np.float32)
        scores[np.arange(len(dataset.samples)), dataset.labels] = 1.0
        return class_scores(scores, entry)
'''

CONFTEST = '''
from pytest_vaccbench import backends, history


def pytest_configure(config):
    backends.BUILTIN["hostile"] = "hostilebackend:HostileBackend"
    timeout, history.LOCK_TIMEOUT = history.LOCK_TIMEOUT, 0.2  # a locked database: fail fast

    def restore():
        backends.BUILTIN.pop("hostile", None)
        history.LOCK_TIMEOUT = timeout

    config.add_cleanup(restore)
'''


def model(key: str, size: int = 16, expected: bool = True, extra: str = "", library: str = "pil") -> str:
    """One model block of the baseline file: expects 100/100 on the `data` dataset."""
    block = (f"  {key}:\n    name: m\n    source: test\n    library:\n    arch:\n"
             f"    input_size: {size}\n    preprocess: {{resize: {size}, crop: {size}, "
             f"library: {library}}}\n{extra}")
    if expected:
        block += "    expected:\n      data:\n        hostile/fp32: {top1: 100.0, top5: 100.0}\n"
    return block


class Hostile:
    """`base` holds what a run reads and writes (data, baselines, cache, reports): a small
    file system in the disk-full probes, the pytester folder otherwise."""

    def __init__(self, pytester: pytest.Pytester, base: Path | None = None) -> None:
        self.pytester = pytester
        self.root = pytester.path
        self.base = base or self.root
        self.images = self.base / "data" / "images"
        self.images.mkdir(parents=True)
        rng = np.random.default_rng(3)
        for i, label in enumerate(LABELS):
            rgb = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(self.images / f"img{i}.png", compress_level=0)
        self.labels = self.base / "data" / "val_label.txt"
        self.labels.write_text("".join(f"img{i}.png {label}\n" for i, label in enumerate(LABELS)))
        self.baselines = self.base / "baselines"
        self.baselines.mkdir()
        self.cache = self.base / "cache"
        (self.root / "suites").mkdir()
        (self.root / "suites" / "hostile.yaml").write_text(
            f"baselines: {self.baselines}\nbackends: [hostile]\nprecisions: [fp32]\n")
        (self.root / "hostilebackend.py").write_text(BACKEND)
        (self.root / "conftest.py").write_text(CONFTEST)
        self.baseline(model("test-m"))

    def baseline(self, models: str, family: str = "fam", name: str = "fam.yaml") -> Path:
        path = self.baselines / name
        path.write_text(f"family: {family}\npreprocess: {{resize: 16, crop: 16}}\nmodels:\n{models}")
        return path

    def run(self, *extra: str, writes: bool = False) -> pytest.RunResult:
        """A session; unless it `writes` (baseline updates, reports in the project), nothing
        in the project but the cache may change: baselines, images, labels byte-identical."""
        before = snapshot(self.root, self.cache)
        result = self.pytester.runpytest("suites", "-p", "no:cacheprovider", "-rs",
                                         f"--dataset={self.images}", f"--vaccbench-cache={self.cache}",
                                         *extra)
        if not writes:
            assert snapshot(self.root, self.cache) == before, "written outside the cache"
        return result


def assert_clean(result: pytest.RunResult) -> str:
    """No Python traceback printed, neither Python's nor pytest's (`E   ` lines): every
    problem was a one-paragraph message. Returns the output."""
    text = "\n".join(result.outlines + result.errlines)
    assert TRACEBACK not in text, text
    assert not any(line.startswith("E   ") for line in result.outlines), text
    return text


def snapshot(root: Path, *skip: Path) -> dict[str, str]:
    """sha256 of every file under `root` but those under `skip` (and __pycache__)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and \
                not any(path.is_relative_to(s) for s in skip):
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (the pixel data is a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def jpeg_claiming(path: Path, width: int, height: int) -> None:
    """A small JPEG whose frame header (SOF0) is edited to claim width x height."""
    Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(path, format="JPEG", quality=90)
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))


@contextlib.contextmanager
def small_fs(path: Path, size: str = "1m", read_only: bool = False) -> Iterator[Path]:
    """A real tmpfs of `size` mounted at `path` (root only); the test skips when mounting is
    not permitted here."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("this probe mounts a small tmpfs, which needs root")
    options = f"size={size},mode=0755" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs at {path} ({done.stderr.strip()}); this probe needs "
                    "a real small file system")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# -- reports, as --vaccbench-json writes them ---------------------------------------------------

NODEID = "suites/s.yaml::fam/m[hostile-fp32]"


def report_record(**changes: object) -> dict:
    """One measured test of a --vaccbench-json report (4 images, 3 right), with `changes`."""
    record = {"nodeid": NODEID, "outcome": "passed", "status": "passed", "reason": "",
              "expected": {"top1": 75.0, "top5": 100.0, "origin": "fam.yaml", "tol1": 0.5, "tol5": 0.5},
              "gate": {"verdict": "passed", "allowed": {"top1": 0.5, "top5": 0.5}, "message": ""},
              "family": "fam", "model": "m", "backend": "hostile", "precision": "fp32",
              "dataset": "data", "fingerprint": "f00d", "n": 4, "correct1": 3, "correct5": 4,
              "seconds": 0.5, "predictions": "r.predictions/m.npz", "baseline": "fam.yaml",
              "date": "2026-01-01", "versions": "pytest-vaccbench 0.1.0", "machine": "cpu",
              "options": {}, "excluded": 0, "device": None, "top1": 75.0, "top5": 100.0,
              "delta_top1": 0.0, "delta_top5": 0.0, "per_class": {"1": [4, 3, 4]}}
    record.update(changes)
    return record


def write_report(folder: Path, name: str = "r.json", tests: list | None = None, **session: object) -> Path:
    """A report of one shard (group 1 of 1) with its predictions file beside it; `session`
    keys replace the session's, `tests` the records."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "r.predictions").mkdir(exist_ok=True)
    np.savez(folder / "r.predictions" / "m.npz", top5=np.tile(np.array([[1], [1], [1], [2]], np.int16), (1, 5)),
             labels=np.array([1, 1, 1, 1], np.int16), files=np.array([f"img{i}.png" for i in range(4)]))
    document = {"tool": "pytest-vaccbench 0.1.0", "session": {
        "command": "pytest suites", "exitstatus": 0, "started": "2026-01-01T00:00:00",
        "finished": "2026-01-01T00:01:00", "suites": {"suites/s.yaml": "0" * 64},
        "baselines": ["baselines/fam.yaml"], "baselines_digest": "abc", "session_tests": [NODEID],
        "dataset": "data", "fingerprint": "f00d", "splits": 1, "group": 1,
        "ran": {NODEID: {"outcome": "passed", "seconds": 0.5, "message": ""}}, **session},
        "tests": [report_record()] if tests is None else tests}
    path = folder / name
    path.write_text(json.dumps(document))
    return path
