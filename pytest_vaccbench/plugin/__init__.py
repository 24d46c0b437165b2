"""The pytest plugin (entry point `pytest_vaccbench.plugin`): the hooks and what they register.

Hooks stay thin, as in pytest's own plugins: the options are declared and checked in
`options`, suite files collected in `collect`, one test run in `running`, and results
gathered, recorded and reported on the controller in `results`; the work itself is in
`run.evaluate`, `gate.judge`, `updates.apply_updates` and `report`. Results travel from the
test to the controller inside the test report (`user_properties`), so pytest-xdist workers
never write baseline files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..suite import is_suite_file
from . import ini
from .collect import RUNNER, SuiteFile
from .options import add_options, check_config, check_dataset
from .results import ResultsCollector
from .running import CaseRunner
from .shard_record import ShardRecorder


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)  # before pytest-split's: ShardRecorder sees the items before the split
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vaccbench: an accuracy test generated from a suite file")
    ini.resolve(config)
    check_config(config)
    runner = CaseRunner(config)
    config.pluginmanager.register(runner, RUNNER)  # first: its unconfigure releases a device
    if not runner.is_worker:  # the controller has read it; a worker would fail less clearly
        check_dataset(config.getoption, runner.dataset)
    config.pluginmanager.register(ResultsCollector(config), "vaccbench-results")
    config.pluginmanager.register(ShardRecorder(config), "vaccbench-shards")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if is_suite_file(file_path):
        return SuiteFile.from_parent(parent, path=file_path)
    return None
