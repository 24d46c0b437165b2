"""Real processes: two updates of one baseline file at a barrier keep both entries, and a
pytest-xdist worker killed with SIGKILL mid-test is in the JSON and HTML reports as crashed."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from vaccbench_fake import FakeProject

from pytest_vaccbench.baselines import read_yaml

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 20
KEYS = ("model-a", "model-b")
BASELINE = """\
family: race
preprocess: {resize: 8}
models:
  model-a: {name: a, source: x, library: null, arch: null, input_size: 8}
  model-b: {name: b, source: x, library: null, arch: null, input_size: 8}
"""


def _updater(folder: str, key: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    from pytest_vaccbench.baselines import update_file

    for trial in range(TRIALS):  # trial i: both processes update race-i.yaml
        barrier.wait()  # at the same moment
        update_file(Path(folder) / f"race-{trial}.yaml",
                    [(key, "race", "fake/fp32", {"top1": float(trial), "top5": 100.0, "n": 1})])


def test_two_processes_updating_one_file_at_a_barrier_lose_nothing(tmp_path: Path) -> None:
    for trial in range(TRIALS):
        (tmp_path / f"race-{trial}.yaml").write_text(BASELINE)
    context = multiprocessing.get_context("fork")  # two processes that share only the file system
    barrier = context.Barrier(2)
    workers = [context.Process(target=_updater, args=(str(tmp_path), key, barrier)) for key in KEYS]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    lost = [(trial, key) for trial in range(TRIALS) for key in KEYS
            if "race" not in (read_yaml(tmp_path / f"race-{trial}.yaml")["models"][key].get("expected")
                              or {})]
    assert lost == []  # 20 trials of 2 simultaneous updates: 0 lost


@pytest.mark.slow  # ~14 s: two xdist workers start, one is killed and replaced
def test_a_killed_xdist_worker_is_reported_as_crashed(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    pytest.importorskip("skimage", reason="the built-in skimage-photos dataset needs scikit-image")
    project = FakeProject(tmp_path)
    pidfile = tmp_path / "worker.pid"
    project.plan({"timm-mobilenetv2_100": {"pidfile": str(pidfile)}})
    args = [sys.executable, "-m", "pytest", *project.args("-n", "2", "-k", "mobilenet",
                                                          "--update-baselines",
                                                          "--vaccbench-json=report.json",
                                                          "--vaccbench-html=report.html")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not pidfile.exists() or not pidfile.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, "the test never started"
            time.sleep(0.05)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)  # a real kill -9 of the worker
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out
    crashed = "suites/fake.yaml::mobilenet_v2/timm-mobilenetv2_100[fake-fp32]"
    tests = {t["nodeid"]: t for t in json.loads((tmp_path / "report.json").read_text())["tests"]}
    assert len(tests) == 4  # every selected test, the crashed one included
    assert tests[crashed]["status"] == "crashed"
    assert "crashed while running" in tests[crashed]["reason"]
    assert sorted(t["status"] for n, t in tests.items() if n != crashed) == ["updated"] * 3
    page = (tmp_path / "report.html").read_text()
    assert page.count('<tr class="test crashed ') == 1
    assert re.search(r'4 selected accuracy tests: <span class="\w+">1 crashed</span> &middot; '
                     r'<span class="\w+">3 updated</span>', page), page[:3000]
    assert "mobilenet_v2/timm-mobilenetv2_100" in page.split('<tr class="test crashed ')[1].split("</tr>")[0]
    # and its baseline entry was not written
    model = read_yaml(tmp_path / "baselines" / "mobilenet_v2.yaml")["models"]["timm-mobilenetv2_100"]
    assert "fake/fp32" not in ((model.get("expected") or {}).get("skimage-photos") or {})
