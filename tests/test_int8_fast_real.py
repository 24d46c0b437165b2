"""The streaming calibration against onnxruntime's calibrators on the real mobilenetv2
(float weights of torchvision's int8 model) and the shared val subset: the same ranges
per tensor, and int8 accuracy within the paired comparison's noise."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench import thresholds
from pytest_vaccbench.baselines import load_family
from pytest_vaccbench.dataset import resolve
from pytest_vaccbench.metrics import mcnemar_exact

ROOT = Path(__file__).resolve().parents[1]
CALIB_IMAGES = 32  # two calibration batches of 16: the histograms' grids grow once
# Largest relative difference of a range end (over max |range|) allowed: measured 7.5e-7
# (percentile) and 8.7e-7 (kl_divergence) over the 171 calibrated tensors with these 32
# images; binning by arithmetic moves a value within float32 rounding of a bin edge to the
# next bin, nothing more.
REL_TOLERANCE = 1e-4


def ranges(path: Path) -> dict[str, tuple[float, float]]:
    data = json.loads(path.read_text())["data"]

    def scalar(value) -> float:
        return float(np.ravel(value["data"] if isinstance(value, dict) else value)[0])

    return {name: (scalar(d["lowest"]), scalar(d["highest"])) for name, d in data.items()}


@pytest.mark.slow
def test_fast_calibration_equals_onnxruntimes_on_mobilenetv2(shared_data, tmp_path):
    """Slow (about a minute on 2 free cores): onnxruntime's Percentile and Entropy
    calibrators on 32 images, and two int8 evaluations of the 618 other images."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime.quantization")
    from pytest_vaccbench.backends import RunOptions
    from pytest_vaccbench.backends.onnxruntime import OnnxRuntimeBackend
    from pytest_vaccbench.run import Case, evaluate

    entry = load_family(ROOT / "baselines" / "mobilenet_v2.yaml").models["local-mobilenetv2_100-tvq"]
    data = resolve(str(shared_data / "ilsvrc2012-val-subset"))
    fast = RunOptions(weights_dir=shared_data / "weights", cache_dir=tmp_path, batch_size=32, threads=2,
                      workers=2, extra={"calib_images": CALIB_IMAGES})
    ort = replace(fast, extra={**fast.extra, "ort_calibrator": True})
    backend = OnnxRuntimeBackend()
    model = thresholds.calibration_model(backend.fp32_graph(entry, fast))
    # the input of each Conv's ReLU6 is not collected but given the ReLU6's range, as
    # quantize_static does; onnxruntime's calibrators collect it (and quantize_static drops it)
    inherited = dict(thresholds.inherited_ranges(model, thresholds.calibrated_tensors(model)))
    assert len(inherited) == 35
    for mode in ("percentile", "kl_divergence"):
        backend.graph(entry, f"int8-{mode}", data, fast)
        backend.graph(entry, f"int8-{mode}", data, ort)
        ours = ranges(next(tmp_path.glob(f"onnx/derived/*/ranges-{mode}-*.json")))
        theirs = ranges(next(tmp_path.glob(f"onnx/derived/*/ranges-ort-{mode}-*.json")))
        assert set(ours) == set(theirs) and len(ours) > 150
        worst = max(max(abs(a - c), abs(b - d)) / max(abs(c), abs(d), 1e-12)
                    for (a, b), (c, d) in ((ours[t], theirs[inherited.get(t, t)]) for t in ours))
        print(f"{mode}: {len(ours)} tensors, max relative range difference {worst:.2e}")
        assert worst <= REL_TOLERANCE, (mode, worst)

    # accuracy: the two int8 builds (percentile) image by image
    runs = [evaluate(Case(entry, "onnxruntime", "int8-percentile"), data, options) for options in (fast, ort)]
    assert runs[0].n == runs[1].n == len(data.samples) - CALIB_IMAGES
    saved = [np.load(r.predictions) for r in runs]
    labels = saved[0]["labels"]
    right = [s["top5"][:, 0] == labels for s in saved]
    b, c = int((right[0] & ~right[1]).sum()), int((~right[0] & right[1]).sum())
    print(f"int8-percentile top1/top5 fast {runs[0].top1:.2f}/{runs[0].top5:.2f}, onnxruntime's "
          f"{runs[1].top1:.2f}/{runs[1].top5:.2f}; discordant {b}/{c}, McNemar p={mcnemar_exact(b, c):.3f}")
    assert mcnemar_exact(b, c) > 0.05, (b, c)
    assert abs(runs[0].top1 - runs[1].top1) <= 1.0 and abs(runs[0].top5 - runs[1].top5) <= 1.0
    assert runs[0].top1 > 70.0  # and int8 works at all (fp32 scores ~78 here)
