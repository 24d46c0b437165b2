"""One accuracy case end to end: backend scores -> predictions -> metrics, kept on disk.

Plain functions, no pytest: the plugin calls `evaluate`, and so can any script.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import platform
import time
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, progress
from .backends import Backend, RunOptions, get_backend
from .baselines import ModelEntry
from .cache import kind_dir
from .dataset import Dataset
from .errors import BackendError, VaccbenchError
from .image_cache import image_digests
from .gate import (WEAK_LIMIT, Expectation, Images, Paired, Verdict, WeakLimit, expectation_for,
                   judge, needs_paired, recording_target)
from .metrics import Accuracy, accuracy, agreement, topk
from .safefiles import inside, safe_name, write_atomic


@dataclass(frozen=True)
class Case:
    entry: ModelEntry
    backend: str
    precision: str
    variant: str | None = None  # e.g. vdsp-<name>: --preprocess replaced the model's own

    @property
    def run_precision(self) -> str:
        """The precision as results record it: `fp32`, or `fp32+vdsp-<name>` for a variant."""
        return f"{self.precision}+{self.variant}" if self.variant else self.precision

    @property
    def id(self) -> str:
        return f"{self.entry.test_name}[{self.backend}-{self.run_precision}]"


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
    # Provenance, taken where the test ran (an xdist worker may be another machine).
    date: str = ""
    versions: str = ""
    machine: str = ""  # CPU model
    options: dict[str, Any] = field(default_factory=dict)  # backend options that shape the numbers
    excluded: int = 0  # images left out of the count (int8 calibration images)
    device: int | None = None  # the accelerator it ran on (--devices), else None
    # baseline image sets (fingerprint -> n) these images include: a --limit draw of them
    # (updates.covers); recording over such an entry adds images, it does not change them
    covers: dict[str, int] = field(default_factory=dict)
    # scored from result files made elsewhere (resultfiles.py): each file's sha256, the run
    # they were claimed to be, the zoo scorer's number; None for a run of a backend
    scored_from: dict[str, Any] | None = None

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
                "fingerprint": self.fingerprint, "date": self.date, "versions": self.versions,
                "machine": self.machine, "options": dict(self.options),
                **({"calibration_excluded": self.excluded} if self.excluded else {})}


def library_versions(backend: Backend, options: RunOptions) -> str:
    """This package's version and those of the libraries or tools the backend ran."""
    return ", ".join([f"pytest-vaccbench {__version__}", *backend.versions(options)])


def run_options(entry: ModelEntry, options: RunOptions, backend: Backend) -> dict[str, Any]:
    """The options that can change a backend's numbers: batch size, threads, and the extras
    the backend names in `option_keys` (those that were set)."""
    extra = {k: v if isinstance(v, (bool, int, float)) else str(v)
             for k, v in sorted(options.extra.items())
             if k in backend.option_keys and v is not None}
    return {"batch_size": backend.batch_size(entry, options), "threads": options.threads, **extra}


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


def _model_dir(cache_dir: Path, family: str, key: str) -> Path:
    """Names from a baseline file become safe file names: `../x` or `/etc` stay in the cache."""
    root = kind_dir(cache_dir, "predictions")
    return inside(root, root / safe_name(family) / safe_name(key))


def _predictions_file(cache_dir: Path, family: str, key: str, backend: str, precision: str,
                      dataset_name: str, fingerprint: str) -> Path:
    folder = _model_dir(cache_dir, family, key)
    return inside(folder, folder / safe_name(f"{backend}-{precision}") /
                  f"{safe_name(dataset_name)}-{safe_name(fingerprint)}.npz")


def predictions_path(cache_dir: Path, case: Case, dataset: Dataset, fingerprint: str) -> Path:
    e = case.entry
    return _predictions_file(cache_dir, e.family, e.key, case.backend, case.run_precision,
                             dataset.name, fingerprint)


STALE = "stale"  # _fp32_rows: the fp32 run is of another network (weights or graph changed since)


def _fp32_rows(path: Path, run: Any, same_network: bool = True) -> np.ndarray | str | None:
    """Rows (top-1, label) of the fp32 predictions at `path` for the run's images, in the
    run's order; None when that run did not see all of them, STALE when it ran another
    network. Images are matched by file name and content digest, so a run that left images
    out (int8 calibration images) pairs with the fp32 run of the whole set, and never with a
    run on other images of the same names; results scored from files made elsewhere know
    their images by name only (no `digests`), and are matched by name. With `same_network`
    (the fp32 run of the same entry) both runs must record the same source (run.evaluate:
    the weights' or graph's digest), unless the run's is unknown: an fp32 run of older
    weights is not its twin."""
    with np.load(path, allow_pickle=False) as ref:
        if "source" not in ref.files or "source" not in run.files:
            return None  # written by an older version: its images cannot be told apart
        source = str(run["source"])
        if same_network and source and str(ref["source"]) != source:
            return STALE
        by_content = "digests" in ref.files and "digests" in run.files
        ref_images, run_images = ([list(zip(side["files"].tolist(), side["digests"].tolist()))
                                   for side in (ref, run)] if by_content else
                                  [side["files"].tolist() for side in (ref, run)])
        if ref_images == run_images:
            rows = np.arange(len(ref_images))
        else:
            index = {image: i for i, image in enumerate(ref_images)}
            if not all(image in index for image in run_images):
                return None
            rows = np.array([index[image] for image in run_images], dtype=np.int64)
        return np.stack([ref["top5"][rows, 0], ref["labels"][rows]])


def paired_with_fp32(result: Result, case: Case, cache_dir: Path) -> Paired:
    """Compare a run image by image with the saved fp32 run of the same network, same images.

    The same network is the entry's `float_model` when it names one (a model stored in int8),
    else the entry itself. The fp32 run preferred is the same backend's (only the precision
    differs), then reference/fp32 (the model's own code), then any other backend's; of its
    saved runs on this dataset, the one with this fingerprint, else one that covers these
    images. Nothing is re-run: without such saved fp32 predictions, the note says so.
    """
    e = case.entry
    key = e.float_model or e.key
    root = _model_dir(cache_dir, e.family, key)
    backends = [case.backend, "reference", *sorted(p.name[:-len("-fp32")] for p in root.glob("*-fp32"))]
    stale: list[Path] = []
    for backend in dict.fromkeys(backends):
        if key == e.key and (backend, "fp32") == (case.backend, case.run_precision):
            continue
        exact = _predictions_file(cache_dir, e.family, key, backend, "fp32", result.dataset,
                                  result.fingerprint)
        others = sorted(exact.parent.glob(f"{glob.escape(safe_name(result.dataset))}-*.npz"),
                        key=lambda p: -p.stat().st_mtime)
        for path in dict.fromkeys([exact, *others]):
            if not path.is_file():
                continue
            try:
                with np.load(result.predictions, allow_pickle=False) as run:
                    ref = _fp32_rows(path, run, same_network=key == e.key)
                    if isinstance(ref, str):
                        stale.append(path)
                        continue
                    if ref is None:
                        continue
                    if not np.array_equal(ref[1], run["labels"]):
                        return Paired(None, note=f"the fp32 predictions {path} have other labels "
                                                 "than this run: not compared")
                    compared = agreement(run["top5"][:, 0], ref[0], run["labels"])
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # being written, or damaged
                return Paired(None, note=f"cannot read the fp32 predictions {path} ({exc}): not compared")
            name = f"{backend}/fp32" + ("" if key == e.key else f" of {key}")
            return Paired(compared, name, str(path))
    if stale:
        return Paired(None, note=f"the fp32 predictions {stale[0]} are of other weights or another "
                                 "graph than this run's (changed since): paired comparison "
                                 "skipped; run the same images with --precision=fp32 again")
    return Paired(None, note=f"no fp32 predictions of {e.family}/{key} on {result.dataset} "
                             f"(fingerprint {result.fingerprint}, n={result.n}) in {root}: paired "
                             "comparison skipped; run the same images with --precision=fp32 first")


def backend_skip_reason(case: Case, options: RunOptions) -> str | None:
    """Why the case's backend cannot run it here (no such precision, no weights, no binary)."""
    backend = get_backend(case.backend)
    if case.precision not in backend.precisions:
        return (f"backend {case.backend} has no precision {case.precision} "
                f"(it has {', '.join(backend.precisions)})")
    return backend.skip_reason(case.entry, case.precision, options)


def check_finite(scores: np.ndarray, dataset: Dataset, what: str) -> None:
    """NaN or infinite scores are a broken model or runtime, never a result (argmax of NaN
    is class 0, which would be counted as a wrong answer and pass as an accuracy)."""
    bad = ~np.isfinite(np.asarray(scores, dtype=np.float64)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        names = ", ".join(dataset.samples[i].path.name for i in rows[:5])
        raise BackendError(f"{what}: the backend returned NaN or infinite scores for "
                           f"{len(rows)} of {len(dataset.samples)} images ({names}"
                           f"{', ...' if len(rows) > 5 else ''}); check the model's outputs "
                           "(an exported graph, a quantization or the runtime is broken)")


def kept_predictions(case: Case, dataset: Dataset, preds: np.ndarray, cache_dir: Path,
                     digests: np.ndarray | None = None, source: str = "") -> tuple[Accuracy, str, Path]:
    """Count (N, 5) predictions in dataset order and keep them in the cache, where paired
    comparisons and reports find them: the counts, the dataset fingerprint, the file. What
    the numbers derive from is kept beside them, for the pairing of runs (_fp32_rows): each
    image's content digest (`digests`, uint64; None: the images are known by name only, as
    those of result files scored here) and the digest of the weights or graph (`source`)."""
    acc = accuracy(preds, dataset.labels)
    fingerprint = dataset.fingerprint()
    out = predictions_path(cache_dir, case, dataset, fingerprint)
    arrays = {"top5": preds.astype(np.int16), "labels": np.asarray(dataset.labels, dtype=np.int16),
              "files": np.asarray([s.path.name for s in dataset.samples]), "source": np.asarray(source),
              **({} if digests is None else {"digests": np.asarray(digests, dtype=np.uint64)})}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, lambda handle: np.savez(handle, **arrays))
    except OSError as exc:
        raise VaccbenchError(f"cannot write the predictions ({exc.strerror}); free space there or "
                             "choose another folder with --vaccbench-cache DIR", out) from None
    return acc, fingerprint, out


@dataclass(frozen=True)
class Judged:
    """A measured result held to its baseline: what the reports show and the test decides by."""

    expected: Expectation | None  # the run's own baseline (None: none recorded yet)
    paired: Paired | None  # the comparison with fp32 (None: the run needs none)
    verdict: Verdict


def judged(case: Case, dataset: Dataset, result: Result, cache_dir: Path, update_command: str, *,
           update: bool = False, confidence: float = 0.95, allow_improvement: bool = False,
           weak_limit: WeakLimit | None = WEAK_LIMIT) -> Judged:
    """The gate's verdict on a result, as a test gives it: against the run's baseline, or,
    when recording (`update`), against what refuses a broken build only (regressions are what
    updates record; a weak gate is a gating matter, not asked). A run of a backend and result
    files scored elsewhere both come here."""
    expected = expectation_for(case.entry, dataset, case.backend, case.run_precision)
    paired = (paired_with_fp32(result, case, cache_dir)
              if needs_paired(case.backend, case.run_precision) else None)
    measured = Accuracy(result.n, result.correct1, result.correct5)
    target = (recording_target(case.entry, dataset, case.backend, case.run_precision, measured,
                               paired) if update else expected)
    verdict = judge(measured, target, Images(dataset.name, result.n, dataset.total,
                                             result.fingerprint),
                    update_command, paired=paired, build=f"{case.backend}/{case.run_precision}",
                    confidence=confidence, allow_improvement=allow_improvement,
                    weak_limit=None if update else weak_limit)
    return Judged(expected, paired, verdict)


def no_baseline(case: Case, dataset: str, command: str, result: Result | None = None) -> str:
    """Why a test is skipped when its run has no baseline, and the command that records one
    (with what it measured, when it measured before knowing)."""
    measured = (f"; measured top1 {result.top1:.3f} top5 {result.top5:.3f} (n={result.n})"
                if result is not None else "")
    return (f"no baseline for {case.entry.key} on dataset {dataset!r} with {case.backend}/"
            f"{case.run_precision} in {case.entry.baseline_path.name}{measured}; record one with: "
            f"{command}")


def evaluate(case: Case, dataset: Dataset, options: RunOptions) -> Result:
    """Run the case on every image; count all but those the backend built its model from."""
    backend = get_backend(case.backend)
    excluded = set(backend.excluded_samples(case.entry, case.precision, dataset, options))
    start = time.perf_counter()
    with progress.task(len(dataset.samples), case.id):
        scores = backend.scores(case.entry, case.precision, dataset, options)
    seconds = time.perf_counter() - start
    rows = scores.shape[0] if getattr(scores, "ndim", 0) == 2 else None
    if rows != len(dataset.samples):
        got = f"{rows} score rows" if rows is not None else \
            f"scores of shape {getattr(scores, 'shape', type(scores).__name__)}"
        raise BackendError(f"{case.id}: the {case.backend} backend returned {got} for "
                           f"{len(dataset.samples)} images; every image needs one row of class "
                           "scores, in dataset order (a bug in that backend, or outputs lost)")
    check_finite(scores, dataset, case.id)
    if excluded:
        keep = [i for i, s in enumerate(dataset.samples) if s not in excluded]
        scores = scores[keep]
        dataset = replace(dataset, samples=tuple(dataset.samples[i] for i in keep))
    return keep_result(case, dataset, topk(scores, 5), seconds, options, backend, len(excluded))


def keep_result(case: Case, dataset: Dataset, preds: np.ndarray, seconds: float,
                options: RunOptions, backend: Backend, excluded: int) -> Result:
    """The result of `preds`, the (N, 5) top-5 of `dataset`'s samples (the images counted):
    its counts and provenance, with the predictions kept in the cache (`kept_predictions`)
    beside the content digests of its images and of its weights or graph."""
    acc, fingerprint, out = kept_predictions(
        case, dataset, preds, options.cache_dir, image_digests(dataset.samples),
        backend.source(case.entry, case.precision, options))
    return Result(case.entry.family, case.entry.key, case.backend, case.run_precision, dataset.name,
                  fingerprint, acc.n, acc.correct1, acc.correct5, round(seconds, 3), str(out),
                  str(case.entry.baseline_path), date=_dt.date.today().isoformat(),
                  versions=library_versions(backend, options), machine=machine(),
                  options={**run_options(case.entry, options, backend),
                           **backend.provenance(case.entry, case.precision, options)},
                  excluded=excluded, device=options.extra.get("device"))
