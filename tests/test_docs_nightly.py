"""docs/nightly.md runs as written: every ```console block's `$ ` commands run (bash, in a
project of stand-in compiled models for the vamp test double) and the output lines shown
under each must appear in that order; `...` in a shown line stands for any text (dates,
versions, paths of this machine)."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from test_nightly_vamp import BASELINE
from test_vamp import CENTROIDS, Project  # imports cv2, onnx and onnxruntime, or skips

import vamp_standin

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "nightly.md"


def console_blocks(text: str) -> list[list[tuple[str, list[str]]]]:
    """Each ```console block as (command, shown output lines) pairs."""
    blocks = []
    for body in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        steps: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
        blocks.append(steps)
    return blocks


def assert_shown(shown: list[str], actual: list[str], command: str) -> None:
    """The shown lines appear in `actual` in order (other lines may come between)."""
    rest = iter(actual)
    for line in (s for s in shown if s.strip()):
        pattern = "*".join(re.sub(r"([\[\]?*])", r"[\1]", part) for part in line.rstrip().split("..."))
        if not any(fnmatch.fnmatchcase(a.rstrip(), pattern) for a in rest):
            raise AssertionError(f"`{command}`: shown line not in the output (in order):\n{line}\n"
                                 "--- output ---\n" + "\n".join(actual))


@pytest.fixture
def nightly(pytester: pytest.Pytester) -> Path:
    """The project of the docs: two models, stub-late's int8 build collapsed (wrong colours)."""
    project = Project(pytester)
    (project.root / "suites" / "vamp.yaml").rename(project.root / "suites" / "nightly.yaml")
    (project.root / "baselines" / "stub.yaml").write_text(BASELINE)
    shuffled = dict(zip(CENTROIDS, list(CENTROIDS.values())[1:] + list(CENTROIDS.values())[:1]))
    collapsed = vamp_standin.colour_model(project.root / "export" / "collapsed.onnx", shuffled)
    vamp_standin.install(project.models, "stub-late", collapsed, project.root / "colours.json",
                         ["int8-percentile"], 32)
    bin_dir = project.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "vamp").write_text(f"#!/bin/sh\nexec {vamp_standin.stub_command()} \"$@\"\n")
    (bin_dir / "vamp").chmod(0o755)
    (bin_dir / "pytest").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pytest "
                                    "-p no:cacheprovider --vaccbench-cache=.cache \"$@\"\n")
    (bin_dir / "vaccbench").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c "
                                       "'import sys; from pytest_vaccbench.cli import main; "
                                       "sys.exit(main())' \"$@\"\n")
    for tool in ("pytest", "vaccbench"):
        (bin_dir / tool).chmod(0o755)
    return project.root


@pytest.mark.slow  # eight pytest sessions in subprocesses, ~10 s
def test_every_console_block_of_the_nightly_page_runs_as_shown(nightly: Path) -> None:
    blocks = console_blocks(DOC.read_text())
    assert len(blocks) >= 4
    env = {**os.environ, "PATH": f"{nightly / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "120"}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    for steps in blocks:
        for command, shown in steps:
            done = subprocess.run(["bash", "-c", command], cwd=nightly, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
            assert_shown(shown, done.stdout.splitlines(), command)
