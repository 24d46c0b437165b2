"""The device pool (--devices): a file lock per device, held by one test process each, freed
by the kernel when its holder dies; and an xdist worker killed mid-run, replaced by one that
takes the free device."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_vaccbench.devices import DevicePool, check_workers
from pytest_vaccbench.errors import VaccbenchError

sys.path.insert(0, str(Path(__file__).parent))
import colour_zoo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_more_workers_than_devices_is_refused() -> None:
    check_workers((0, 1), 2)
    with pytest.raises(VaccbenchError, match="3 xdist workers for 2 device"):
        check_workers((0, 1), 3)


def test_each_holder_gets_its_own_device_until_released(tmp_path: Path) -> None:
    pools = [DevicePool((4, 7), tmp_path) for _ in range(3)]
    assert pools[0].acquire() == 4 and pools[1].acquire() == 7
    assert pools[0].acquire() == 4  # holding one already: the same
    with pytest.raises(VaccbenchError, match=r"no free device among 4,7 after 0.3 s"):
        pools[2].acquire(wait=0.3)
    pools[0].release()
    assert pools[2].acquire(wait=0) == 4 and pools[2].device == 4


def test_a_dead_holders_device_is_free_again(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from pytest_vaccbench.devices import DevicePool; "
            f"pool = DevicePool((0, 1), Path({str(tmp_path)!r})); print(pool.acquire(), flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "0"
        pool = DevicePool((0, 1), tmp_path)
        assert pool.acquire() == 1  # 0 is busy
        pool.release()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert DevicePool((0,), tmp_path).acquire(wait=0) == 0
    finally:
        holder.kill()
        holder.wait()


def _pytest(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytest", *colour_zoo.pytest_args(root), "-q", *args],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_more_workers_than_devices_is_a_usage_error(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    root = colour_zoo.build(tmp_path, [])
    (root / "models").mkdir(exist_ok=True)
    out, _ = _pytest(root, "-n", "3", "--devices", "4,7").communicate(timeout=120)
    assert "ERROR: 3 xdist workers for 2 device(s) (4,7): each worker holds one device; run with " \
           "-n 2 or fewer" in out
    out, _ = _pytest(root, "--devices", "4,x").communicate(timeout=120)
    assert "ERROR: --devices=4,x: must be comma-separated non-negative integers, e.g. 0,1,2,3" in out


@pytest.mark.slow
def test_a_worker_replacing_a_killed_one_takes_the_free_device(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    pytest.importorskip("onnxruntime")
    root = colour_zoo.build(tmp_path, colour_zoo.default_models(5))
    log = root / "vamp-calls.jsonl"
    sleep = {f"zoo-m{i:02d}": 1.5 for i in range(5)}
    run = _pytest(root, "-n", "2", "--devices", "4,7", f"--device-locks={root / 'locks'}",
                  "--vaccbench-json=out.json",
                  env={"VAMP_STUB_LOG": str(log), "VAMP_STUB_SLEEP": json.dumps(sleep)})
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.read_text().strip()):  # the first vamp call is running
        assert time.monotonic() < deadline and run.poll() is None, run.communicate()[0]
        time.sleep(0.1)
    first = json.loads(log.read_text().splitlines()[0])
    os.kill(first["parent"], signal.SIGKILL)  # its parent: the xdist worker holding the device
    out, _ = run.communicate(timeout=300)
    assert "crashed while running" in out, out
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    devices: dict[str, int] = {}
    for call in calls:  # -d is the device each worker holds, one per worker, always the same
        assert call["argv"][call["argv"].index("-d") + 1] == str(call["device"])
        assert devices.setdefault(call["worker"], call["device"]) == call["device"]
    assert set(devices.values()) <= {4, 7}
    survivor = {w for w in devices if w != first["worker"] and int(w[2:]) < 2}
    replacements = {w for w in devices if int(w[2:]) >= 2}
    assert replacements, f"the replacement worker ran no vamp call: {calls}"
    for worker in replacements:  # the dead worker's device, never the survivor's
        assert devices[worker] == first["device"]
        assert all(devices[worker] != devices[s] for s in survivor)
    report = json.loads((root / "out.json").read_text())
    crashed = [t for t, r in report["session"]["ran"].items() if r["outcome"] == "error"]
    assert len(crashed) == 1 and first["model"] in crashed[0]  # the test of the killed worker
    assert "crashed while running" in report["session"]["ran"][crashed[0]]["message"]
    assert {t["device"] for t in report["tests"] if "device" in t} <= {4, 7}
