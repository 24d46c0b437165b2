"""The pytest plugin: options, collection of suite files, and the hooks that move results.

Hooks stay thin; the work is in `run.evaluate`, `gate.judge`, `baselines.update_file` and
`report`. Results travel from the test to the controller inside the test report
(`user_properties`), so pytest-xdist workers never write baseline files.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shlex
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import dataset as dataset_mod
from . import history, progress
from .backends import RunOptions, get_backend
from .baselines import update_file
from .errors import VaccbenchError
from .gate import expectation_for, judge
from .report import (PROPERTY, Results, Row, find_payload, html_report, junit_properties,
                     session_info, summary_lines, write_json)
from .run import Case, evaluate
from .suite import load_suite, select_models


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
    group.addoption("--allow-improvement", action="store_true", default=False,
                    help="pass results better than the baseline beyond tolerance (by default "
                         "they fail: the baseline is stale)")
    group.addoption("--vaccbench-json", default=None, metavar="PATH",
                    help="write results as JSON, per-image predictions in PATH's stem + .predictions/")
    group.addoption("--vaccbench-html", default=None, metavar="PATH",
                    help="write a self-contained HTML report: table and top1-delta plot")
    group.addoption("--vaccbench-history", default=None, metavar="PATH",
                    help="append this session's results to a SQLite history (see `vaccbench trend`)")
    group.addoption("--baselines", default=None, metavar="DIR",
                    help="folder of baseline YAMLs (default: the suite file's `baselines`)")
    group.addoption("--vaccbench-cache", default=None, metavar="DIR",
                    help="cache of exported models and predictions (default: $VACCBENCH_CACHE or "
                         "~/.cache/vaccbench)")
    group.addoption("--batch-size", type=int, default=32, metavar="N", help="inference batch size")
    group.addoption("--threads", type=int, default=None, metavar="N",
                    help="inference threads (default: all cores, divided among xdist workers)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vaccbench: an accuracy test generated from a suite file")
    for name in ("vaccbench_json", "vaccbench_html", "vaccbench_history"):
        value = config.getoption(name)
        if value and not Path(value).expanduser().resolve().parent.is_dir():
            raise pytest.UsageError(f"--{name.replace('_', '-')}={value}: folder "
                                    f"{Path(value).expanduser().resolve().parent} does not exist")
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
        return self.path, 0, self.name  # a line, so that skips can be reported at the item


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
                                  batch_size=opt("batch_size"), threads=threads, workers=threads)
        self._dataset: dataset_mod.Dataset | VaccbenchError | None = None
        self.is_worker = hasattr(config, "workerinput")
        self.started = _dt.datetime.now()
        self.results = Results()
        self.messages: list[str] = []  # what the session wrote, or failed to write
        self._stdout = sys.stdout  # the terminal, captured output aside (capture is off now)

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
                        self.update_command(item), self.config.getoption("allow_improvement"))
        if not verdict.passed:
            raise GateFailure(verdict.message)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        """Show inference progress on the terminal (not when output is piped, nor on xdist workers)."""
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if not (isinstance(item, AccuracyItem) and terminal and not self.is_worker
                and self._stdout.isatty()):
            return (yield)
        tw = self.config.get_terminal_writer()
        width = tw.fullwidth - tw.width_of_current_line - 2
        capture = self.config.pluginmanager.get_plugin("capturemanager")

        def write(text: str) -> None:
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                self._stdout.write(text)
                self._stdout.flush()

        with progress.shown_on(write, width):
            return (yield)

    # -- controller side: collect results from reports, write baselines and reports -------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.results.add(report.nodeid, report.when, report.outcome, report.keywords,
                         report.user_properties, report.longreprtext)
        if report.when == "teardown" and not self.is_worker:  # JUnit XML reads teardown reports
            payload = find_payload(report.user_properties)
            if payload is not None:
                report.user_properties.extend(junit_properties(payload))

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            return
        if self.update:
            if exitstatus == pytest.ExitCode.INTERRUPTED:
                self.messages.append("interrupted: no baseline file was changed")
            elif not self.update_baselines():
                session.exitstatus = session.exitstatus or pytest.ExitCode.TESTS_FAILED
        info = session_info(self.config.invocation_params.args, exitstatus, self.started)
        rows = list(self.results)
        opt = self.config.getoption
        writers = (("vaccbench_json", lambda p: write_json(rows, p, info), "JSON report"),
                   ("vaccbench_html", lambda p: p.write_text(html_report(rows, info)),
                    "HTML report"),
                   ("vaccbench_history", lambda p: history.append_run(p, rows, info), "history"))
        for name, write, what in writers:
            if opt(name):
                path = Path(opt(name)).expanduser()
                try:
                    write(path)
                    self.messages.append(f"{what}: {path}")
                except (OSError, VaccbenchError) as exc:
                    self.messages.append(f"ERROR writing {what} {path}: {exc}")
                    session.exitstatus = session.exitstatus or pytest.ExitCode.TESTS_FAILED

    def update_baselines(self) -> bool:
        """One write per baseline file, of the tests that passed with a result; False when a
        file could not be written (it is then left as it was)."""
        by_file: dict[str, list[tuple[str, str, str, dict[str, Any]]]] = defaultdict(list)
        rows: dict[tuple[str, str, str, str], Row] = {}
        for row in self.results:
            r = row.result
            if r is not None and row.outcome == "passed":  # errors and failures never write
                run = f"{r.backend}/{r.precision}"
                by_file[r.baseline].append((r.model, r.dataset, run, r.baseline_values()))
                rows[(r.baseline, r.model, r.dataset, run)] = row
        for path, entries in sorted(by_file.items()):
            try:
                written = update_file(Path(path), entries)
            except (OSError, VaccbenchError) as exc:
                self.messages.append(f"ERROR: {exc} (this file was left as it was)")
                continue
            for key, data, run, _ in entries:
                rows[(path, key, data, run)].updated = True
            self.messages.extend(f"updated {Path(path).name}: {line}" for line in written)
        return all(row.updated for row in rows.values())

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not len(self.results) and not self.messages:
            return
        datasets = sorted({row.result.dataset for row in self.results if row.result})
        terminalreporter.section(f"vaccbench accuracy on {', '.join(datasets) or '-'}")
        for line in summary_lines(self.results):
            terminalreporter.write_line(line)
        for line in self.messages:
            terminalreporter.write_line(line, red=line.startswith("ERROR"))

