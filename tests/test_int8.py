"""int8 emulation: the calibration set, the calibration images left out of the count, the
quantized-model cache, and a broken quantized model whose accuracy collapses."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench.calibration import calibration_set, coverage
from pytest_vaccbench.cli import main
from pytest_vaccbench.dataset import Dataset, Sample, limit, read_label_file, resolve

ROOT = Path(__file__).resolve().parents[1]


def made_up_dataset(per_class: dict[int, int]) -> Dataset:
    samples = tuple(Sample(Path(f"/data/img_{label:03d}_{i}.JPEG"), label)
                    for label, count in sorted(per_class.items()) for i in range(count))
    return Dataset("made-up", Path("/data"), "flat", samples, len(samples))


def test_calibration_set_covers_every_class_then_fills_evenly():
    data = made_up_dataset({0: 5, 3: 1, 7: 4, 9: 2})
    calib = calibration_set(data, 6)
    counts = Counter(s.label for s in calib.samples)
    assert len(calib.samples) == 6 and set(counts) == {0, 3, 7, 9}
    assert counts == {0: 2, 3: 1, 7: 2, 9: 1}  # round 1: one each (4); round 2: classes 0, 7
    assert list(calib.samples) == [s for s in data.samples if s in set(calib.samples)]  # data order
    assert calibration_set(data, 6) == calib  # deterministic
    assert calibration_set(data, 100).samples == data.samples
    assert coverage(calibration_set(data, 3), data).describe() == \
        "3 calibration images covering 3 of the 4 classes present (fewer images than classes)"
    assert coverage(calib, data).complete
    with pytest.raises(ValueError):
        calibration_set(data, 0)


def test_calibration_draw_is_independent_of_limit():
    data = made_up_dataset({label: 8 for label in range(10)})
    calib, limited = calibration_set(data, 40), limit(data, 40)
    assert Counter(s.label for s in calib.samples) == Counter(s.label for s in limited.samples)
    assert set(calib.samples) != set(limited.samples)


def test_calib_set_command_writes_a_label_file(tmp_path, capsys):
    for wnid, name in (("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "shark")):
        for i in range(3):
            (tmp_path / f"{wnid}_{name}{i}.JPEG").write_bytes(b"x" * (i + 1))
    out = tmp_path / "calib.txt"
    assert main(["calib-set", str(tmp_path), "-n", "4", "--output", str(out)]) == 0
    assert "4 calibration images covering every class present" in capsys.readouterr().out
    labels = read_label_file(out)
    assert len(labels) == 4 and sorted(Counter(labels.values()).values()) == [1, 1, 2]
    assert all((tmp_path / name).is_file() for name in labels)


# -- real weights -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tvq(shared_data, tmp_path_factory):
    """mobilenetv2 (float weights from torchvision's int8 model) on 160 subset images."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime.quantization")
    from pytest_vaccbench.backends import RunOptions
    from pytest_vaccbench.baselines import load_family

    entry = load_family(ROOT / "baselines" / "mobilenet_v2.yaml").models["local-mobilenetv2_100-tvq"]
    data = limit(resolve(str(shared_data / "ilsvrc2012-val-subset")), 160)
    options = RunOptions(weights_dir=shared_data / "weights", cache_dir=tmp_path_factory.mktemp("cache"),
                         batch_size=32, threads=2, workers=2, extra={"calib_images": 32})
    return entry, data, options


def top1_by_file(result) -> dict[str, int]:
    saved = np.load(result.predictions)
    return dict(zip(saved["files"].tolist(), saved["top5"][:, 0].tolist()))


def agreement(a: dict[str, int], b: dict[str, int]) -> float:
    shared = sorted(set(a) & set(b))
    return 100.0 * sum(a[f] == b[f] for f in shared) / len(shared)


@pytest.mark.slow
def test_int8_excludes_calibration_images_and_stays_close_to_fp32(tvq, monkeypatch):
    from pytest_vaccbench.backends.onnxruntime import OnnxRuntimeBackend
    from pytest_vaccbench.run import Case, evaluate

    entry, data, options = tvq
    fp32 = evaluate(Case(entry, "onnxruntime", "fp32"), data, options)
    int8 = evaluate(Case(entry, "onnxruntime", "int8-max"), data, options)
    calib = {s.path.name for s in calibration_set(data, 32).samples}
    assert (fp32.n, fp32.excluded) == (160, 0) and (int8.n, int8.excluded) == (128, 32)
    assert not calib & set(top1_by_file(int8))  # none of the calibration images was counted
    assert agreement(top1_by_file(int8), top1_by_file(fp32)) >= 90.0
    assert int8.top1 > 70.0

    import onnx

    graph = OnnxRuntimeBackend().graph(entry, "int8-max", data, options)
    ops = Counter(node.op_type for node in onnx.load(str(graph)).graph.node)
    assert ops["QuantizeLinear"] > 50 and ops["DequantizeLinear"] > 100  # QDQ format

    import onnxruntime.quantization

    def no_quantize(*args, **kwargs):
        raise AssertionError("quantized again instead of using the cache")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", no_quantize)
    again = evaluate(Case(entry, "onnxruntime", "int8-max"), data, options)
    assert again.correct1 == int8.correct1
    include = replace(options, extra={"calib_images": 32, "calib_include": True})
    included = evaluate(Case(entry, "onnxruntime", "int8-max"), data, include)
    assert (included.n, included.excluded) == (160, 0)


@pytest.mark.slow
@pytest.mark.parametrize("factor", [0.0, 1e3], ids=["zeroed", "mis-scaled"])
def test_broken_weight_scales_collapse_accuracy(tvq, factor):
    from broken_int8 import break_weight_scales
    from pytest_vaccbench.backends.onnxruntime import OnnxRuntimeBackend
    from pytest_vaccbench.run import Case, evaluate

    entry, data, options = tvq
    fp32 = evaluate(Case(entry, "onnxruntime", "fp32"), data, options)
    graph = OnnxRuntimeBackend().graph(entry, "int8-max", data, options)
    good = graph.read_bytes()
    try:
        assert break_weight_scales(graph, graph, factor) > 50  # every conv and the classifier
        broken = evaluate(Case(entry, "onnxruntime", "int8-max"), data, options)
    finally:
        graph.write_bytes(good)  # the fixture's cache serves the other tests
    assert fp32.top1 > 70.0
    assert broken.top1 < 5.0, "a broken int8 build must score near chance"
    assert agreement(top1_by_file(broken), top1_by_file(fp32)) < 10.0


@pytest.mark.slow
def test_per_channel_weights(tvq):
    """Per-channel QDQ (the default) needs opset 13 (DequantizeLinear's axis): the opset-11
    export is upgraded."""
    import onnx
    from onnx import numpy_helper

    from pytest_vaccbench.backends.onnxruntime import OnnxRuntimeBackend
    from pytest_vaccbench.run import Case, evaluate

    entry, data, options = tvq
    per_channel = options
    fp32 = evaluate(Case(entry, "onnxruntime", "fp32"), data, options)
    int8 = evaluate(Case(entry, "onnxruntime", "int8-max"), data, per_channel)
    assert agreement(top1_by_file(int8), top1_by_file(fp32)) >= 90.0
    model = onnx.load(str(OnnxRuntimeBackend().graph(entry, "int8-max", data, per_channel)))
    scales = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    conv_weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                    and n.input[0].endswith("weight_quantized")]
    assert conv_weights and all(scales[n.input[1]].ndim == 1 and scales[n.input[1]].size > 1
                                for n in conv_weights)


@pytest.mark.slow
def test_plugin_reports_and_records_the_excluded_images(tvq, pytester, shared_data):
    """Through the plugin: the summary says how many calibration images were not counted,
    and --update-baselines records it with the result."""
    import shutil

    from pytest_vaccbench.baselines import load_family

    _, _, options = tvq  # its cache holds the export and the int8-max graph already
    shutil.copytree(ROOT / "baselines", pytester.path / "baselines")
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "tvq.yaml").write_text(
        "baselines: ../baselines\nfamilies: [mobilenet_v2]\nmodels: [local-mobilenetv2_100-tvq]\n")
    result = pytester.runpytest_subprocess(
        "suites/tvq.yaml", "-p", "no:cacheprovider", "--backend=onnxruntime", "--precision=int8-max",
        f"--dataset={shared_data / 'ilsvrc2012-val-subset'}", "--limit=160", "--calib-images=32",
        "--dataset-name=val-subset-160", f"--weights-dir={shared_data / 'weights'}", f"--vaccbench-cache={options.cache_dir}",
        "--update-baselines")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*local-mobilenetv2_100-tvq onnxruntime/int8-max: 32 calibration "
                                 "images excluded from the count (n=128; --calib-include counts them)"])
    entry = load_family(pytester.path / "baselines" / "mobilenet_v2.yaml").models["local-mobilenetv2_100-tvq"]
    recorded = entry.expected["val-subset-160"]["onnxruntime/int8-max"]
    assert (recorded["n"], recorded["calibration_excluded"]) == (128, 32)
