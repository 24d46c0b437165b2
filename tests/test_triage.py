"""Layer triage of int8 builds (pytest_vaccbench.triage, layers, the --int8-keep-fp32 option).

Fast tests on a hand-built three-layer network quantized by onnxruntime; slow ones on
mobilenetv2 and efficientnet_lite0 with real weights and images (../shared/data).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench.layers import Layer, module_path, nodes_for, quantizable_layers
from pytest_vaccbench.triage import keep_option, parse_keep, vamc_line

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnxruntime.quantization.qdq_loss_debug import (  # noqa: E402
    compute_signal_to_quantization_noice_ratio as ort_sqnr)

from pytest_vaccbench import triage  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from broken_int8 import break_weight_scales  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# -- naming ----------------------------------------------------------------------------------
@pytest.mark.parametrize("node, module", [
    ("/blocks/blocks.1/blocks.1.0/conv_pw/Conv", "blocks.1.0.conv_pw"),  # timm's export
    ("/blocks/1/conv_pw/Conv", "blocks.1.conv_pw"),
    ("/conv_stem/Conv", "conv_stem"),
    ("Conv_7", "Conv_7")])  # no scope: the node name itself
def test_module_path_from_exported_node_names(node, module):
    assert module_path(node) == module


def test_layers_are_counted_per_kind_in_graph_order_and_named_by_vamc_ordinals():
    model = tiny_model()
    layers = quantizable_layers(model)
    assert [(x.kind, x.index, x.op, x.module) for x in layers] == [
        ("conv", 0, "Conv", "features.conv1"), ("conv", 1, "Conv", "features.conv2"),
        ("matmul", 0, "Gemm", "classifier")]
    assert nodes_for(layers, conv=[1], matmul=[0]) == ["/features/conv2/Conv", "/classifier/Gemm"]
    with pytest.raises(ValueError, match="no such layer.*conv 5.*2 conv and 1 matmul"):
        nodes_for(layers, conv=[5])
    assert vamc_line([layers[1], layers[0], layers[2]]) == \
        "skip_conv_layers: [0, 1]; skip_matmul_layers: [0]"
    assert keep_option(layers) == "conv0,conv1,matmul0"
    assert parse_keep("conv0, conv17,matmul0") == ([0, 17], [0])
    for bad in ("conv", "dense3", "conv-1", ","):
        with pytest.raises(ValueError, match="conv<N>|no layer"):
            parse_keep(bad)


# -- a hand-built network --------------------------------------------------------------------
def tiny_model(seed: int = 0) -> onnx.ModelProto:
    """3x8x8 input -> conv 3x3 (8) -> relu -> conv 1x1 (8) -> relu -> pool -> gemm (10)."""
    rng = np.random.default_rng(seed)
    weights = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "b1": rng.normal(0, 0.1, 8),
               "w2": rng.normal(0, 0.3, (8, 8, 1, 1)), "b2": rng.normal(0, 0.1, 8),
               "w3": rng.normal(0, 0.3, (10, 8)), "b3": rng.normal(0, 0.1, 10)}
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="/features/conv1/Conv", pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"], name="/features/act1/Relu"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="/features/conv2/Conv"),
             helper.make_node("Relu", ["c2"], ["r2"], name="/features/act2/Relu"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="/pool/GlobalAveragePool"),
             helper.make_node("Flatten", ["p"], ["f"], name="/flatten/Flatten"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["output"], name="/classifier/Gemm", transB=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def quantized(fp32_path: Path, out: Path, images: np.ndarray, exclude: list[str] | None = None) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": images[i:i + 8]} for i in range(0, len(images), 8)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(fp32_path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude or [])
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    images = np.random.default_rng(1).normal(0, 1, (48, 3, 8, 8)).astype(np.float32)
    fp32 = folder / "fp32.onnx"
    onnx.save(tiny_model(), str(fp32))
    return fp32, quantized(fp32, folder / "int8.onnx", images[:32]), images[32:]


def run_with_outputs(model: onnx.ModelProto, images: np.ndarray, names: list[str]) -> list[np.ndarray]:
    """The model run with extra graph outputs, by hand."""
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(names, {"input": images})


def test_single_and_accumulated_error_equal_a_computation_by_hand(tiny):
    """conv2 of the tiny net: single = its input quantized with the build's scale (numpy),
    weights dequantized (numpy), a 1x1 convolution (einsum) vs the fp32 conv2 output;
    accumulated = the QDQ graph's conv2 output vs fp32's; SQNR by onnxruntime's function."""
    fp32_path, int8_path, images = tiny
    fp32, qdq = onnx.load(str(fp32_path)), onnx.load(str(int8_path))
    errors, _, _ = triage.layer_errors(fp32, qdq, quantizable_layers(fp32), images)
    assert set(errors) == {"/features/conv1/Conv", "/features/conv2/Conv", "/classifier/Gemm"}

    const = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
    producer = {o: n for n in qdq.graph.node for o in n.output}
    conv2 = next(n for n in qdq.graph.node if n.name == "/features/conv2/Conv")
    x_dq, w_dq, b_dq = (producer[i] for i in conv2.input)
    x_q = producer[x_dq.input[0]]
    r1, c2 = run_with_outputs(fp32, images, ["r1", "c2"])
    scale, zero = const[x_q.input[1]], const[x_q.input[2]].astype(np.float32)
    x = (np.clip(np.round(r1 / scale) + zero, -128, 127) - zero) * scale

    def dequantized(dq):
        return (const[dq.input[0]].astype(np.float32) - const[dq.input[2]]) * const[dq.input[1]]

    w, b = dequantized(w_dq), dequantized(b_dq)
    single = np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0]) + b[None, :, None, None]
    (int8_c2,) = run_with_outputs(qdq, images, [conv2.output[0]])
    mine = errors["/features/conv2/Conv"]
    assert mine.single_sqnr == pytest.approx(ort_sqnr(c2, single), abs=0.01)
    assert mine.acc_sqnr == pytest.approx(ort_sqnr(c2, int8_c2), abs=0.01)
    cos = float((c2 * int8_c2).sum() / np.linalg.norm(c2) / np.linalg.norm(int8_c2))
    assert mine.acc_cos == pytest.approx(cos, abs=1e-5)
    assert 15 < mine.single_sqnr < 60 and mine.acc_sqnr < mine.single_sqnr + 0.5


def test_a_damaged_layer_ranks_first_and_keeping_it_in_fp32_restores_the_build(tiny, tmp_path):
    fp32_path, int8_path, images = tiny
    fp32 = onnx.load(str(fp32_path))
    assert break_weight_scales(int8_path, tmp_path / "broken.onnx", 8.0, {"/features/conv2/Conv"}) == 2
    broken = onnx.load(str(tmp_path / "broken.onnx"))
    found = triage.triage(fp32, broken, images, 0, budget=None)
    assert found.rows[0].layer.node == "/features/conv2/Conv"
    assert found.rows[0].errors.single_sqnr < 0 < found.rows[1].errors.single_sqnr
    repaired = triage.top1(triage.keep_fp32(broken, fp32, ["/features/conv2/Conv"]), images)
    healthy = triage.top1(onnx.load(str(int8_path)), images)
    assert (repaired == healthy).mean() >= 0.9
    assert found.helpful()[0].layer.node == "/features/conv2/Conv"
    assert "features.conv2" in found.message().splitlines()[2]


def test_keep_fp32_uses_the_float_weights_and_matches_nodes_to_exclude(tiny, tmp_path):
    """Surgery on the QDQ graph (keep_fp32) against onnxruntime's own nodes_to_exclude build."""
    fp32_path, int8_path, images = tiny
    fp32, qdq = onnx.load(str(fp32_path)), onnx.load(str(int8_path))
    calib = np.random.default_rng(1).normal(0, 1, (48, 3, 8, 8)).astype(np.float32)[:32]
    excluded = quantized(fp32_path, tmp_path / "excl.onnx", calib, ["/features/conv2/Conv"])
    (by_ort,) = run_with_outputs(onnx.load(str(excluded)), images, ["output"])
    (ours,) = run_with_outputs(triage.keep_fp32(qdq, fp32, ["/features/conv2/Conv"]), images, ["output"])
    (plain,) = run_with_outputs(qdq, images, ["output"])
    assert np.abs(ours - by_ort).max() < np.abs(plain - by_ort).max()
    assert (ours.argmax(1) == by_ort.argmax(1)).mean() >= 0.9


def test_budget_skips_and_says_so(tiny):
    fp32_path, int8_path, images = tiny
    found = triage.triage(onnx.load(str(fp32_path)), onnx.load(str(int8_path)), images, 0, budget=0.0)
    assert all(r.kept_agreement is None for r in found.rows)
    assert found.skipped == ["keep-in-fp32 agreement of 3 more layer(s): time budget of 0 s"]
    assert "skipped: keep-in-fp32 agreement of 3 more layer(s)" in found.message()


def test_pick_images_takes_the_discordant_first():
    files = [f"{i}.JPEG" for i in range(10)]
    run, ref = np.arange(10), np.array([0, 9, 2, 9, 4, 5, 9, 7, 8, 9])
    assert triage.pick_images(files, run, ref, least=5, most=2) == ([1, 3, 0, 2, 4], 2)
    assert triage.pick_images(files, run, ref, least=2, most=8) == ([1, 3, 6], 3)
