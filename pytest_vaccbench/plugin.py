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
import re
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import dataset as dataset_mod
from . import history, ini, progress, triage
from .backends import Backend, RunOptions, get_backend
from .baselines import ModelEntry
from .cache import cache_dir
from .devices import DevicePool, check_workers
from .errors import VaccbenchError
from .gate import Images, expectation_for, judge, needs_paired, recording_target
from .metrics import Accuracy
from .layers import parse_keep
from .options import check_options, parse_devices, split_names
from .preprocess import PreprocessSpec
from .report import (PROPERTY, STRICT, Results, find_payload, junit_properties, not_measured_line,
                     session_info, skip_groups, summary_lines, write_html, write_json)
from .run import Case, evaluate, paired_with_fp32
from .shard_record import ShardRecorder
from .suite import is_suite_file, load_suite, select_models
from .updates import Recording, apply_updates, recording_of, refusal
from .vdsp import preprocess_option


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
                    help="cache of exported models, preprocessed images and predictions (default: "
                         "$VACCBENCH_CACHE, else $XDG_CACHE_HOME/vaccbench, else ~/.cache/vaccbench)")
    group.addoption("--no-image-cache", action="store_true", default=False,
                    help="decode every image again instead of reusing the preprocessed crops kept "
                         "in <vaccbench-cache>/images")
    group.addoption("--confidence", type=float, default=0.95, metavar="P",
                    help="confidence level of the sampling allowance and agreement intervals "
                         "(default 0.95)")
    group.addoption("--batch-size", type=int, default=None, metavar="N",
                    help="inference batch size (default: the backend's fastest, e.g. 8 for reference)")
    group.addoption("--threads", type=int, default=None, metavar="N",
                    help="inference threads (default: all cores, divided among xdist workers)")
    group.addoption("--preprocess", default=None, metavar="vdsp:JSON",
                    help="CPU backends: replace each model's preprocessing by an emulation of the "
                         "accelerator's vdsp_params JSON; recorded as <precision>+vdsp-<name>")
    group.addoption("--vamp-bin", default=None, metavar="CMD",
                    help="the vamp runner, a path or command line (default: vamp on PATH)")
    group.addoption("--vamp-root", default=None, metavar="DIR",
                    help="compiled models named <name>-<int8-percentile|fp16-none>-3_H_W-vacc/<name>")
    group.addoption("--vamp-timeout", type=float, default=3600.0, metavar="S",
                    help="seconds one vamp run may take before it is killed (default: 3600)")
    group.addoption("--vamp-instances", type=int, default=1, metavar="N", help="vamp -i (default 1)")
    group.addoption("--vamp-processes", type=int, default=1, metavar="N", help="vamp -p (default 1)")
    group.addoption("--vamp-batch", type=int, default=1, metavar="N", help="vamp -b (default 1)")
    group.addoption("--vamp-args", default=None, metavar="ARGS",
                    help="more vamp arguments, e.g. '--hwconfig hw.json'")
    group.addoption("--devices", default=None, metavar="IDS",
                    help="accelerator ids for vamp -d, e.g. 0,1,2,3: each xdist worker (or the one "
                         "pytest process) holds a free one for the session, through a file lock")
    group.addoption("--device-locks", default=None, metavar="DIR",
                    help="folder of the --devices lock files, shared by every session that uses "
                         "the same cards (default: <vaccbench-cache>/device-locks)")
    group.addoption("--ort-provider", default="cpu", metavar="NAME",
                    help="onnxruntime execution provider: cpu (default), cuda, or a full provider name")
    group.addoption("--onnx-dir", default=None, metavar="DIR",
                    help="ready ONNX graphs (<key>.onnx, or the zoo's <arch>_<size>.onnx) for onnxruntime; "
                         "models without one are exported from their weights and cached")
    group.addoption("--opset", type=int, default=11, metavar="N", help="ONNX opset of exports (default 11)")
    group.addoption("--int8-per-tensor", action="store_true", default=False,
                    help="int8: one weight scale per tensor (default: per output channel, as the zoo's builds)")
    group.addoption("--int8-per-channel", action="store_true", default=False,
                    help="deprecated: per-channel weights are the default now")
    group.addoption("--vamc-config", default=None, metavar="FILE",
                    help="int8/fp16: a vamc build config (either layout) whose build the onnxruntime "
                         "emulation mirrors: mode, per-channel, count, float layers, preprocessing")
    group.addoption("--ort-calibrator", action="store_true", default=False,
                    help="int8: onnxruntime's own (slow) calibrators instead of the streaming ones")
    group.addoption("--calib-images", type=int, default=1000, metavar="N",
                    help="int8: calibration images drawn from the dataset, covering its classes "
                         "(default 1000); they are left out of the accuracy count")
    group.addoption("--calib-include", action="store_true", default=False,
                    help="int8: count the calibration images too")
    group.addoption("--vaccbench-strict", action="store_true", default=False,
                    help="a gate for CI: every skip of a selected accuracy test (no weights, no "
                         "compiled model, no vamp binary, no baseline) fails with its reason")
    group.addoption("--accept-broken", action="store_true", default=False,
                    help="--update-baselines: record results the gate classifies as a BROKEN "
                         "BUILD too (refused by default)")
    group.addoption("--dry-run", action="store_true", default=False,
                    help="--update-baselines: print the diff of every baseline file it would "
                         "change, write nothing")
    group.addoption("--int8-keep-fp32", default=None, metavar="LAYERS",
                    help="onnxruntime int8: leave these layers in fp32, e.g. conv0,conv17,matmul0 "
                         "(ordinals as in vamc's skip_conv_layers); recorded as <precision>+keep-...")
    group.addoption("--no-triage", action="store_true", default=False,
                    help="a failing int8 test does not rank its layers (see docs/triage.md)")
    group.addoption("--triage-budget", type=float, default=triage.DEFAULT_BUDGET, metavar="SECONDS",
                    help="time a failing onnxruntime int8 test may spend ranking its layers "
                         f"(default {triage.DEFAULT_BUDGET:.0f})")
    UPDATE_COMMAND_OPTIONS[:] = [o for o in group.options if o.dest not in NOT_IN_UPDATE_COMMAND]
    ini.register(parser, group)  # every option above is also an ini key (see ini.py)


# Options the printed update command leaves out: it sets these itself, or they do not
# change what is measured (reports, gating modes). Every other option given is repeated.
NOT_IN_UPDATE_COMMAND = {"backend", "precision", "update_baselines", "dry_run", "accept_broken",
                         "allow_improvement", "vaccbench_json", "vaccbench_html",
                         "vaccbench_history", "vaccbench_strict", "confidence", "no_triage",
                         "triage_budget"}
UPDATE_COMMAND_OPTIONS: list[Any] = []  # pytest's Argument objects, filled by pytest_addoption


@pytest.hookimpl(tryfirst=True)  # before pytest-split's: ShardRecorder sees the items before the split
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vaccbench: an accuracy test generated from a suite file")
    ini.resolve(config)
    try:
        check_options(vars(config.option))
    except VaccbenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    for name in ("dry_run", "accept_broken"):
        if config.getoption(name) and not config.getoption("update_baselines"):
            raise pytest.UsageError(f"--{name.replace('_', '-')} applies to --update-baselines only")
    _check_int8_options(config)
    keep = config.getoption("int8_keep_fp32")
    if keep:
        try:
            parse_keep(keep)
        except ValueError as exc:
            raise pytest.UsageError(f"--int8-keep-fp32={keep}: {exc}") from None
    if config.getoption("triage_budget") < 0:
        raise pytest.UsageError(f"--triage-budget must be >= 0 seconds, got {config.getoption('triage_budget')}")
    config.pluginmanager.register(VaccbenchSession(config), "vaccbench-session")
    config.pluginmanager.register(ShardRecorder(config), "vaccbench-shards")


def _check_int8_options(config: pytest.Config) -> None:
    """--int8-per-channel is the default now (deprecated); --vamc-config must be readable."""
    if config.getoption("int8_per_channel"):
        if config.getoption("int8_per_tensor"):
            raise pytest.UsageError("--int8-per-channel and --int8-per-tensor contradict each other "
                                    "(per-channel is the default: drop --int8-per-channel)")
        config.issue_config_time_warning(pytest.PytestDeprecationWarning(
            "--int8-per-channel is deprecated: per-channel weights are the default (--int8-per-tensor switches)"), 2)
    if config.getoption("vamc_config"):
        from .build_config import read_build_config

        try:
            read_build_config(Path(config.getoption("vamc_config")).expanduser())
        except VaccbenchError as exc:
            raise pytest.UsageError(f"--vamc-config: {exc}") from None


def _device_pool(config: pytest.Config, cache: Path) -> DevicePool | None:
    """--devices: the process that runs tests holds a free device for the session (an xdist
    controller runs none and holds none); more workers than devices is a usage error. An
    xdist worker that finds no free device fails its tests with the reason (a usage error
    there would reach the terminal as xdist's traceback of a worker that did not start)."""
    value = config.getoption("devices")
    if not value:
        return None
    in_controller = not hasattr(config, "workerinput") and config.getoption("numprocesses", None)
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT") or config.getoption("numprocesses", None)
    locks = config.getoption("device_locks")
    try:
        pool = DevicePool(parse_devices(value),
                          Path(locks).expanduser().resolve() if locks else cache / "device-locks")
        check_workers(pool.ids, int(workers or 1))
    except VaccbenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    if not in_controller:
        try:
            pool.acquire()
        except VaccbenchError as exc:
            if not hasattr(config, "workerinput"):
                raise pytest.UsageError(str(exc)) from None
            pool.problem = str(exc)
    return pool


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if is_suite_file(file_path):
        return SuiteFile.from_parent(parent, path=file_path)
    return None


class SuiteFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        session: VaccbenchSession = self.config.pluginmanager.get_plugin("vaccbench-session")
        try:
            suite = load_suite(self.path)
            entries = select_models(suite, session.baselines_dir)
            override = session.preprocess_override()
            keep = self.config.getoption("int8_keep_fp32")
        except VaccbenchError as exc:
            raise self.CollectError(str(exc)) from None
        strict = bool(self.config.getoption("vaccbench_strict") or suite.strict)
        backends = split_names(self.config.getoption("backend")) or suite.backends
        requested = split_names(self.config.getoption("precision")) or None
        for entry in entries:
            for backend in backends:
                for precision in self._precisions(entry, backend, requested) or suite.precisions:
                    case = _case(entry, backend, precision, override, keep)
                    item = AccuracyItem.from_parent(self, name=case.id, case=case, strict=strict)
                    size = case.entry.preprocess.output_size
                    if case.variant and size != entry.input_size:
                        item.add_marker(pytest.mark.skip(reason=f"--preprocess gives {size}x{size} "
                                                         f"images; {entry.key} takes {entry.input_size}"))
                    for marker in {"vaccbench", entry.family, backend, *entry.sources}:
                        if marker.isidentifier():
                            self.config.addinivalue_line("markers", f"{marker}: pytest-vaccbench")
                            item.add_marker(marker)
                    yield item

    def _precisions(self, entry: ModelEntry, backend: str,
                    requested: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """--precision, or what the backend finds for this model (vamp: its compiled models)."""
        impl = _backend_or_none(backend)
        session: VaccbenchSession = self.config.pluginmanager.get_plugin("vaccbench-session")
        try:
            return impl.precisions_for(entry, requested, session.options) if impl else requested
        except VaccbenchError as exc:
            raise self.CollectError(str(exc)) from None

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        return str(excinfo.value)


def _case(entry: ModelEntry, backend: str, precision: str,
          override: tuple[str, PreprocessSpec] | None, keep: str | None = None) -> Case:
    """--preprocess replaces the preprocessing of the backends that preprocess on the CPU;
    --int8-keep-fp32 makes onnxruntime int8 runs a variant of their own."""
    impl = _backend_or_none(backend)
    kept = (triage.keep_variant(keep) if keep and backend == "onnxruntime"
            and precision.startswith("int8") else None)
    if override is None or (impl is not None and impl.preprocesses_on_device):
        return Case(entry, backend, precision, kept)
    variant = "+".join(filter(None, [override[0], kept]))
    return Case(replace(entry, preprocess=override[1]), backend, precision, variant)


def _backend_or_none(name: str) -> Backend | None:
    """The backend, or None for an unknown name (its tests then fail with the known names)."""
    try:
        return get_backend(name)
    except VaccbenchError:
        return None


NOTHING_MEASURED = pytest.ExitCode.NO_TESTS_COLLECTED  # exit 5: accuracy tests selected, none measured


def _reason(report: pytest.TestReport) -> str:
    """A report's text; for a skip, its reason alone."""
    if report.skipped and isinstance(report.longrepr, (tuple, list)) and len(report.longrepr) == 3:
        return str(report.longrepr[2]).removeprefix("Skipped: ")  # (file, line, reason)
    return re.sub(r"^\[gw\d+\] .*\n", "", report.longreprtext)  # xdist's worker line


def _skip(reason: str) -> None:
    """Skip reported at the model's baseline entry, not at this line (as pytest's skip marks do)."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


class GateFailure(AssertionError):
    """Measured accuracy outside the baseline's tolerance."""


class AccuracyItem(pytest.Item):
    def __init__(self, *, case: Case, strict: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.strict = strict  # a skip is a failure (--vaccbench-strict, or the suite's `strict`)

    def runtest(self) -> None:
        session: VaccbenchSession = self.config.pluginmanager.get_plugin("vaccbench-session")
        session.run_case(self)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, (GateFailure, VaccbenchError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Skips and failures point at the model's entry in its baseline file."""
        return self.case.entry.baseline_path, self.case.entry.line - 1, self.name


class VaccbenchSession:
    """Per-process state: options, the resolved dataset, and (on the controller) results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.getoption
        self.update = bool(opt("update_baselines"))
        if self.update and opt("limit") and not opt("dataset_name"):
            raise pytest.UsageError(
                "--update-baselines with --limit would record a subset's figures under the whole "
                "dataset's name; add --dataset-name NAME to record the subset under its own name")
        self.confidence = float(opt("confidence"))
        if not 0 < self.confidence < 1:
            raise pytest.UsageError(f"--confidence must be between 0 and 1, got {self.confidence}")
        self.baselines_dir = Path(opt("baselines")).resolve() if opt("baselines") else None
        weights = opt("weights_dir") or os.environ.get("VACCBENCH_WEIGHTS") or "weights"
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        threads = opt("threads") or max(1, (os.cpu_count() or 1) // workers)
        vamp = ("vamp_bin", "vamp_root", "vamp_timeout", "vamp_instances", "vamp_processes",
                "vamp_batch", "vamp_args")
        cache = cache_dir(opt("vaccbench_cache"))
        self.devices = _device_pool(config, cache)
        self.options = RunOptions(weights_dir=Path(weights).expanduser().resolve(),
                                  cache_dir=cache,
                                  batch_size=opt("batch_size"), threads=threads, workers=threads,
                                  extra={**{name: opt(name) for name in vamp},
                                         "device": self.devices.device if self.devices else None,
                                         "ort_provider": opt("ort_provider"), "onnx_dir": opt("onnx_dir"),
                                         "opset": opt("opset"), "int8_per_tensor": opt("int8_per_tensor"),
                                         "vamc_config": opt("vamc_config"),
                                         "ort_calibrator": opt("ort_calibrator"),
                                         "calib_images": opt("calib_images"),
                                         "calib_include": opt("calib_include"),
                                         "int8_keep_fp32": opt("int8_keep_fp32")},
                                  image_cache=not opt("no_image_cache"))
        self._override: tuple[str, PreprocessSpec] | None = None
        self._dataset: dataset_mod.Dataset | VaccbenchError | None = None
        self.is_worker = hasattr(config, "workerinput")
        self.started = _dt.datetime.now()
        self.results = Results()
        self.messages: list[str] = []  # what the session wrote, or failed to write
        self._stdout = sys.stdout  # the terminal, captured output aside (capture is off now)

    def preprocess_override(self) -> tuple[str, PreprocessSpec] | None:
        """--preprocess=vdsp:FILE as (variant name, spec), or None."""
        value = self.config.getoption("preprocess")
        if value and self._override is None:
            self._override = preprocess_option(value)
        return self._override

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
        """The command that records this test's result, as it would run: every option of
        this session that shapes the numbers, and a --dataset-name of its own for a subset
        (--update-baselines refuses to record a subset under the whole dataset's name)."""
        args = ["pytest", item.nodeid, f"--backend={item.case.backend}",
                f"--precision={item.case.precision}"]
        for option in UPDATE_COMMAND_OPTIONS:
            value = self.config.getoption(option.dest)
            if value is None or value == option.default:
                continue
            flag = option.names()[-1]
            args.append(flag if value is True else f"{flag}={value}")
        limit = self.config.getoption("limit")
        if limit and self.config.getoption("dataset_name") is None:
            args.append(f"--dataset-name={self.dataset().name}-limit{limit}")
        return shlex.join([*args, "--update-baselines"])

    def run_case(self, item: AccuracyItem) -> None:
        if self.devices and self.devices.problem:
            raise VaccbenchError(self.devices.problem)
        case = item.case
        backend = get_backend(case.backend)
        if case.precision not in backend.precisions:
            _skip(f"backend {case.backend} has no precision {case.precision} "
                  f"(it has {', '.join(backend.precisions)})")
        reason = backend.skip_reason(case.entry, case.precision, self.options)
        if reason:
            _skip(reason)
        data = self.dataset()
        expected = expectation_for(case.entry, data, case.backend, case.run_precision)
        if expected is None and not self.update:
            _skip(f"no baseline for {case.entry.key} on dataset {data.name!r} with "
                  f"{case.backend}/{case.run_precision} in {case.entry.baseline_path.name}; "
                  f"record one with: {self.update_command(item)}")
        result = evaluate(case, data, self.options)
        paired = (paired_with_fp32(result, case, self.options.cache_dir)
                  if needs_paired(case.backend, case.run_precision) else None)
        measured = Accuracy(result.n, result.correct1, result.correct5)
        # recording: judged only to refuse a broken build (regressions are what updates record)
        target = (recording_target(case.entry, data, case.backend, case.run_precision, measured,
                                   paired) if self.update else expected)
        verdict = judge(measured, target,
                        Images(data.name, result.n, data.total, result.fingerprint),
                        self.update_command(item), paired=paired,
                        build=f"{case.backend}/{case.run_precision}", confidence=self.confidence,
                        allow_improvement=self.config.getoption("allow_improvement"))
        payload = {"result": json.loads(result.to_json()),
                   "expected": None if expected is None else
                   {"top1": expected.top1, "top5": expected.top5, "origin": expected.origin,
                    "tol1": expected.tolerance.top1, "tol5": expected.tolerance.top5},
                   "gate": {**verdict.details, "message": verdict.message}}
        item.user_properties.append((PROPERTY, json.dumps(payload)))
        if self.update:
            why = refusal(Recording(item.nodeid, "passed", result, verdict.kind),
                          self.config.getoption("accept_broken"))
            if why:
                raise GateFailure(f"not recorded: {verdict.message}\n--update-baselines refuses "
                                  f"this result: {why}")
            return
        if not verdict.passed:
            raise GateFailure(verdict.message + self.triage_note(item, verdict.kind, result, paired))
        if verdict.message:  # shown for passed tests with -rP
            item.add_report_section("call", "vaccbench gate", verdict.message)

    def triage_note(self, item: AccuracyItem, kind: str, result: Any, paired: Any) -> str:
        """For a failing int8 test: its layers ranked (onnxruntime), or the command that ranks
        them on the CPU emulation (vamp: the accelerator's layer outputs are not available)."""
        case, opt = item.case, self.config.getoption
        if kind not in ("regression", "broken") or not case.precision.startswith("int8") or opt("no_triage"):
            return ""
        if case.backend == "vamp":
            return "\n" + triage.cpu_command(case.entry, case.precision, opt("dataset") or
                                              dataset_mod.BUILTIN_SKIMAGE, {
                "--labels": opt("labels"), "--limit": opt("limit"), "--baselines": opt("baselines"),
                "--weights-dir": str(self.options.weights_dir),
                "--calib-images": self.options.extra.get("calib_images")})
        if case.backend != "onnxruntime":
            return ""
        if paired is None or paired.agreement is None:
            return f"\nlayer triage skipped: {paired.note if paired else 'no fp32 run to compare with'}"
        try:
            found = triage.triage_case(case.entry, case.precision, self.dataset(), self.options,
                                       Path(result.predictions), Path(paired.note), opt("triage_budget"))
        except Exception as exc:  # noqa: BLE001 - the gate's verdict stands whatever triage meets
            return f"\nlayer triage failed: {type(exc).__name__}: {exc}"
        return "\n" + found.message()

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
        """Strict mode: a skip of an accuracy test is a failure with the same reason."""
        report = yield
        if report.skipped and getattr(item, "strict", False) and not hasattr(report, "wasxfail"):
            reason = _reason(report)
            report.outcome = "failed"
            report.longrepr = f"{STRICT} (--vaccbench-strict): {reason}"
        return report

    # -- controller side: collect results from reports, write baselines and reports -------
    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.config.option.collectonly:
            return  # nothing runs: nothing to report as not measured
        self.results.select(i.nodeid for i in session.items if isinstance(i, AccuracyItem))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """pytest-xdist: the tests a worker will run (the controller collects none itself)."""
        self.results.select(i for i in ids if is_suite_file(Path(i.split("::", 1)[0])))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.results.add(report.nodeid, report.when, report.outcome, report.keywords,
                         report.user_properties, _reason(report))
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
        nothing = not_measured_line(self.results)
        if nothing and exitstatus != pytest.ExitCode.INTERRUPTED:
            self.messages.append(f"ERROR: {nothing}")
            session.exitstatus = session.exitstatus or NOTHING_MEASURED
        info = session_info(self.config.invocation_params.args, exitstatus, self.started)
        rows = list(self.results)
        opt = self.config.getoption
        if opt("vaccbench_json"):  # what `vaccbench merge` checks and needs
            info.update(self.config.pluginmanager.get_plugin("vaccbench-shards").session_fields(
                *self._dataset_identity()))
        writers = (("vaccbench_json", lambda p: write_json(rows, p, info), "JSON report"),
                   ("vaccbench_html", lambda p: write_html(rows, p, info), "HTML report"),
                   ("vaccbench_history", lambda p: history.append_run(p, rows, info), "history"))
        for name, write, what in writers:
            if opt(name):
                path = Path(opt(name)).expanduser()
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)  # as --junitxml does
                    write(path)
                    self.messages.append(f"{what}: {path}")
                except (OSError, VaccbenchError) as exc:
                    self.messages.append(f"ERROR writing {what} {path}: {exc}")
                    session.exitstatus = session.exitstatus or pytest.ExitCode.TESTS_FAILED

    def _dataset_identity(self) -> tuple[str | None, str | None]:
        """Name and fingerprint of the session's images, for `vaccbench merge`."""
        try:
            data = self.dataset()
        except VaccbenchError:
            return None, None
        return data.name, data.fingerprint()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.devices:
            self.devices.release()

    def update_baselines(self) -> bool:
        """One locked write per baseline file (updates.apply_updates); False when a result
        was refused or a file could not be written (it is then left as it was)."""
        recordings = [rec for row in self.results
                      if (rec := recording_of(row.nodeid, row.outcome, row.result, row.gate))]
        done = apply_updates(recordings, accept_broken=self.config.getoption("accept_broken"),
                             dry_run=self.config.getoption("dry_run"))
        for row in self.results:
            row.updated = row.nodeid in done.written
        self.messages.extend(done.lines)
        return done.ok

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not len(self.results) and not self.messages:
            return
        datasets = sorted({row.result.dataset for row in self.results if row.result})
        terminalreporter.section(f"vaccbench accuracy on {', '.join(datasets) or '-'}")
        for line in summary_lines(self.results, self.config.get_terminal_writer().fullwidth):
            terminalreporter.write_line(line)
        for reason, models in skip_groups(self.results):
            terminalreporter.write_line(f"skipped ({len(models)}): {reason}")
            terminalreporter.write_line(f"  {', '.join(models)}")
        for row in self.results:
            if row.result and row.result.excluded:
                r = row.result
                terminalreporter.write_line(
                    f"{r.model} {r.backend}/{r.precision}: {r.excluded} calibration images excluded "
                    f"from the count (n={r.n}; --calib-include counts them)")
        for line in self.messages:
            terminalreporter.write_line(line, red=line.startswith(("ERROR", "REFUSED")))

