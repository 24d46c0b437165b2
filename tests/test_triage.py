"""Layer triage of int8 builds (pytest_vaccbench.triage, layers, the --int8-keep-fp32 option).

Fast tests on a hand-built three-layer network quantized by onnxruntime; slow ones on
mobilenetv2 and efficientnet_lite0 with real weights and images (../shared/data).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench.layers import module_path, nodes_for, parse_keep, quantizable_layers
from pytest_vaccbench.triage import keep_option, vamc_line

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
    with pytest.raises(ValueError, match="5.*2 conv"):  # says how many there are
        nodes_for(layers, conv=[5])
    assert vamc_line([layers[1], layers[0], layers[2]]) == \
        "skip_conv_layers: [0, 1]; skip_matmul_layers: [0]"
    assert keep_option(layers) == "conv0,conv1,matmul0"
    assert parse_keep("conv0, conv17,matmul0") == ([0, 17], [0])
    assert triage.keep_variant("conv17, conv0,matmul0") == "keep-conv0-conv17-matmul0"
    for bad in ("conv", "dense3", "conv-1", ","):
        with pytest.raises(ValueError, match="conv<N>|no layer"):
            parse_keep(bad)


# -- a hand-built network --------------------------------------------------------------------
def tiny_model(seed: int = 0, size: int = 8, classes: int = 10) -> onnx.ModelProto:
    """3 x size x size input -> conv 3x3 (8) -> relu -> conv 1x1 (8) -> relu -> pool -> gemm."""
    rng = np.random.default_rng(seed)
    weights = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "b1": rng.normal(0, 0.1, 8),
               "w2": rng.normal(0, 0.3, (8, 8, 1, 1)), "b2": rng.normal(0, 0.1, 8),
               "w3": rng.normal(0, 0.3, (classes, 8)), "b3": rng.normal(0, 0.1, classes)}
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="/features/conv1/Conv", pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"], name="/features/act1/Relu"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="/features/conv2/Conv"),
             helper.make_node("Relu", ["c2"], ["r2"], name="/features/act2/Relu"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="/pool/GlobalAveragePool"),
             helper.make_node("Flatten", ["p"], ["f"], name="/flatten/Flatten"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["output"], name="/classifier/Gemm", transB=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", classes])],
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
    as_json = __import__("json").loads(found.to_json())  # what `vaccbench triage --json` prints
    assert as_json["rows"][0]["layer"] == {"kind": "conv", "index": 1, "op": "Conv",
                                           "node": "/features/conv2/Conv", "module": "features.conv2"}
    assert as_json["rows"][0]["errors"]["single_sqnr"] == found.rows[0].errors.single_sqnr


def test_keep_fp32_uses_the_float_weights_and_matches_nodes_to_exclude(tiny, tmp_path):
    """Surgery on the QDQ graph (keep_fp32) against onnxruntime's own nodes_to_exclude build."""
    fp32_path, int8_path, images = tiny
    fp32, qdq = onnx.load(str(fp32_path)), onnx.load(str(int8_path))
    calib = np.random.default_rng(1).normal(0, 1, (48, 3, 8, 8)).astype(np.float32)[:32]
    excluded = quantized(fp32_path, tmp_path / "excl.onnx", calib, ["/features/conv2/Conv"])
    (by_ort,) = run_with_outputs(onnx.load(str(excluded)), images, ["output"])
    (ours,) = run_with_outputs(triage.keep_fp32(qdq, fp32, ["/features/conv2/Conv"]), images, ["output"])
    (plain,) = run_with_outputs(qdq, images, ["output"])
    assert np.abs(plain - by_ort).max() > 1e-3  # conv2 kept in float changes the output
    np.testing.assert_allclose(ours, by_ort, atol=1e-5)


def test_budget_skips_and_says_so(tiny):
    fp32_path, int8_path, images = tiny
    found = triage.triage(onnx.load(str(fp32_path)), onnx.load(str(int8_path)), images, 0, budget=0.0)
    assert all(r.kept_agreement is None for r in found.rows)
    assert found.skipped == ["keep-in-fp32 effect of 3 more layer(s): time budget of 0 s"]
    assert "skipped: keep-in-fp32 effect of 3 more layer(s)" in found.message()


def test_pick_images_takes_the_discordant_first_then_the_others():
    files = [f"{i}.JPEG" for i in range(10)]
    run, ref = np.arange(10), np.array([0, 9, 2, 9, 4, 5, 9, 7, 8, 9])
    assert triage.pick_images(files, run, ref, most=5) == ([1, 3, 6, 0, 2], 3)
    assert triage.pick_images(files, run, ref, most=2) == ([1, 3], 2)
    assert triage.pick_images(files, run, ref) == ([1, 3, 6, 0, 2, 4, 5, 7, 8, 9], 3)


# -- growing the set of layers kept in fp32 -----------------------------------------------------
def _fake_networks(monkeypatch, triage_error: dict, held_error: dict, n: int = 64):
    """Networks named by the layers they keep in fp32, whose outputs stray from fp32's by
    the error their set has on the triage images (`triage_error`) and on the held-out ones
    (`held_error`): what _recovery sees, without onnxruntime."""
    rng = np.random.default_rng(0)
    reference, held, noise = (rng.normal(0, 3, (n, 10)) for _ in range(3))
    monkeypatch.setattr(triage, "keep_fp32", lambda qdq, fp32, nodes: frozenset(nodes))
    monkeypatch.setattr(triage, "outputs", lambda model, images, threads=1: reference + triage_error[model] * noise)

    def held_out(model, holdout, threads):
        key = frozenset() if model == "int8" else frozenset({"fp32"}) if model == "fp32" else model
        return held + held_error.get(key, 0.0) * noise
    monkeypatch.setattr(triage, "_held_out", held_out)
    labels = held.argmax(axis=1)
    holdout = triage.Holdout(lambda: iter(()), labels, labels, (held + noise).argmax(axis=1))
    return reference, holdout


def test_layers_are_picked_on_the_triage_images_kl_and_kept_only_when_held_out_images_agree(monkeypatch):
    """C looks best with A on the triage images but strays further on the held-out ones (an
    over-fit pick): it is not kept, B is; at K=3 C is refused again and the set stops."""
    from pytest_vaccbench.layers import Layer

    a, b, c = (Layer("conv", i, "Conv", f"/n{i}/Conv", f"n{i}") for i in range(3))
    triage_error = {frozenset(): 1.0, frozenset({a.node}): 0.6, frozenset({b.node}): 0.8,
                    frozenset({c.node}): 0.9, frozenset({a.node, b.node}): 0.5,
                    frozenset({a.node, c.node}): 0.3, frozenset({a.node, b.node, c.node}): 0.2}
    held_error = {frozenset({"fp32"}): 0.0, frozenset(): 1.0, frozenset({a.node}): 0.7,
                  frozenset({a.node, c.node}): 0.9, frozenset({a.node, b.node}): 0.6,
                  frozenset({a.node, b.node, c.node}): 0.8}
    reference, holdout = _fake_networks(monkeypatch, triage_error, held_error)
    errors = triage.LayerErrors(20.0, 0.99, 10.0, 0.9)
    rows = [triage.LayerRow(layer, errors) for layer in (a, b, c)]
    for row in rows:
        row.kept_kl = triage.kl_divergence(reference, triage.outputs(frozenset({row.layer.node}), None))
    found = triage.Triage(rows, 64, 10, 50.0)
    recovery = triage._recovery(found, "fp32", "int8", np.zeros((64, 1)), reference, holdout,
                                triage.Clock(None), 1, 5, 0.0, curve=True)
    assert recovery.order == [a, b]
    assert [x.split(" at ")[0] for x in recovery.rejected] == ["n2 (conv 2)", "n2 (conv 2)"]
    assert recovery.stopped == "no candidate lowers the held-out KL at K=3"
    assert recovery.kl[1] > recovery.kl[2] and recovery.int8_kl > recovery.kl[1]
    found.recovery = recovery
    lines = found.recovery_lines()
    assert lines[1].startswith("held-out curve, each layer confirmed there: 1 kept ")
    assert lines[2].startswith("not confirmed: n2 (conv 2) at K=2: KL ")


def test_kl_divergence_of_scores_and_of_probabilities():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert triage.kl_divergence(logits, logits) == pytest.approx(0.0, abs=1e-12)
    assert triage.kl_divergence(p, logits) == pytest.approx(0.0, abs=1e-9)  # a softmax at the end
    q = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    expected = float(np.mean([(pi * np.log(pi / (1 / 3))).sum() for pi in p]))
    assert triage.kl_divergence(logits, q) == pytest.approx(expected)


# -- in the failing test, through the plugin ---------------------------------------------------
BASELINE = """\
family: tiny
preprocess: {resize: 40, resize_mode: square, crop: 32, library: pil}
models:
  tiny-net:
    name: tiny
    source: stub
    library:
    arch:
    input_size: 32
    onnx: tiny.onnx
    expected:
      skimage-photos:
        onnxruntime/fp32: {top1: %(fp32)s, top5: %(fp32_5)s}
        onnxruntime/int8-max: {top1: 100.0, top5: 100.0}
        onnxruntime/int8-max+keep-conv1: {top1: 100.0, top5: 100.0}
"""


@pytest.fixture
def tiny_project(pytester):
    """The tiny net (1000 classes, 32x32) on the built-in skimage photos, with a baseline its
    int8 build cannot meet (fp32 recorded by a first run)."""
    onnx.save(tiny_model(size=32, classes=1000), str(pytester.path / "tiny.onnx"))
    pytester.makefile(".yaml", **{"suites/tiny": "baselines: ../baselines\nbackends: [onnxruntime]\n"})
    (pytester.path / "baselines").mkdir()
    path = pytester.path / "baselines" / "tiny.yaml"
    path.write_text(BASELINE % {"fp32": 0.0, "fp32_5": 0.0})
    args = ["suites", "-p", "no:cacheprovider", f"--vaccbench-cache={pytester.path / 'cache'}",
            f"--weights-dir={pytester.path}", "--calib-images=2"]
    fp32 = pytester.runpytest_subprocess(*args, "--precision=fp32", "--update-baselines")
    fp32.assert_outcomes(passed=1)
    return pytester, args


def test_failing_int8_test_ends_with_its_layers(tiny_project):
    pytester, args = tiny_project
    result = pytester.runpytest_subprocess(*args, "--precision=int8-max")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "BROKEN" in out or "top1" in out
    result.stdout.fnmatch_lines([
        "*layer triage (2 images, * of them flipped by int8; *s): int8 agrees with fp32 on *%, KL from fp32 *",
        "*layer * op * index * single dB * cos * accum dB * cos * kept fp32 * KL",
        "*features.conv* Conv * conv [01] *"])
    lines = [line for line in out.splitlines() if "features.conv" in line or "classifier" in line]
    assert len(set(lines)) == 3  # all three layers: fewer than the five shown (a CI summary repeats them)

    quiet = pytester.runpytest_subprocess(*args, "--precision=int8-max", "--no-triage")
    quiet.assert_outcomes(failed=1)
    assert "layer triage" not in quiet.stdout.str()


@pytest.mark.slow
def test_triage_command_prints_the_table_and_the_held_out_curve(tiny_project, capsys):
    from pytest_vaccbench.cli import main

    pytester, _ = tiny_project
    code = main(["triage", "tiny/tiny-net", "skimage-photos", "--baselines", str(pytester.path / "baselines"),
                 "--weights-dir", str(pytester.path), "--calib-images", "2", "--threads", "1",
                 "--cache", str(pytester.path / "cache")])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("tiny-net onnxruntime/int8-max (per-channel) on skimage-photos: top1 fp32 ")
    assert lines[1].startswith("2 triage images, ") and "KL from fp32 " in lines[1]
    assert lines[2].split() == ["layer", "op", "index", "single", "dB", "cos", "accum", "dB", "cos",
                                "kept", "fp32", "KL"]
    assert lines[6].startswith("held-out: top-1 on 1 images not used for calibration or triage: fp32 ")


def test_keep_fp32_option_is_a_variant_and_checked_at_startup(tiny_project):
    pytester, args = tiny_project
    kept = pytester.runpytest_subprocess(*args, "--precision=int8-max", "--int8-keep-fp32= conv1",
                                         "--no-triage", "-rA")
    kept.assert_outcomes(failed=1)
    kept.stdout.fnmatch_lines(["*tiny-net*onnxruntime-int8-max+keep-conv1*"])
    bad = pytester.runpytest_subprocess(*args, "--int8-keep-fp32=dense1")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--int8-keep-fp32=dense1: 'dense1' is not a layer: write conv<N> or matmul<N>*"])
    missing = pytester.runpytest_subprocess(*args, "--precision=int8-max", "--int8-keep-fp32=conv9",
                                            "--update-baselines")
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*layers kept in float: conv layer index 9 out of range: the graph has 2 conv*"])


# -- real weights and images (slow) ------------------------------------------------------------
def _real(shared_data, tmp_path_factory, family: str, key: str, n: int | None, calib: int):
    pytest.importorskip("torch")
    from pytest_vaccbench.backends import RunOptions
    from pytest_vaccbench.baselines import load_family
    from pytest_vaccbench.dataset import limit, resolve

    entry = load_family(ROOT / "baselines" / f"{family}.yaml").models[key]
    data = limit(resolve(str(shared_data / "ilsvrc2012-val-subset")), n)  # n=None: all 650
    options = RunOptions(weights_dir=shared_data / "weights", cache_dir=tmp_path_factory.mktemp("cache"),
                         batch_size=32, threads=2, workers=2,
                         extra={"calib_images": calib, "int8_per_tensor": True})
    return entry, data, options


@pytest.fixture(scope="module")
def mnv2(shared_data, tmp_path_factory):
    """mobilenetv2 (real weights): fp32 and int8-max graphs, the 618 counted images (650 minus
    32 for calibration: 0.5 points are 3 images), decoded once, and the int8 build's top-1."""
    from pytest_vaccbench.backends import iter_batches
    from pytest_vaccbench.backends.onnxruntime import OnnxRuntimeBackend
    from pytest_vaccbench.calibration import calibration_set

    entry, data, options = _real(shared_data, tmp_path_factory, "mobilenet_v2",
                                 "local-mobilenetv2_100-tvq", None, 32)
    backend = OnnxRuntimeBackend()
    int8 = backend.graph(entry, "int8-max", data, options)
    calib = set(calibration_set(data, 32).samples)
    counted = [s for s in data.samples if s not in calib]
    images = np.concatenate(list(iter_batches(counted, entry.preprocess, 32, 2)))
    labels = np.array([s.label for s in counted])
    healthy = 100.0 * float((triage.top1(onnx.load(str(int8)), images, threads=2) == labels).mean())
    return onnx.load(str(backend.fp32_graph(entry, options))), int8, images, labels, healthy


@pytest.mark.slow
@pytest.mark.parametrize("victim", [3, 20, 45])
def test_injected_break_ranks_the_damaged_layer_first_and_keeping_it_restores_top1(mnv2, victim, tmp_path):
    fp32, int8, images, labels, healthy = mnv2
    layer = quantizable_layers(fp32)[victim]
    assert break_weight_scales(int8, tmp_path / "broken.onnx", 8.0, {layer.node}) == 2  # weight, bias
    broken = onnx.load(str(tmp_path / "broken.onnx"))
    found = triage.triage(fp32, broken, images[::23][:16], 0, budget=None, threads=2, impact_layers=1)
    assert found.rows[0].layer == layer, found.message()
    assert found.rows[0].errors.single_sqnr < 0 < found.rows[1].errors.single_sqnr

    def top1(model, rows=slice(None)):
        return 100.0 * float((triage.top1(model, images[rows], threads=2) == labels[rows]).mean())

    damaged = top1(broken, slice(None, None, 10))
    repaired = top1(triage.keep_fp32(broken, fp32, [layer.node]))
    assert damaged < healthy - 20.0, "the injected break must cost accuracy"
    assert abs(repaired - healthy) <= 0.5, (healthy, damaged, repaired)


@pytest.mark.slow
def test_single_and_accumulated_error_of_a_real_layer_by_hand(mnv2, tmp_path):
    """blocks.1.0.conv_dw (conv 4): its input is conv 3's ReLU6 output, which the QDQ graph
    folds into the QuantizeLinear. Accumulated: both graphs augmented by onnxruntime's
    qdq_loss_debug, activations collected, its SQNR function. Single: the fp32 input
    quantized with the build's scale (numpy), the dequantized weights, torch's conv2d."""
    import torch
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations,
                                                         modify_model_output_intermediate_tensors)

    fp32, int8, images, *_ = mnv2
    x = images[:4]
    layer = quantizable_layers(fp32)[4]
    qdq = onnx.load(str(int8))
    mine = triage.layer_errors(fp32, qdq, quantizable_layers(fp32), x, threads=2)[0][layer.node]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = [{"input": x}]

        def get_next(self):
            return self.left.pop() if self.left else None

    acts = {}
    for name, path in (("fp32", None), ("int8", int8)):
        if path is None:
            path = tmp_path / "fp32.onnx"
            onnx.save(fp32, str(path))
        augmented = tmp_path / f"{name}-augmented.onnx"
        modify_model_output_intermediate_tensors(str(path), str(augmented), ["Conv"])
        acts[name] = collect_activations(str(augmented), Reader())
    f_node = next(n for n in fp32.graph.node if n.name == layer.node)
    q_node = next(n for n in qdq.graph.node if n.name == layer.node)
    reference = acts["fp32"][f_node.output[0]][0]
    assert mine.acc_sqnr == pytest.approx(ort_sqnr(reference, acts["int8"][q_node.output[0]][0]), abs=0.05)

    const = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
    producer = {o: n for n in qdq.graph.node for o in n.output}
    x_dq, w_dq, b_dq = (producer[i] for i in q_node.input)
    x_q = producer[x_dq.input[0]]
    scale, zero = const[x_q.input[1]], const[x_q.input[2]].astype(np.float32)

    def dequantized(dq):
        q = const[dq.input[0]].astype(np.float32) - const[dq.input[2]].astype(np.float32)
        return (q * const[dq.input[1]]).astype(np.float32)

    attrs = {a.name: helper.get_attribute_value(a) for a in q_node.attribute}
    channels = dequantized(w_dq).shape[1] * attrs["group"]
    x_in = acts["fp32"][x_q.input[0]][0]  # conv 3's output after ReLU6, flattened
    side = int(round((x_in.size / 4 / channels) ** 0.5))
    x_in = x_in.reshape(4, channels, side, side)
    x_int8 = (np.clip(np.round(x_in / scale) + zero, -128, 127) - zero) * scale
    single = torch.nn.functional.conv2d(
        torch.from_numpy(x_int8), torch.from_numpy(dequantized(w_dq)), torch.from_numpy(dequantized(b_dq)),
        stride=attrs["strides"], padding=attrs["pads"][:2], groups=attrs["group"]).numpy()
    assert mine.single_sqnr == pytest.approx(ort_sqnr(reference, single.ravel()), abs=0.05)
    assert mine.single_sqnr > mine.acc_sqnr + 1.0  # conv 4 also receives conv 0-3's error


@pytest.fixture(scope="module")
def effnet(shared_data, tmp_path_factory):
    """efficientnet_lite0 on the 650 images, 64 for calibration: its export and int8 graph are
    cached once for the gate test and the docs' command."""
    return _real(shared_data, tmp_path_factory, "efficientnet_lite", "timm-efficientnet_lite0", None, 64)


@pytest.mark.slow
def test_efficientnet_lite0_per_tensor_layers_kept_in_fp32_recover_in_the_gate(effnet, tmp_path):
    """int8-max per tensor loses ~5 points here. Triage sees half of the counted images (its
    own triage and held-out quarters); the gate then runs the build with the confirmed layers
    kept in fp32 (--int8-keep-fp32: nodes_to_exclude, calibrated again) and is scored on the
    other half, images used neither for calibration nor triage. Measured: 2.05 of the 4.78
    points lost come back (6 of its 293 images; half would be 7)."""
    from dataclasses import replace

    from pytest_vaccbench.run import Case, evaluate

    entry, data, options = effnet
    # onnxruntime's own MinMax calibrator: on this per-tensor build the fast path's int8-max
    # ranges give another int8 graph (78.50 top1 against 77.82), whose top-5 kept in fp32 do
    # not recover half the drop; recorded as an open difference in docs/int8.md
    options = replace(options, extra={**options.extra, "ort_calibrator": True})
    fp32 = evaluate(Case(entry, "onnxruntime", "fp32"), data, options)
    int8 = evaluate(Case(entry, "onnxruntime", "int8-max"), data, options)
    with np.load(int8.predictions) as run:
        saved = {name: run[name] for name in ("top5", "labels", "files", "digests", "source")}
    seen = tmp_path / "triage-half.npz"  # the images triage may use: every other counted one
    np.savez(seen, **{name: value[0::2] if value.ndim else value for name, value in saved.items()})
    found = triage.triage_case(entry, "int8-max", data, options, seen, Path(fp32.predictions),
                               budget=None, curve=True)
    r = found.recovery
    assert r is not None and r.order, found.message()
    keep = keep_option(r.order)  # every layer confirmed on triage's held-out quarter
    kept = evaluate(Case(entry, "onnxruntime", "int8-max", triage.keep_variant(keep)), data,
                    replace(options, extra={**options.extra, "int8_keep_fp32": keep}))

    unseen = set(saved["files"][1::2].tolist())

    def top1(result) -> float:
        with np.load(result.predictions) as p:
            rows = [i for i, f in enumerate(p["files"].tolist()) if f in unseen]
            return 100.0 * float((p["top5"][rows, 0] == p["labels"][rows]).mean())

    drop = top1(fp32) - top1(int8)
    assert 2.0 < drop < 8.0, drop
    assert top1(kept) - top1(int8) >= drop / 3, (top1(fp32), top1(int8), top1(kept), found.message())
