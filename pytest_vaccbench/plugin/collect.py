"""Collection: a suite file becomes one `AccuracyItem` per model x backend x precision.

An item only knows its `Case`; running it is `running.CaseRunner`'s work.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from .. import triage
from ..backends import Backend, get_backend
from ..baselines import ModelEntry
from ..errors import VaccbenchError
from ..options import split_names
from ..preprocess import PreprocessSpec
from ..run import Case
from ..suite import load_suite, select_models

if TYPE_CHECKING:
    from .running import CaseRunner

RUNNER = "vaccbench-session"  # the CaseRunner's name in the plugin manager


def runner_of(config: pytest.Config) -> CaseRunner:
    return config.pluginmanager.get_plugin(RUNNER)


class GateFailure(AssertionError):
    """Measured accuracy outside the baseline's tolerance."""


class SuiteFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        runner = runner_of(self.config)
        try:
            suite = load_suite(self.path)
            entries = select_models(suite, runner.baselines_dir)
            override = runner.preprocess_override()
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
        runner = runner_of(self.config)
        try:
            return impl.precisions_for(entry, requested, runner.options) if impl else requested
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


class AccuracyItem(pytest.Item):
    def __init__(self, *, case: Case, strict: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.strict = strict  # a skip is a failure (--vaccbench-strict, or the suite's `strict`)

    def runtest(self) -> None:
        runner_of(self.config).run_case(self)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, (GateFailure, VaccbenchError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Skips and failures point at the model's entry in its baseline file."""
        return self.case.entry.baseline_path, self.case.entry.line - 1, self.name
