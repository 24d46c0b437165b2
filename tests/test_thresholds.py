"""Fast int8 calibration against onnxruntime's own calibrators, the `mse` mode against a
brute-force quantization, and the layer numbering of build configs."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnxruntime.quantization.calibrate import HistogramCollector, create_calibrator  # noqa: E402

from pytest_vaccbench import thresholds  # noqa: E402
from pytest_vaccbench.layers import Layer, module_path, nodes_for, quantizable_layers  # noqa: E402

# Largest relative difference allowed between a threshold here and onnxruntime's. Binning by
# arithmetic instead of searching the float32 edges moves ~1e-4 of the values near an edge
# by one bin; the thresholds measured equal (0.0) on these data, and 8.7e-7 at most over the
# 171 tensors of mobilenetv2 (test_int8_fast_real.py).
REL_TOLERANCE = 1e-5


def growing_batches(seed: int = 0, size: int = 100_000) -> list[list[np.ndarray]]:
    """Six batches of three tensors (normal, ReLU'd, shifted Laplace) whose ranges grow, so
    the histograms' grids are widened several times, as with real calibration data."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(size).astype(np.float32) * (1 + 0.3 * b),
             np.maximum(rng.standard_normal(size).astype(np.float32) * (1 + b % 3), 0),
             rng.laplace(size=size).astype(np.float32) + 0.1 * b] for b in range(6)]


def ort_collector(method: str, batches: list[list[np.ndarray]]) -> HistogramCollector:
    bins = thresholds.PERCENTILE_BINS if method == "percentile" else thresholds.ENTROPY_BINS
    collector = HistogramCollector(method, method == "percentile", bins, thresholds.ENTROPY_QUANTIZED_BINS,
                                   thresholds.PERCENTILE, "same")
    with contextlib.redirect_stdout(io.StringIO()):
        for batch in batches:
            collector.collect({f"t{i}": [a] for i, a in enumerate(batch)})
    return collector


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_streamed_histograms_and_thresholds_match_onnxruntimes_collector(method):
    batches = growing_batches()
    collector = ort_collector(method, batches)
    with contextlib.redirect_stdout(io.StringIO()):
        expected = collector.compute_collection_result()
    rule = thresholds.percentile_threshold if method == "percentile" else thresholds.entropy_threshold
    for i in range(3):
        bins = thresholds.PERCENTILE_BINS if method == "percentile" else thresholds.ENTROPY_BINS
        hist = thresholds.TensorHistogram(method == "percentile", bins)
        for batch in batches:
            hist.add(batch[i].copy())
        ort_counts, ort_edges = collector.histogram_dict[f"t{i}"][:2]
        np.testing.assert_array_equal(hist.grid(), ort_edges)  # the same grid, grown the same way
        assert np.abs(hist.counts - ort_counts).sum() <= 1e-4 * ort_counts.sum()
        low, high = rule(hist.counts, hist.grid(), float(hist.low), float(hist.high))
        want_low, want_high = (float(v) for v in expected[f"t{i}"][:2])
        scale = max(abs(want_low), abs(want_high))
        assert abs(low - want_low) <= REL_TOLERANCE * scale and abs(high - want_high) <= REL_TOLERANCE * scale


def test_percentile_from_the_top_of_the_histogram_equals_the_whole_histograms():
    """Binning one by one only the values above the first batch's top (`top`) gives the
    same percentile as every value binned, and says when it cannot (the percentile fell
    below the first batch's top): compute_ranges then bins that tensor whole."""
    batches = growing_batches()
    for i in range(3):
        whole = thresholds.TensorHistogram(True, thresholds.PERCENTILE_BINS)
        top = thresholds.TensorHistogram(True, thresholds.PERCENTILE_BINS, thresholds.PERCENTILE_TOP)
        for batch in batches:
            whole.add(batch[i].copy())
            top.add(batch[i].copy())
        assert top.cut > 0 and top.resolves(thresholds.PERCENTILE)
        np.testing.assert_array_equal(top.counts[top.cut:], whole.counts[top.cut:])  # exact from the cut on
        assert top.counts.sum() == whole.counts.sum()
        assert (thresholds.percentile_threshold(top.counts, top.grid(), float(top.low), float(top.high))
                == thresholds.percentile_threshold(whole.counts, whole.grid(), float(whole.low), float(whole.high)))
    rng = np.random.default_rng(5)
    shrinking = thresholds.TensorHistogram(True, thresholds.PERCENTILE_BINS, thresholds.PERCENTILE_TOP)
    shrinking.add(rng.uniform(0, 10, 10_000).astype(np.float32))  # the first batch's top: ~9.99
    shrinking.add(rng.uniform(0, 1, 2_000_000).astype(np.float32))  # then 200 times more values below 1
    assert not shrinking.resolves(thresholds.PERCENTILE)


def test_entropy_rule_equals_onnxruntimes_on_the_same_histograms():
    """The vectorised KL search against onnxruntime's loop, on histograms of several widths."""
    rng = np.random.default_rng(3)
    for bins in (128, 131, 200, 517):
        counts = rng.poisson(rng.gamma(0.5, 50, size=bins)).astype(np.int64)
        counts[rng.random(bins) < 0.2] = 0
        edges = np.linspace(-3.0, 3.0, bins + 1, dtype=np.float32)
        histogram = (counts, edges, np.float32(-2.9), np.float32(2.5), np.float32(3.0))
        collector = HistogramCollector("entropy", False, bins, 128, 99.999, "same")
        expected = collector.get_entropy_threshold(histogram, 128)
        assert thresholds.entropy_threshold(counts, edges, -2.9, 2.5) == tuple(np.float32(v) for v in expected)


def fake_quant_mse(values: np.ndarray, low: float, high: float) -> float:
    """The mean squared error of int8 quantize-dequantize with onnxruntime's asymmetric
    activation range (rmin <= 0 <= rmax), simulated value by value."""
    rmin, rmax = min(low, 0.0), max(high, 0.0)
    scale = (rmax - rmin) / 255
    zero = np.round(-128 - rmin / scale)
    q = np.clip(np.round(values / scale) + zero, -128, 127)
    return float(np.mean(((q - zero) * scale - values) ** 2))


@pytest.mark.parametrize("kind", ["relu-exponential", "signed-heavy-tail"])
def test_mse_picks_a_threshold_near_the_simulated_optimum(kind):
    """Independent check: quantize-dequantize every value at 120 thresholds and measure."""
    rng = np.random.default_rng(4)
    values = rng.exponential(size=400_000) if kind.startswith("relu") else rng.standard_t(3, 400_000)
    values = values.astype(np.float32)
    hist = thresholds.TensorHistogram(True, thresholds.PERCENTILE_BINS)
    hist.add(values.copy())
    low, high = thresholds.mse_threshold(hist.counts, hist.grid(), float(hist.low), float(hist.high))
    candidates = np.linspace(0.02, 1, 120) * float(np.abs(values).max())
    simulated = [fake_quant_mse(values, max(-t, float(values.min())), min(t, float(values.max())))
                 for t in candidates]
    best = min(simulated)
    assert fake_quant_mse(values, float(low), float(high)) <= 1.05 * best
    assert high < 0.9 * float(values.max())  # it clips the tail
    if kind == "signed-heavy-tail":  # where the max (MinMax's range) is far from optimal
        assert fake_quant_mse(values, float(values.min()), float(values.max())) > 1.5 * best


def test_mse_suffix_sums_equal_the_direct_sums():
    rng = np.random.default_rng(7)
    counts = rng.poisson(rng.gamma(0.3, 400, size=300)).astype(np.int64)
    edges = np.linspace(0, 5, 301, dtype=np.float32)
    centers = (edges[:-1].astype(np.float64) + edges[1:]) / 2
    errors = [(counts * np.clip(centers - t, 0, None) ** 2).sum() + counts[:k].sum() * (t / 255) ** 2 / 12
              for k, t in enumerate(edges.astype(np.float64)) if k > 0]
    best = edges[1 + int(np.argmin(errors))]
    assert thresholds.mse_threshold(counts, edges, 0.0, 5.0) == (np.float32(0.0), best)


# -- on a graph, against onnxruntime's calibrators ------------------------------------------
def conv_net(path: Path, size: int = 32) -> Path:
    """Conv-Relu-Conv-Add-Conv-GlobalAveragePool-Flatten-Gemm, with exporter-style node names."""
    rng = np.random.default_rng(5)

    def conv(name: str, cin: int, cout: int, x: str, out: str) -> list:
        w = numpy_helper.from_array(rng.normal(0, 0.3, (cout, cin, 3, 3)).astype(np.float32), f"{name}.weight")
        b = numpy_helper.from_array(rng.normal(0, 0.1, cout).astype(np.float32), f"{name}.bias")
        inits.extend([w, b])
        return [helper.make_node("Conv", [x, w.name, b.name], [out], name=f"/{name.replace('.', '/')}/Conv",
                                 pads=[1, 1, 1, 1])]

    inits: list = []
    nodes = (conv("stem.conv", 3, 8, "input", "c0")
             + [helper.make_node("Relu", ["c0"], ["r0"], name="/stem/act/Relu")]
             + conv("blocks.0.conv_pw", 8, 8, "r0", "c1")
             + [helper.make_node("Add", ["c1", "r0"], ["a1"], name="/blocks/0/Add")]
             + conv("blocks.1.conv_pw", 8, 8, "a1", "c2")
             + [helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="/pool/GlobalAveragePool"),
                helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
                helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["output"], name="/classifier/Gemm",
                                 transB=1)])
    inits += [numpy_helper.from_array(rng.normal(0, 0.5, (1000, 8)).astype(np.float32), "fc.weight"),
              numpy_helper.from_array(np.zeros(1000, np.float32), "fc.bias")]
    graph = helper.make_graph(nodes, "convnet",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1000])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("mode, top", [("percentile", "PERCENTILE_TOP"), ("mse", "MSE_TOP")])
def test_ranges_take_a_second_pass_when_the_top_of_the_first_batch_misses(tmp_path, monkeypatch, mode, top):
    """percentile and mse bin one by one only the top of the histogram after the first batch;
    their ranges equal those of every value binned, through a second pass for the tensors
    whose threshold fell lower."""
    model = thresholds.calibration_model(conv_net(tmp_path / "net.onnx"))
    rng = np.random.default_rng(8)
    # one large image, then 200 small ones: the thresholds fall far below the first batch's top
    batches = [rng.normal(0, 50, (1, 3, 32, 32)).astype(np.float32)] + \
              [rng.normal(0, 0.01, (50, 3, 32, 32)).astype(np.float32) for _ in range(4)]
    passes = []
    collect = thresholds.collect
    monkeypatch.setattr(thresholds, "collect", lambda model, tensors, *a, **k: passes.append(tensors) or
                        collect(model, tensors, *a, **k))
    ours = thresholds.compute_ranges(model, mode, lambda: iter(batches))
    assert len(passes) == 2 and 0 < len(passes[1]) <= len(passes[0])  # the tensors it missed, again
    monkeypatch.setattr(thresholds, top, None)  # every value binned one by one
    assert ours == thresholds.compute_ranges(model, mode, lambda: iter(batches))
    assert len(passes) == 3
    steady = [rng.normal(0, 1, (20, 3, 32, 32)).astype(np.float32) for _ in range(4)]
    whole = thresholds.compute_ranges(model, mode, lambda: iter(steady))
    monkeypatch.undo()
    assert thresholds.compute_ranges(model, mode, lambda: iter(steady)) == whole  # one pass, the same ranges


@pytest.mark.parametrize("mode, method", [("max", "MinMax"), ("percentile", "Percentile"),
                                          ("kl_divergence", "Entropy")])
def test_graph_ranges_match_onnxruntimes_calibrators(tmp_path, mode, method):
    from onnxruntime.quantization import CalibrationMethod

    source = conv_net(tmp_path / "net.onnx")
    rng = np.random.default_rng(6)
    # the last batch shorter: the outputs of another shape are bound afresh
    batches = [rng.normal(0, 1 + 0.2 * i, (4 if i < 4 else 3, 3, 32, 32)).astype(np.float32) for i in range(5)]
    model = thresholds.calibration_model(source)
    ours = thresholds.compute_ranges(model, mode, lambda: iter(batches))
    onnx.save(model, str(tmp_path / "prepared.onnx"))
    extra = {"symmetric": True} if mode == "percentile" else {}
    calibrator = create_calibrator(tmp_path / "prepared.onnx", thresholds.quantized_op_types(),
                                   augmented_model_path=str(tmp_path / "augmented.onnx"),
                                   calibrate_method=getattr(CalibrationMethod, method), extra_options=extra)
    with contextlib.redirect_stdout(io.StringIO()):
        for batch in batches:  # one batch per collect_data, as quantize_static's CalibStridedMinMax=1
            calibrator.collect_data(_Reader(batch))
        expected = calibrator.compute_data()
    assert set(ours) == set(expected.data) and len(ours) >= 8
    inherited = dict(thresholds.inherited_ranges(model, thresholds.calibrated_tensors(model)))
    assert inherited == {"c0": "r0"}  # the stem's Conv output feeds only its Relu
    for name, (low, high) in ours.items():
        source = inherited.get(name, name)  # onnxruntime's calibrator collects c0 too
        want_low, want_high = (float(np.ravel(v)[0]) for v in expected[source].range_value)
        scale = max(abs(want_low), abs(want_high), 1e-12)
        assert abs(low - want_low) <= REL_TOLERANCE * scale, name
        assert abs(high - want_high) <= REL_TOLERANCE * scale, name
    # quantize_static itself replaces c0's range by r0's: the same QDQ graph from either cache
    from onnxruntime.quantization import QuantFormat, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    save_tensors_data(expected, tmp_path / "ort.json")
    thresholds.save_calibration(ours, mode, tmp_path / "ours.json")
    params = {}
    for which in ("ort", "ours"):
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(tmp_path / "prepared.onnx"), str(tmp_path / f"{which}.onnx"), None,
                            calibration_cache_path=str(tmp_path / f"{which}.json"), quant_format=QuantFormat.QDQ,
                            calibrate_method=thresholds.calibration_method(mode))
        params[which] = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / f"{which}.onnx")).graph.initializer
                         if t.name.endswith(("_scale", "_zero_point"))}
    assert set(params["ours"]) == set(params["ort"]) and len(params["ours"]) >= 16
    for name, value in params["ours"].items():
        np.testing.assert_allclose(value, params["ort"][name], rtol=REL_TOLERANCE, err_msg=name)


@pytest.mark.parametrize("mode", thresholds.MODES)
def test_non_finite_activations_are_refused_by_tensor_and_graph(tmp_path, mode):
    from pytest_vaccbench.backends.onnxruntime import Int8Recipe, calibration_ranges
    from pytest_vaccbench.errors import BackendError

    source = conv_net(tmp_path / "net.onnx")
    batch = np.ones((2, 3, 32, 32), np.float32)
    batch[1, 0, 5, 5] = np.nan
    with pytest.raises(BackendError, match=r"net\.onnx.*int8 calibration: input has non-finite values "
                                           r"\(min nan, max nan\): the graph cannot be calibrated"):
        calibration_ranges(source, Int8Recipe(mode=mode), lambda: iter([batch]), "key", tmp_path / "cache")


class _Reader:
    def __init__(self, batch: np.ndarray) -> None:
        self.items = [{"input": batch}]

    def get_next(self):
        return self.items.pop() if self.items else None


# -- layer numbering ------------------------------------------------------------------------
def test_layers_are_numbered_per_kind_in_graph_order(tmp_path):
    model = onnx.load(str(conv_net(tmp_path / "net.onnx")))
    layers = quantizable_layers(model)
    assert layers == [Layer("conv", 0, "Conv", "/stem/conv/Conv", "stem.conv"),
                      Layer("conv", 1, "Conv", "/blocks/0/conv_pw/Conv", "blocks.0.conv_pw"),
                      Layer("conv", 2, "Conv", "/blocks/1/conv_pw/Conv", "blocks.1.conv_pw"),
                      Layer("matmul", 0, "Gemm", "/classifier/Gemm", "classifier")]
    assert nodes_for(layers, conv=[2, 0], matmul=[0]) == ["/stem/conv/Conv", "/blocks/1/conv_pw/Conv",
                                                         "/classifier/Gemm"]
    with pytest.raises(ValueError, match=r"conv layer index 3 out of range: the graph has 3 conv layers \(0..2\)"):
        nodes_for(layers, conv=[3])
    assert module_path("/blocks/1/conv_pw/Conv") == "blocks.1.conv_pw" and module_path("Conv_12") == "Conv_12"
