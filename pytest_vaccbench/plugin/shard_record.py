"""Hooks that record, for the JSON report, which accuracy tests the session selected before
pytest-split took its group, and how each test it ran ended (see merge.py for why).

Under xdist the workers collect and split, so a worker sends its selection to the
controller in `workeroutput`; the test outcomes arrive on the controller in the reports.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..merge import describe_selection, outcome_of
from ..report import MARKER

WORKER_KEY = "vaccbench_selection"


class ShardRecorder:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.selection: dict[str, Any] | None = None
        self.ran: dict[str, dict[str, Any]] = {}

    # trylast, and registered before pytest-split's plugin (the plugin's pytest_configure is
    # tryfirst): runs after -k/-m deselection, before pytest-split keeps its group
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        tests = [(item.nodeid, item.path, item.case.entry.baseline_path)  # type: ignore[attr-defined]
                 for item in items if hasattr(item, "case")]
        self.selection = describe_selection(tests, config.rootpath)
        if hasattr(config, "workeroutput"):
            config.workeroutput[WORKER_KEY] = json.dumps(self.selection)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        text = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if text and self.selection is None:
            self.selection = json.loads(text)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        known = MARKER in report.keywords or report.nodeid in self.ran  # xdist's crash report
        if known and not hasattr(self.config, "workerinput"):  # has no keywords
            message = report.longreprtext
            if report.skipped and isinstance(report.longrepr, tuple):
                message = str(report.longrepr[2]).removeprefix("Skipped: ")
            self.ran[report.nodeid] = outcome_of(self.ran.get(report.nodeid), report.when,
                                                 report.outcome, report.duration, message)

    def session_fields(self, dataset: str | None, fingerprint: str | None) -> dict[str, Any]:
        """What the JSON report's `session` carries for `vaccbench merge`."""
        opt = self.config.getoption
        selection = self.selection or describe_selection([], self.config.rootpath)
        return {**selection, "dataset": dataset, "fingerprint": fingerprint,
                "splits": opt("splits", None), "group": opt("group", None), "ran": self.ran}
