"""The plugin's plain pieces, without a pytest session: the update command and the
RunOptions built from option values, strict mode's report change, the report writers and
the terminal summary's lines."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _pytest.config.argparsing import Parser

from pytest_vaccbench.plugin.options import (NOT_IN_UPDATE_COMMAND, add_options, run_options,
                                             update_command)
from pytest_vaccbench.plugin.results import terminal_lines, write_reports
from pytest_vaccbench.plugin.running import make_strict
from pytest_vaccbench.report import STRICT, Results


def declared() -> tuple[list[Any], dict[str, Any]]:
    """The plugin's declared options, and their defaults as a fresh session has them."""
    parser = Parser(_ispytest=True)
    add_options(parser)
    options = parser.getgroup("vaccbench").options
    return options, {o.dest: o.default for o in options}


def command(values: dict[str, Any], subset: str = "skimage-photos") -> list[str]:
    options, defaults = declared()
    opt = {**defaults, **values}.get
    kept = [o for o in options if o.dest not in NOT_IN_UPDATE_COMMAND]
    asked: list[str] = []

    def subset_name() -> str:
        asked.append(subset)
        return subset

    text = update_command("suites/s.yaml::fam/m[onnxruntime-int8-max]", "onnxruntime", "int8-max",
                          opt, subset_name, kept)
    words = shlex.split(text)
    assert asked == ([subset] if values.get("limit") and not values.get("dataset_name") else [])
    return words


def test_update_command_repeats_only_the_options_that_shape_the_numbers() -> None:
    words = command({"weights_dir": "/w dir", "int8_per_tensor": True, "opset": 13,
                     "vaccbench_json": "r.json", "allow_improvement": True, "confidence": 0.99,
                     "backend": ["reference"], "calib_images": 1000})
    assert words == ["pytest", "suites/s.yaml::fam/m[onnxruntime-int8-max]", "--backend=onnxruntime",
                     "--precision=int8-max", "--weights-dir=/w dir", "--opset=13",
                     "--int8-per-tensor", "--update-baselines"]


def test_update_command_names_a_subset_after_the_dataset_and_limit() -> None:
    words = command({"limit": 200, "dataset": "/data/val"}, subset="imagenet-sample")
    assert words[-3:] == ["--limit=200", "--dataset-name=imagenet-sample-limit200", "--update-baselines"]
    assert "--dataset=/data/val" in words
    named = command({"limit": 200, "dataset_name": "mine"})
    assert "--dataset-name=mine" in named and not any("-limit200" in w for w in named)


def test_run_options_from_option_values(tmp_path: Path) -> None:
    _, defaults = declared()
    values = {**defaults, "vamp_bin": "vamp --x", "vamp_instances": 2, "ort_provider": "cuda",
              "int8_keep_fp32": "conv0", "no_image_cache": True, "batch_size": 4}
    options = run_options(values.get, tmp_path, device="3",
                          env={"VACCBENCH_WEIGHTS": str(tmp_path / "w"), "PYTEST_XDIST_WORKER_COUNT": "4"},
                          cpus=10)
    assert options.weights_dir == tmp_path / "w" and options.cache_dir == tmp_path
    assert (options.threads, options.workers, options.batch_size) == (2, 2, 4)  # 10 cores / 4 workers
    assert options.image_cache is False and options.image_cache_dir is None
    assert options.extra["device"] == "3" and options.extra["vamp_bin"] == "vamp --x"
    assert options.extra["vamp_instances"] == 2 and options.extra["ort_provider"] == "cuda"
    assert options.extra["int8_keep_fp32"] == "conv0" and options.extra["calib_images"] == 1000
    assert options.extra["opset"] == 11 and options.extra["vamp_timeout"] == 3600.0


def test_run_options_threads_and_weights_given(tmp_path: Path) -> None:
    _, defaults = declared()
    values = {**defaults, "threads": 3, "weights_dir": str(tmp_path / "given")}
    options = run_options(values.get, tmp_path, env={"VACCBENCH_WEIGHTS": "/elsewhere"}, cpus=64)
    assert options.weights_dir == tmp_path / "given" and options.threads == 3
    assert options.extra["device"] is None and options.image_cache is True
    plain = run_options({**defaults}.get, tmp_path, env={}, cpus=1)
    assert plain.weights_dir == Path("weights").resolve() and plain.threads == 1


def test_strict_turns_a_skip_into_a_failure_with_its_reason() -> None:
    skipped = SimpleNamespace(skipped=True, outcome="skipped",
                              longrepr=("b.yaml", 3, "Skipped: weights not found: w.pth"))
    make_strict(skipped)  # type: ignore[arg-type]
    assert skipped.outcome == "failed"
    assert skipped.longrepr == f"{STRICT} (--vaccbench-strict): weights not found: w.pth"
    xfail = SimpleNamespace(skipped=True, outcome="skipped", wasxfail="", longrepr=("b", 1, "x"))
    make_strict(xfail)  # type: ignore[arg-type]
    assert xfail.outcome == "skipped"


def test_write_reports_writes_what_was_asked_and_says_what_failed(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    asked = {"vaccbench_json": str(tmp_path / "out" / "r.json"),
             "vaccbench_html": str(blocker / "r.html"), "vaccbench_history": None}
    lines, ok = write_reports([], {"command": "pytest"}, asked.get)
    assert not ok
    assert lines[0] == f"JSON report: {tmp_path / 'out' / 'r.json'}"
    assert lines[1].startswith(f"ERROR writing HTML report {blocker / 'r.html'}: ") and len(lines) == 2
    assert json.loads((tmp_path / "out" / "r.json").read_text())["tests"] == []
    assert write_reports([], {}, {}.get) == ([], True)


def test_terminal_lines_show_errors_and_refusals_red() -> None:
    lines = terminal_lines(Results(), ["JSON report: r.json", "ERROR writing history h: x",
                                       "REFUSED m: broken build"], 80)
    assert lines[-3:] == [("JSON report: r.json", False), ("ERROR writing history h: x", True),
                          ("REFUSED m: broken build", True)]


@pytest.mark.parametrize("name", ["dry_run", "accept_broken", "update_baselines"])
def test_recording_modes_are_never_repeated(name: str) -> None:
    assert f"--{name.replace('_', '-')}" not in command({name: True})[:-1]
