"""The pytest plugin: options, collection of suite files, and the hooks that move results.

Hooks stay thin; the work is in `run.evaluate`, `gate.judge`, `baselines.update_file` and
`report`. Results travel from the test to the controller inside the test report
(`user_properties`), so pytest-xdist workers never write baseline files.
"""

from __future__ import annotations

import json
import os
import shlex
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import dataset as dataset_mod
from .backends import RunOptions, get_backend
from .baselines import update_file
from .errors import VaccbenchError
from .gate import expectation_for, judge
from .report import summary_lines
from .run import Case, Result, evaluate
from .suite import load_suite, select_models

PROPERTY = "vaccbench"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vaccbench", "accuracy gates for image classifiers (pytest-vaccbench)")
    group.addoption("--backend", action="append", default=None, metavar="NAME",
                    help="backend(s) to run: reference, onnxruntime, vamp (repeat or comma-separate; "
                         "default: the suite file's `backends`)")
    group.addoption("--precision", action="append", default=None, metavar="P",
                    help="precision(s): fp32 (default), fp16, int8-<calibration> ...")
    group.addoption("--dataset", default=None, metavar="PATH",
                    help="ImageNet images: flat folder + val_label.txt, wnid class folders, or "
                         "<wnid>_<name>.JPEG files (default: the built-in skimage-photos)")
    group.addoption("--dataset-name", default=None, metavar="NAME",
                    help="key of this dataset in the baselines (default: imagenet-val for the full "
                         "50k set, else the folder name)")
    group.addoption("--labels", default=None, metavar="FILE",
                    help="label file `<image> <class index>` for a flat folder")
    group.addoption("--weights-dir", default=None, metavar="DIR",
                    help="folder of weight files named <source>-<name>.pth (default: $VACCBENCH_WEIGHTS "
                         "or ./weights)")
    group.addoption("--limit", type=int, default=None, metavar="N",
                    help="evaluate a deterministic, class-stratified subset of N images")
    group.addoption("--update-baselines", action="store_true", default=False,
                    help="record measured results in the baseline files instead of gating")
    group.addoption("--baselines", default=None, metavar="DIR",
                    help="folder of baseline YAMLs (default: the suite file's `baselines`)")
    group.addoption("--vaccbench-cache", default=None, metavar="DIR",
                    help="cache of exported models, preprocessed images and predictions (default: "
                         "$VACCBENCH_CACHE or ~/.cache/vaccbench)")
    group.addoption("--no-image-cache", action="store_true", default=False,
                    help="decode every image again instead of reusing the preprocessed crops kept "
                         "in <vaccbench-cache>/images")
    group.addoption("--batch-size", type=int, default=None, metavar="N",
                    help="inference batch size (default: the backend's fastest, e.g. 8 for reference)")
    group.addoption("--threads", type=int, default=None, metavar="N",
                    help="inference threads (default: all cores, divided among xdist workers)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vaccbench: an accuracy test generated from a suite file")
    config.pluginmanager.register(VaccbenchSession(config), "vaccbench-session")


def _split(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(v.strip() for item in values for v in item.split(",") if v.strip())


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix in (".yaml", ".yml") and file_path.parent.name == "suites":
        return SuiteFile.from_parent(parent, path=file_path)
    return None


class SuiteFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        session: VaccbenchSession = self.config.pluginmanager.get_plugin("vaccbench-session")
        try:
            suite = load_suite(self.path)
            entries = select_models(suite, session.baselines_dir)
        except VaccbenchError as exc:
            raise self.CollectError(str(exc)) from None
        backends = _split(self.config.getoption("backend")) or suite.backends
        precisions = _split(self.config.getoption("precision")) or suite.precisions
        for entry in entries:
            for backend in backends:
                for precision in precisions:
                    case = Case(entry, backend, precision)
                    item = AccuracyItem.from_parent(self, name=case.id, case=case)
                    for marker in {"vaccbench", entry.family, backend, *entry.sources}:
                        if marker.isidentifier():
                            self.config.addinivalue_line("markers", f"{marker}: pytest-vaccbench")
                            item.add_marker(marker)
                    yield item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        return str(excinfo.value)


def _skip(reason: str) -> None:
    """Skip reported at the test's suite file, not at this line (as pytest's skip marks do)."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


class GateFailure(AssertionError):
    """Measured accuracy outside the baseline's tolerance."""


class AccuracyItem(pytest.Item):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        session: VaccbenchSession = self.config.pluginmanager.get_plugin("vaccbench-session")
        session.run_case(self)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, (GateFailure, VaccbenchError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


@dataclass
class Reported:
    result: Result
    expected: dict[str, Any] | None
    outcome: str


class VaccbenchSession:
    """Per-process state: options, the resolved dataset, and (on the controller) results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.getoption
        self.update = bool(opt("update_baselines"))
        self.baselines_dir = Path(opt("baselines")).resolve() if opt("baselines") else None
        cache = opt("vaccbench_cache") or os.environ.get("VACCBENCH_CACHE") or "~/.cache/vaccbench"
        weights = opt("weights_dir") or os.environ.get("VACCBENCH_WEIGHTS") or "weights"
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        threads = opt("threads") or max(1, (os.cpu_count() or 1) // workers)
        self.options = RunOptions(weights_dir=Path(weights).expanduser().resolve(),
                                  cache_dir=Path(cache).expanduser().resolve(),
                                  batch_size=opt("batch_size"), threads=threads, workers=threads,
                                  image_cache=not opt("no_image_cache"))
        self._dataset: dataset_mod.Dataset | VaccbenchError | None = None
        self.reported: list[Reported] = []
        self.updated: list[str] = []

    # -- running one test ---------------------------------------------------------------
    def dataset(self) -> dataset_mod.Dataset:
        if self._dataset is None:
            opt = self.config.getoption
            try:
                full = dataset_mod.resolve(opt("dataset") or dataset_mod.BUILTIN_SKIMAGE,
                                           opt("labels"), opt("dataset_name"))
                self._dataset = dataset_mod.limit(full, opt("limit"))
            except VaccbenchError as exc:
                self._dataset = exc
        if isinstance(self._dataset, VaccbenchError):
            raise self._dataset
        return self._dataset

    def update_command(self, item: AccuracyItem) -> str:
        opt = self.config.getoption
        args = ["pytest", item.nodeid, f"--backend={item.case.backend}",
                f"--precision={item.case.precision}"]
        for flag, name in (("--dataset", "dataset"), ("--labels", "labels"),
                           ("--dataset-name", "dataset_name"), ("--weights-dir", "weights_dir"),
                           ("--limit", "limit"), ("--baselines", "baselines")):
            if opt(name) is not None:
                args.append(f"{flag}={opt(name)}")
        return shlex.join([*args, "--update-baselines"])

    def run_case(self, item: AccuracyItem) -> None:
        case = item.case
        backend = get_backend(case.backend)
        if case.precision not in backend.precisions:
            _skip(f"backend {case.backend} has no precision {case.precision} "
                        f"(it has {', '.join(backend.precisions)})")
        reason = backend.skip_reason(case.entry, case.precision, self.options)
        if reason:
            _skip(reason)
        data = self.dataset()
        expected = expectation_for(case.entry, data, case.backend, case.precision)
        if expected is None and not self.update:
            _skip(f"no baseline for {case.entry.key} on dataset {data.name!r} with "
                  f"{case.backend}/{case.precision} in {case.entry.baseline_path.name}; "
                  f"record one with: {self.update_command(item)}")
        result = evaluate(case, data, self.options)
        payload = {"result": json.loads(result.to_json()),
                   "expected": None if expected is None else
                   {"top1": expected.top1, "top5": expected.top5, "origin": expected.origin,
                    "tol1": expected.tolerance.top1, "tol5": expected.tolerance.top5}}
        item.user_properties.append((PROPERTY, json.dumps(payload)))
        if self.update or expected is None:
            return
        from .metrics import Accuracy

        verdict = judge(Accuracy(result.n, result.correct1, result.correct5), expected,
                        self.update_command(item))
        if not verdict.passed:
            raise GateFailure(verdict.message)

    # -- controller side: collect results from reports, write baselines, print ---------
    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == PROPERTY:
                payload = json.loads(value)
                self.reported.append(Reported(Result(**payload["result"]), payload["expected"],
                                              report.outcome))

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.update or hasattr(self.config, "workerinput"):
            return
        by_file: dict[str, list[tuple[str, str, str, dict[str, Any]]]] = defaultdict(list)
        for rep in self.reported:
            if rep.outcome == "passed":  # errored or failed runs never touch a baseline
                r = rep.result
                by_file[r.baseline].append((r.model, r.dataset, f"{r.backend}/{r.precision}",
                                            r.baseline_values()))
        self.updated = [f"{Path(path).name}: {line}" for path, rows in sorted(by_file.items())
                        for line in update_file(Path(path), rows)]

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.reported:
            return
        terminalreporter.section("vaccbench accuracy")
        for line in summary_lines(self.reported):
            terminalreporter.write_line(line)
        for line in self.updated:
            terminalreporter.write_line(f"updated {line}")
