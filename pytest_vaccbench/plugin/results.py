"""Controller side: results gathered from the test reports (so pytest-xdist workers never
write a file), then the baseline updates, the report files and the terminal summary.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

from .. import history
from ..errors import VaccbenchError
from ..report import (Results, find_payload, junit_properties, not_measured_line, session_info,
                      skip_groups, summary_lines, title, unread_lines, weak_lines, write_json)
from ..report_html import write_html
from ..sequential import summary_line
from ..store import PredictionsStore
from ..suite import closest_models, is_suite_file
from ..updates import apply_updates, recording_of
from .collect import AccuracyItem, runner_of
from .options import Getter, update_command
from .running import report_reason

NOTHING_MEASURED = pytest.ExitCode.NO_TESTS_COLLECTED  # exit 5: accuracy tests selected, none measured


def update_baselines(results: Results, opt: Getter) -> tuple[list[str], bool]:
    """One locked write per baseline file (updates.apply_updates): the lines to show, and
    False when a result was refused or a file could not be written (it is then left as it was)."""
    recordings = [rec for row in results
                  if (rec := recording_of(row.nodeid, row.outcome, row.result, row.gate))]
    store = opt("vaccbench_store")
    done = apply_updates(recordings, accept_broken=opt("accept_broken"),
                         accept_other_images=opt("accept_other_images"), dry_run=opt("dry_run"),
                         store=PredictionsStore(Path(store)) if store else None)
    for row in results:
        row.updated = row.nodeid in done.written
        row.unchanged = row.nodeid in done.unchanged
    return list(done.lines), done.ok


def _trends(path: Path | None) -> dict[history.SeriesKey, list[history.Point]]:
    """The history's series, for the HTML report's sparklines (none when it cannot be read:
    the history's own writer has said why)."""
    try:
        return history.series(path) if path is not None and path.is_file() else {}
    except VaccbenchError:
        return {}


def write_reports(rows: list[Any], info: dict[str, Any], opt: Getter,
                  images: dict[str, Path] | None = None) -> tuple[list[str], bool]:
    """The report files asked for (--vaccbench-json/-history/-html, the history first so that
    the HTML report's trends hold this session): what was written or failed, and False when
    one could not be written. `images`: the dataset's image files by name (thumbnails)."""
    history_path = Path(opt("vaccbench_history")).expanduser() if opt("vaccbench_history") else None
    writers: tuple[tuple[str, Callable[[Path], Any], str], ...] = (
        ("vaccbench_json", lambda path: write_json(rows, path, info), "JSON report"),
        ("vaccbench_history", lambda path: history.append_run(path, rows, info), "history"),
        ("vaccbench_html", lambda path: write_html(rows, path, info, _trends(history_path), images),
         "HTML report"))
    lines, ok = [], True
    for name, write, what in writers:
        if opt(name):
            path = Path(opt(name)).expanduser()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)  # as --junitxml does
                write(path)
                lines.append(f"{what}: {path}")
            except (OSError, VaccbenchError) as exc:
                lines.append(f"ERROR writing {what} {path}: {exc}")
                ok = False
    return lines, ok


def terminal_lines(results: Results, messages: Iterable[str], width: int) -> list[tuple[str, bool]]:
    """The summary section's lines, each with whether it is shown red."""
    lines = [(line, False) for line in summary_lines(results, width)]
    for reason, models in skip_groups(results):
        lines += [(f"skipped ({len(models)}): {reason}", False), (f"  {', '.join(models)}", False)]
    for row in results:
        stop = summary_line(f"{row.model.partition('/')[2]} {row.run}", row.gate)
        if stop:
            lines.append((stop, False))
        if row.result and row.result.excluded:
            r = row.result
            lines.append((f"{r.model} {r.backend}/{r.precision}: {r.excluded} calibration images "
                          f"excluded from the count (n={r.n}; --calib-include counts them)", False))
    lines += [(line, False) for line in [*weak_lines(results), *unread_lines(results)]]
    return lines + [(line, line.startswith(("ERROR", "REFUSED"))) for line in messages]


def empty_selection(keyword: str, deselected: list[AccuracyItem]) -> str:
    """The usage error of a -k that selected no test at all, naming the closest model keys."""
    entries = list({item.case.entry.test_name: item.case.entry for item in deselected}.values())
    near = closest_models(keyword, entries)
    hint = (f"closest model keys: {', '.join(e.test_name for e in near)}" if near else
            "no model key is close; `vaccbench models` lists them")
    return (f"-k {keyword!r} selects none of the {len(deselected)} accuracy tests; {hint} "
            "(test ids read <family>/<model key>[<backend>-<precision>])")


class ResultsCollector:
    """Results of the session's accuracy tests, from their reports; on the controller, the
    files and the summary made of them."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self.started = _dt.datetime.now()
        self.results = Results()
        self.messages: list[str] = []  # what the session wrote, or failed to write
        self.deselected: list[AccuracyItem] = []  # by -k or -m

    @pytest.hookimpl
    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += [i for i in items if isinstance(i, AccuracyItem)]

    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        keyword = self.config.option.keyword
        if keyword and self.deselected and not session.items and not self.is_worker:
            raise pytest.UsageError(empty_selection(keyword, self.deselected))
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
                         report.user_properties, report_reason(report))
        if report.when == "teardown" and not self.is_worker:  # JUnit XML reads teardown reports
            payload = find_payload(report.user_properties)
            if payload is not None:
                report.user_properties.extend(junit_properties(payload))

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            return
        opt = self.config.getoption
        if opt("update_baselines"):
            if exitstatus == pytest.ExitCode.INTERRUPTED:
                self.messages.append("interrupted: no baseline file was changed")
            else:
                lines, ok = update_baselines(self.results, opt)
                self.messages.extend(lines)
                if not ok:
                    session.exitstatus = session.exitstatus or pytest.ExitCode.TESTS_FAILED
        nothing = not_measured_line(self.results)
        if nothing and exitstatus != pytest.ExitCode.INTERRUPTED:
            self.messages.append(f"ERROR: {nothing}")
            session.exitstatus = session.exitstatus or NOTHING_MEASURED
        info = session_info(self.config.invocation_params.args, session.exitstatus, self.started)
        files = opt("vaccbench_json") or opt("vaccbench_html")
        data = self._dataset() if files else None
        if opt("vaccbench_json"):  # what `vaccbench merge` checks and needs
            info.update(self.config.pluginmanager.get_plugin("vaccbench-shards").session_fields(
                data.name if data else None, data.fingerprint() if data else None))
            info["images"] = str(data.root.resolve()) if data else None  # compare's thumbnails
        images = {s.path.name: s.path for s in data.samples} if data and opt("vaccbench_html") else None
        for row in self.results if files else ():
            row.command = self._record_command(row)
        lines, ok = write_reports(list(self.results), info, opt, images)
        self.messages.extend(lines)
        if not ok:
            session.exitstatus = session.exitstatus or pytest.ExitCode.TESTS_FAILED

    def _dataset(self) -> Any:
        """The session's images (None when they cannot be resolved): name and fingerprint for
        `vaccbench merge`, the files for the HTML report's thumbnails."""
        try:
            return runner_of(self.config).dataset()
        except VaccbenchError:
            return None

    def _record_command(self, row: Any) -> str:
        """The command that runs the row's test alone and records its result."""
        backend, _, precision = row.run.partition("/")
        try:
            return update_command(row.nodeid, backend, precision.partition("+")[0],
                                  self.config.getoption, lambda: runner_of(self.config).dataset().name)
        except VaccbenchError:  # a --limit subset of a dataset that cannot be resolved
            return ""

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not len(self.results) and not self.messages:
            return
        terminalreporter.section(title(self.results))
        width = self.config.get_terminal_writer().fullwidth
        for line, red in terminal_lines(self.results, self.messages, width):
            terminalreporter.write_line(line, red=red)
