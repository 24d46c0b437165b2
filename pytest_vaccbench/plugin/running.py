"""Running one accuracy test: skip reasons, the dataset, evaluate, judge, and what a failing
or refused test says (the gate's message, a layer triage, the command that records it).

`CaseRunner` is the per-process state (options, the resolved dataset) and the hooks around
a test's call (progress on the terminal, strict mode); the steps are plain functions.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from .. import dataset as dataset_mod
from .. import progress, sequential, triage
from ..backends import RunOptions, get_backend
from ..cache import cache_dir
from ..errors import VaccbenchError
from ..gate import Expectation, Verdict, expectation_for, run_key
from ..preprocess import PreprocessSpec
from ..report import PROPERTY, STRICT
from ..resultfiles import results_folder, score_case
from ..run import Case, Result, evaluate, judged, no_baseline
from ..store import PredictionsStore
from ..updates import Recording, covers, refusal
from ..vdsp import preprocess_option
from .collect import AccuracyItem, GateFailure
from .options import Getter, device_pool, run_options, update_command, weak_limit


def report_reason(report: pytest.TestReport) -> str:
    """A report's text; for a skip, its reason alone."""
    if report.skipped and isinstance(report.longrepr, (tuple, list)) and len(report.longrepr) == 3:
        return str(report.longrepr[2]).removeprefix("Skipped: ")  # (file, line, reason)
    return re.sub(r"^\[gw\d+\] .*\n", "", report.longreprtext)  # xdist's worker line


def make_strict(report: pytest.TestReport) -> None:
    """Strict mode: a skip (not an xfail) becomes a failure with the same reason."""
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report_reason(report)
        report.outcome = "failed"
        report.longrepr = f"{STRICT} (--vaccbench-strict): {reason}"


def _skip(reason: str) -> None:
    """Skip reported at the model's baseline entry, not at this line (as pytest's skip marks do)."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


def backend_skip_reason(case: Case, options: RunOptions) -> str | None:
    """Why the case's backend cannot run it here (no such precision, no weights, no binary)."""
    backend = get_backend(case.backend)
    if case.precision not in backend.precisions:
        return (f"backend {case.backend} has no precision {case.precision} "
                f"(it has {', '.join(backend.precisions)})")
    return backend.skip_reason(case.entry, case.precision, options)


def payload_of(result: Any, expected: Expectation | None, verdict: Verdict) -> dict[str, Any]:
    """What a test sends to the controller in its report (report.PROPERTY)."""
    return {"result": json.loads(result.to_json()),
            "expected": None if expected is None else
            {"top1": expected.top1, "top5": expected.top5, "origin": expected.origin,
             "tol1": expected.tolerance.top1, "tol5": expected.tolerance.top5,
             "run": expected.run},
            "gate": {**verdict.details, "message": verdict.message}}


def triage_note(case: Case, kind: str, result: Any, paired: Any, opt: Getter, options: RunOptions,
                dataset: Callable[[], dataset_mod.Dataset]) -> str:
    """For a failing int8 test: its layers ranked (onnxruntime), or the command that ranks
    them on the CPU emulation (vamp, vsx: the accelerator's layer outputs are not available)."""
    if kind not in ("regression", "broken") or not case.precision.startswith("int8") or opt("no_triage"):
        return ""
    if case.backend in ("vamp", "vsx"):
        return "\n" + triage.cpu_command(case.entry, case.precision, opt("dataset") or
                                          dataset_mod.BUILTIN_SKIMAGE, {
            "--labels": opt("labels"), "--limit": opt("limit"), "--baselines": opt("baselines"),
            "--weights-dir": str(options.weights_dir),
            "--calib-images": options.extra.get("calib_images")})
    if case.backend != "onnxruntime":
        return ""
    if paired is None or paired.agreement is None:
        return f"\nlayer triage skipped: {paired.note if paired else 'no fp32 run to compare with'}"
    try:
        found = triage.triage_case(case.entry, case.precision, dataset(), options,
                                   Path(result.predictions), Path(paired.note), opt("triage_budget"))
    except Exception as exc:  # noqa: BLE001 - the gate's verdict stands whatever triage meets
        return f"\nlayer triage failed: {type(exc).__name__}: {exc}"
    return "\n" + found.message()


class CaseRunner:
    """Per-process state of the tests: options, the devices held, the resolved dataset."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.getoption
        self.update = bool(opt("update_baselines"))
        self.confidence = float(opt("confidence"))
        self.weak_limit = weak_limit(opt)
        self.baselines_dir = Path(opt("baselines")).resolve() if opt("baselines") else None
        self.results = Path(opt("results")).resolve() if opt("results") else None
        cache = cache_dir(opt("vaccbench_cache"))
        self.devices = device_pool(config, cache)
        self.options = run_options(opt, cache, self.devices.device if self.devices else None)
        self.store = PredictionsStore(Path(opt("vaccbench_store"))) if opt("vaccbench_store") else None
        self.sequential = bool(opt("vaccbench_sequential")) and not self.update
        self._override: tuple[str, PreprocessSpec] | None = None
        self._dataset: dataset_mod.Dataset | VaccbenchError | None = None
        self.is_worker = hasattr(config, "workerinput")
        self._stdout = sys.stdout  # the terminal, captured output aside (capture is off now)

    def preprocess_override(self) -> tuple[str, PreprocessSpec] | None:
        """--preprocess=vdsp:FILE as (variant name, spec), or None."""
        value = self.config.getoption("preprocess")
        if value and self._override is None:
            self._override = preprocess_option(value)
        return self._override

    def dataset(self) -> dataset_mod.Dataset:
        """The session's images, resolved once (an error is kept and raised in every test)."""
        if self.results is not None:
            raise VaccbenchError("--results: each test's images are those of its result files")
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
        return update_command(item.nodeid, item.case.backend, item.case.precision,
                              self.config.getoption, lambda: self.dataset().name)

    def run_case(self, item: AccuracyItem) -> None:
        if self.devices and self.devices.problem:
            raise VaccbenchError(self.devices.problem)
        case, opt = item.case, self.config.getoption
        decision = None
        if self.results is not None:
            data, result, notes = self.scored(item)
            pairing = self.pairing(case, data, scored=True)
        else:
            reason = backend_skip_reason(case, self.options)
            if reason:
                _skip(reason)
            data = self.dataset()
            expected = expectation_for(case.entry, data, case.backend, case.run_precision)
            if expected is None and not self.update:
                _skip(no_baseline(case, data.name, self.update_command(item)))
            pairing, notes = self.pairing(case, data), ""
            if self.sequential and pairing is not None:
                result, decision = sequential.evaluate(case, data, self.options, pairing, expected,
                                                       self.confidence, opt("allow_improvement"))
            else:
                result = evaluate(case, data, self.options)
        entry_now = (case.entry.expected.get(data.name) or {}).get(  # what a record replaces
            run_key(case.backend, case.run_precision))
        if result.n == len(data.samples):  # the dataset's images: the entry's may be among them
            result.covers = covers(entry_now, data, result.fingerprint)
        done = judged(case, data, result, self.options.cache_dir, self.update_command(item),
                      update=self.update, confidence=self.confidence,
                      allow_improvement=opt("allow_improvement"), weak_limit=self.weak_limit)
        verdict = done.verdict
        if decision is not None:
            verdict = sequential.judge_run(decision, done, case, data, result,
                                           self.update_command(item), self.confidence,
                                           self.weak_limit)
        if pairing is not None:
            verdict = sequential.with_stored(verdict, pairing, result, self.confidence)
        item.user_properties.append((PROPERTY, json.dumps(payload_of(result, done.expected, verdict))))
        headline, _, rest = verdict.message.partition("\n")  # the files read, under the headline
        message = "\n".join(filter(None, [headline, notes, rest]))
        if self.update:
            why = refusal(Recording(item.nodeid, "passed", result, verdict.kind),
                          opt("accept_broken"), entry_now, opt("accept_other_images"))
            if why:
                raise GateFailure(f"not recorded: {message}\n--update-baselines refuses this "
                                  f"result: {why}")
            return
        if not verdict.passed:
            triage = "" if self.results else triage_note(case, verdict.kind, result, done.paired,
                                                         opt, self.options, self.dataset)
            raise GateFailure(message + triage)
        weak = verdict.details.get("weak")
        if weak and item.strict:
            raise GateFailure(f"{STRICT} (--vaccbench-strict): weak gate: {weak}\n{message}")
        if message:  # shown for passed tests with -rP
            item.add_report_section("call", "vaccbench gate", message)

    def pairing(self, case: Case, data: dataset_mod.Dataset,
                scored: bool = False) -> sequential.Pairing | None:
        """The stored predictions the run is paired with (--vaccbench-store), or None when
        there is no store or the run is recorded."""
        if self.store is None or self.update:
            return None
        return sequential.pairing_for(case, data, self.options, self.store, scored)

    def scored(self, item: AccuracyItem) -> tuple[dataset_mod.Dataset, Result, str]:
        """--results: the test's result files, read as its run (skipped when there are none,
        or when its run has no baseline), and what a person should read about them."""
        case, opt = item.case, self.config.getoption
        assert self.results is not None
        folder = results_folder(self.results, case)
        if not folder.exists():
            _skip(f"no result files for {case.entry.test_name} {case.backend}/{case.run_precision}: "
                  f"{folder} does not exist")
        data, result, scored = score_case(case, [folder], opt("labels"), opt("results_subset"),
                                          opt("dataset_name"), self.options.cache_dir)
        if expectation_for(case.entry, data, case.backend, case.run_precision) is None \
                and not self.update:
            _skip(no_baseline(case, data.name, self.update_command(item), result))
        return data, result, "\n".join(scored.lines())

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

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Any:
        report = yield
        if getattr(item, "strict", False):
            make_strict(report)
        return report

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.devices:
            self.devices.release()
