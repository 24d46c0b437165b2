"""Inference progress: what the line says and when it is drawn, the shared batch loop reporting
finished images, and the plugin showing it on a real terminal only."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from vaccbench_fake import FakeProject

from pytest_vaccbench import progress
from pytest_vaccbench.backends import iter_batches
from pytest_vaccbench.dataset import BUILTIN_SKIMAGE, resolve
from pytest_vaccbench.preprocess import PreprocessSpec


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _screen(writes: list[str]) -> str:
    """What a terminal shows after the writes: backspaces move left, ESC[K erases the rest."""
    line, col = [], 0
    for text in writes:
        for part in re.split(r"(\x1b\[K|\x08)", text):
            if part == "\x08":
                col = max(0, col - 1)
            elif part == "\x1b[K":
                del line[col:]
            else:
                for ch in part:
                    if col < len(line):
                        line[col] = ch
                    else:
                        line.append(ch)
                    col += 1
    return "".join(line)


def test_progress_line_counts_images_and_rate_after_the_delay():
    clock, writes = Clock(), []
    bar = progress.Progress(200, "mobilenet_v2/x[reference-fp32]", writes.append, width=80,
                            delay=1.0, interval=0.25, clock=clock)
    clock.now += 0.5
    bar.advance(32)
    assert writes == []  # short runs stay quiet
    clock.now += 1.5  # 2 s in, 64 images: 32 img/s
    bar.advance(32)
    assert _screen(writes) == "[######..............] 64/200 images  32.0 img/s  mobilenet_v2/x[reference-fp32]"
    clock.now += 0.1
    bar.advance(32)
    assert len(writes) == 1  # redrawn at most every `interval`
    clock.now += 0.9  # 3 s in, 200 images: the last batch is always drawn
    bar.advance(104)
    assert _screen(writes).startswith("[####################] 200/200 images  66.7 img/s")
    bar.close()
    assert _screen(writes) == ""  # the terminal line is as it was


def test_progress_line_fits_the_width_it_is_given():
    clock, writes = Clock(), []
    bar = progress.Progress(10, "x" * 200, writes.append, width=40, delay=0, clock=clock)
    bar.advance(5)
    assert len(_screen(writes)) == 40


def test_the_shared_batch_loop_reports_images_as_the_model_consumes_them():
    data = resolve(BUILTIN_SKIMAGE)
    spec = PreprocessSpec.from_mapping({"resize": 32, "crop": 32, "mean": [0.5] * 3, "std": [0.5] * 3})
    writes: list[str] = []
    seen = []
    with progress.shown_on(writes.append, 80, delay=0), progress.task(5, "t") as bar:
        for batch in iter_batches(data.samples, spec, batch_size=2, workers=1):
            seen.append(bar.done)  # when a batch is handed over, it is not done yet
        assert bar.done == 5
    assert seen == [0, 2, 4]
    assert "5/5 images" in "".join(writes) and _screen(writes) == ""


def test_without_a_front_end_nothing_is_drawn():
    with progress.task(5, "t") as bar:
        progress.advance(5)
    assert bar is None


def test_no_progress_when_output_is_not_a_terminal(pytester: pytest.Pytester):
    project = FakeProject(pytester.path, pytester)
    project.plan({"timm-efficientnet_lite0": {"sleep": 0.4}})
    result = project.run("-k", "efficientnet_lite0", "--batch-size=1", "--update-baselines")
    result.assert_outcomes(passed=1)  # ran for 2 s: long enough to draw on a terminal
    assert "img/s" not in result.stdout.str() and "\x1b[K" not in result.stdout.str()


def _run_on_a_terminal(args: list[str], cwd) -> str:
    """Run a command with a pseudo-terminal as its output; return everything it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL,
                            env={**os.environ, "COLUMNS": "160"})
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_progress_on_a_real_terminal(tmp_path):
    project = FakeProject(tmp_path)
    project.plan({"timm-efficientnet_lite0": {"sleep": 0.5}})
    out = _run_on_a_terminal([sys.executable, "-m", "pytest", *project.args(
        "-k", "efficientnet_lite0", "--batch-size=1", "--update-baselines")], tmp_path)
    drawn = re.findall(r"\] (\d)/5 images +([\d.]+) img/s", out)
    assert drawn, out
    assert 0 < float(drawn[-1][1]) < 10  # ~2 img/s with 0.5 s per image
    assert "\x1b[K" in out
    assert "1 passed" in out
    # erased before pytest went on: on screen, the line reads as if no progress was drawn
    line = re.sub(r"\x1b\[[0-9;]*m", "", out[out.index("suites/fake.yaml"):]).split("\r\n")[0]
    assert "images" in line and re.fullmatch(r"suites/fake.yaml \. +\[100%\]", _screen([line]))
