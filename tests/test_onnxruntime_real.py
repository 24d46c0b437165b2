"""Real weights through the plugin: onnxruntime fp32 and fp16 of mobilenetv2 (float weights
from torchvision's int8 model) and efficientnet_lite0 are gated against the baselines, and
compared image by image with the reference (PyTorch) backend run in the same session.

Requirements (issue: onnxruntime backend): fp32 gives the reference's top1/top5 exactly,
per-image top-1 agreement >= 99.9%, fp16 within 0.5 points of fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # real models on the shared images: the slow tier

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"mobilenet_v2": "local-mobilenetv2_100-tvq", "efficientnet_lite": "timm-efficientnet_lite0"}


def run_suite(pytester: pytest.Pytester, shared_data: Path, dataset: str, backends: str) -> Path:
    """Run the models of MODELS through the plugin (gating, no update); return the cache."""
    (pytester.path / "suites").mkdir(exist_ok=True)
    (pytester.path / "suites" / "real.yaml").write_text(
        f"baselines: {ROOT / 'baselines'}\nfamilies: {sorted(MODELS)}\nmodels: {sorted(MODELS.values())}\n")
    cache = pytester.path / "cache"
    result = pytester.runpytest_subprocess(
        "suites/real.yaml", "-p", "no:cacheprovider", f"--backend={backends}",
        "--precision=fp32,fp16", f"--dataset={shared_data / dataset}",
        f"--weights-dir={shared_data / 'weights'}", f"--vaccbench-cache={cache}")
    with_reference = "reference" in backends  # the reference has fp32 only: fp16 is skipped
    result.assert_outcomes(passed=len(MODELS) * (3 if with_reference else 2),
                           skipped=len(MODELS) if with_reference else 0)
    assert "vaccbench accuracy" in result.stdout.str()
    return cache


def predictions(cache: Path, family: str, run: str) -> dict[str, np.ndarray]:
    [path] = (cache / "predictions" / family / MODELS[family] / run).glob("*.npz")
    return dict(np.load(path))


def top1(saved: dict[str, np.ndarray]) -> float:
    return 100.0 * float(np.mean(saved["top5"][:, 0] == saved["labels"]))


def top5(saved: dict[str, np.ndarray]) -> float:
    return 100.0 * float(np.mean((saved["top5"] == saved["labels"][:, None]).any(axis=1)))


def test_val_subset_matches_reference_image_by_image(pytester, shared_data):
    cache = run_suite(pytester, shared_data, "ilsvrc2012-val-subset", "reference,onnxruntime")
    for family in MODELS:
        ref = predictions(cache, family, "reference-fp32")
        fp32 = predictions(cache, family, "onnxruntime-fp32")
        fp16 = predictions(cache, family, "onnxruntime-fp16")
        assert len(ref["files"]) == 650
        np.testing.assert_array_equal(ref["files"], fp32["files"])
        assert (top1(fp32), top5(fp32)) == (top1(ref), top5(ref)), family
        assert np.mean(fp32["top5"][:, 0] == ref["top5"][:, 0]) >= 0.999, family
        assert abs(top1(fp16) - top1(fp32)) <= 0.5 and abs(top5(fp16) - top5(fp32)) <= 0.5, family


def test_imagenet_sample_is_gated(pytester, shared_data):
    from pytest_vaccbench.baselines import load_family

    cache = run_suite(pytester, shared_data, "imagenet-sample", "onnxruntime")
    for family, key in MODELS.items():
        expected = load_family(ROOT / "baselines" / f"{family}.yaml").models[key].expected
        reference = expected["imagenet-sample"]["reference/fp32"]
        fp32 = predictions(cache, family, "onnxruntime-fp32")
        fp16 = predictions(cache, family, "onnxruntime-fp16")
        assert len(fp32["files"]) == reference["n"] == 500
        assert (round(top1(fp32), 3), round(top5(fp32), 3)) == (reference["top1"], reference["top5"])
        assert abs(top1(fp16) - top1(fp32)) <= 0.5, family
