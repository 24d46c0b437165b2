"""One accuracy case end to end: backend scores -> predictions -> metrics, kept on disk.

Plain functions, no pytest: the plugin calls `evaluate`, and so can any script.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .backends import RunOptions, get_backend
from .baselines import ModelEntry
from .dataset import Dataset
from .metrics import accuracy, topk


@dataclass(frozen=True)
class Case:
    entry: ModelEntry
    backend: str
    precision: str

    @property
    def id(self) -> str:
        return f"{self.entry.test_name}[{self.backend}-{self.precision}]"


@dataclass
class Result:
    """What a test measured; JSON-serialisable so it travels in pytest reports (xdist)."""

    family: str
    model: str
    backend: str
    precision: str
    dataset: str
    fingerprint: str
    n: int
    correct1: int
    correct5: int
    seconds: float
    predictions: str  # .npz with top5 (N, 5) and labels (N,), in dataset order
    baseline: str
    excluded: int = 0  # images left out of the count (int8 calibration images)

    @property
    def top1(self) -> float:
        return 100.0 * self.correct1 / self.n

    @property
    def top5(self) -> float:
        return 100.0 * self.correct5 / self.n

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Result":
        return cls(**json.loads(text))

    def baseline_values(self) -> dict[str, Any]:
        """The flow mapping written under expected.<dataset>.<backend>/<precision>."""
        return {"top1": round(self.top1, 3), "top5": round(self.top5, 3), "n": self.n,
                "fingerprint": self.fingerprint, "date": _dt.date.today().isoformat(),
                "versions": library_versions(self.backend), "machine": machine(),
                **({"calibration_excluded": self.excluded} if self.excluded else {})}


def library_versions(backend: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    names = {"reference": ("torch", "timm", "torchvision"), "onnxruntime": ("onnxruntime",)}
    parts = [f"pytest-vaccbench {__version__}"]
    for name in names.get(backend, ()):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(parts)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return cpu


def predictions_path(cache_dir: Path, case: Case, dataset: Dataset, fingerprint: str) -> Path:
    e = case.entry
    return (cache_dir / "predictions" / e.family / e.key /
            f"{case.backend}-{case.precision}" / f"{dataset.name}-{fingerprint}.npz")


def evaluate(case: Case, dataset: Dataset, options: RunOptions) -> Result:
    """Run the case on every image; count all but those the backend built its model from."""
    backend = get_backend(case.backend)
    excluded = set(backend.excluded_samples(case.entry, case.precision, dataset, options))
    start = time.perf_counter()
    scores = backend.scores(case.entry, case.precision, dataset, options)
    seconds = time.perf_counter() - start
    if scores.shape[0] != len(dataset.samples):
        raise RuntimeError(f"backend {case.backend} returned {scores.shape[0]} score rows for "
                           f"{len(dataset.samples)} images")
    if excluded:
        keep = [i for i, s in enumerate(dataset.samples) if s not in excluded]
        scores = scores[keep]
        dataset = replace(dataset, samples=tuple(dataset.samples[i] for i in keep))
    preds = topk(scores, 5)
    acc = accuracy(preds, dataset.labels)
    fingerprint = dataset.fingerprint()
    out = predictions_path(options.cache_dir, case, dataset, fingerprint)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, top5=preds.astype(np.int16), labels=np.asarray(dataset.labels, dtype=np.int16),
             files=np.asarray([s.path.name for s in dataset.samples]))
    return Result(case.entry.family, case.entry.key, case.backend, case.precision, dataset.name,
                  fingerprint, acc.n, acc.correct1, acc.correct5, round(seconds, 3), str(out),
                  str(case.entry.baseline_path), len(excluded))
