"""vamc build configs of both zoo generations: what is read, and the onnxruntime emulation
that mirrors them (per-channel, calibration count, layers kept in float, precision name,
the config's digest in the provenance)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from types import SimpleNamespace

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")
from onnx import numpy_helper  # noqa: E402

from pytest_vaccbench.backends import RunOptions  # noqa: E402
from pytest_vaccbench.backends.onnxruntime import (BuildConfigWarning, OnnxRuntimeBackend,  # noqa: E402
                                                   OrtSettings, build_config)
from pytest_vaccbench.backends.compiled import parse_model_dir  # noqa: E402
from pytest_vaccbench.build_config import read_build_config  # noqa: E402
from pytest_vaccbench.dataset import resolve  # noqa: E402
from pytest_vaccbench.errors import BackendError, VaccbenchError  # noqa: E402
from pytest_vaccbench.export import adhoc_entry  # noqa: E402
from pytest_vaccbench.layers import quantizable_layers  # noqa: E402
from pytest_vaccbench.run import Case, evaluate  # noqa: E402
from test_thresholds import conv_net  # noqa: E402

# The 2023 layout (`vamc build`), as the zoo's build/*.yaml files are written.
ZOO_2023 = """\
model:
  name: convnet
  inputs:
    input: [1, 3, 32, 32]
  checkpoint: /data/weights/convnet.onnx

engine:
  type: vacc
  common:
    do_quantization: true
  add_extra_ops_to_graph:
    type: null
  calibration:
    quant_mode: kl_divergence
    per_channel: true
    skip_conv_layers: [0, 2]
    ops_usingfp: [Softmax]

dataset:
  path: /data/ILSVRC2012_img_calib
  sampler:
    suffix: JPEG
    get_data_num: 4
  transform_ops:
    - type: DecodeImage
    - type: Resize
      size: [36, 36]
    - type: CenterCrop
      crop_size: [32, 32]
    - type: Normalize
      mean: [0.485, 0.456, 0.406]
      std: [0.229, 0.224, 0.225]
    - type: ToTensor

workspace:
  work_dir: ./deploy_weights/
  enable_ir: false
  save_log: true
"""

# The newer layout (`vamc compile`).
ZOO_NEWER = """\
name: convnet_int8
frontend:
  shape:
    input: [1, 3, 32, 32]
  type: onnx
  checkpoint: /data/weights/convnet.onnx
  dtype: fp32
backend:
  type: tvm_vacc
  dtype: int8
  quantize:
    calibrate_mode: percentile
    quantize_per_channel: true
    skip_conv_layers: [1]
    skip_matmul_layers: [0]
    calibrate_chunk_by: -1
graph:
  extra_ops:
    type: softmax
dataset:
  type: tvm
  path: /data/ILSVRC2012_img_calib
  sampler:
    suffix: JPEG
    get_data_num: 3
  process_ops:
    - type: DecodeImage
    - type: Resize
      size: [36, 36]
    - type: CenterCrop
      crop_size: [32, 32]
    - type: Normalize
      mean: [123.675, 116.28, 103.53]
      std: [58.395, 57.12, 57.375]
      div255: False
    - type: ToTensor
workspace:
  path: ./deploy_weights/
"""

GENERATIONS = {
    "2023": (ZOO_2023, "int8-kl_divergence", 4, (0, 2), ()),
    "newer": (ZOO_NEWER, "int8-percentile", 3, (1,), (0,)),
}


@pytest.fixture(scope="module")
def photos():
    pytest.importorskip("skimage")
    return resolve("skimage-photos")


def weight_dequantized(model) -> dict[str, bool]:
    """Per Conv/Gemm node: whether its weight input comes out of a DequantizeLinear."""
    producers = {o: n for n in model.graph.node for o in n.output}
    return {n.name: n.input[1] in producers and producers[n.input[1]].op_type == "DequantizeLinear"
            for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}


@pytest.mark.parametrize("generation", sorted(GENERATIONS))
def test_build_config_is_read(tmp_path, generation):
    text, precision, count, convs, matmuls = GENERATIONS[generation]
    path = tmp_path / "build.yaml"
    path.write_text(text)
    build = read_build_config(path)
    assert (build.generation, build.precision, build.per_channel, build.calib_images) == \
        (generation, precision, True, count)
    assert (build.skip_conv_layers, build.skip_matmul_layers) == (convs, matmuls)
    assert build.digest == hashlib.sha256(text.encode()).hexdigest()
    spec = build.calibration_spec(adhoc_entry("timm", "convnet", 32).preprocess)
    assert (spec.resize, spec.resize_mode, spec.crop) == (36, "square", 32)
    if generation == "newer":  # mean/std in 0..255 units (div255: False)
        assert spec.pixel_scale == 1.0 and spec.mean == (123.675, 116.28, 103.53)
        assert build.unmirrored == ()
    else:
        assert spec.pixel_scale == 255.0 and spec.std == (0.229, 0.224, 0.225)
        assert build.unmirrored == ("engine.calibration.ops_usingfp: ['Softmax']",)


@pytest.mark.parametrize("generation", sorted(GENERATIONS))
def test_emulation_mirrors_the_build(tmp_path, photos, generation):
    """Per-channel weights, the calibration count, the layers kept in float (no
    DequantizeLinear on their weights), the precision name vamp gives the compiled model,
    the config's digest in the provenance, and a warning for what is not mirrored."""
    text, precision, count, convs, matmuls = GENERATIONS[generation]
    config = tmp_path / "build.yaml"
    config.write_text(text)
    source = conv_net(tmp_path / "convnet.onnx")
    entry = replace(adhoc_entry("timm", "convnet", 32), key="timm-convnet", onnx=str(source))
    options = RunOptions(weights_dir=tmp_path, cache_dir=tmp_path / "cache", batch_size=4, threads=1,
                         workers=1, extra={"vamc_config": str(config)})
    backend = OnnxRuntimeBackend()
    assert backend.precisions_for(entry, None, options) == (precision,)
    assert parse_model_dir(f"convnet-{precision.replace('fp16', 'fp16-none')}-3_32_32-vacc")[1] == precision

    expect_warning = pytest.warns(BuildConfigWarning, match=r"does not mirror engine\.calibration\.ops_usingfp") \
        if generation == "2023" else _no_build_warning()
    with expect_warning:
        result = evaluate(Case(entry, "onnxruntime", precision), photos, options)
    assert (result.precision, result.excluded, result.n) == (precision, count, len(photos.samples) - count)
    assert result.options["vamc_config_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert result.options["vamc_config"] == str(config)

    model = onnx.load(str(backend.graph(entry, precision, photos, options)))
    layers = quantizable_layers(model)
    skipped = {l.node for l in layers if (l.kind == "conv" and l.index in convs)
               or (l.kind == "matmul" and l.index in matmuls)}
    quantized = weight_dequantized(model)
    assert {name for name, q in quantized.items() if not q} == skipped and skipped
    assert any(quantized.values())
    scales = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized")
                 and scales.get(n.input[0]) is not None and scales[n.input[0]].ndim == 4]
    assert weight_dq and all(scales[n.input[1]].shape == (8,) for n in weight_dq)  # per output channel


class _no_build_warning:
    def __enter__(self):
        import warnings

        self.catcher = warnings.catch_warnings(record=True)
        self.caught = self.catcher.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self.catcher.__exit__(*exc)
        assert not [w for w in self.caught if issubclass(w.category, BuildConfigWarning)]


def test_per_channel_is_the_default_and_per_tensor_switches(tmp_path, photos):
    source = conv_net(tmp_path / "convnet.onnx")
    entry = replace(adhoc_entry("timm", "convnet", 32), key="timm-convnet", onnx=str(source))
    backend = OnnxRuntimeBackend()
    base = dict(weights_dir=tmp_path, cache_dir=tmp_path / "cache", batch_size=4, threads=1, workers=1)
    default = RunOptions(**base, extra={"calib_images": 3})
    per_tensor = RunOptions(**base, extra={"calib_images": 3, "int8_per_tensor": True})
    for options, shape in ((default, (8,)), (per_tensor, ())):
        model = onnx.load(str(backend.graph(entry, "int8-max", photos, options)))
        scales = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        conv_scales = {scales[n.input[1]].shape for n in model.graph.node if n.op_type == "DequantizeLinear"
                       and n.input[0].endswith("weight_quantized") and "fc" not in n.input[0]}
        assert conv_scales == {shape}


def test_baseline_build_field_is_relative_to_the_baseline_file(tmp_path):
    (tmp_path / "builds").mkdir()
    (tmp_path / "builds" / "convnet.yaml").write_text(ZOO_NEWER)
    entry = SimpleNamespace(build="builds/convnet.yaml", baseline_path=tmp_path / "family.yaml",
                            test_name="family/convnet", where=f"{tmp_path / 'family.yaml'}:7 (models.convnet)")
    assert build_config(entry, OrtSettings()).path == tmp_path / "builds" / "convnet.yaml"
    given = tmp_path / "other.yaml"
    given.write_text(ZOO_2023)
    assert build_config(entry, OrtSettings(vamc_config=given)).generation == "2023"  # the option wins
    missing = SimpleNamespace(**{**vars(entry), "build": "builds/nowhere.yaml"})
    with pytest.raises(BackendError, match=r"build config 'builds/nowhere.yaml' of family/convnet not found: "
                                           r".*builds/nowhere.yaml \(`build:` at .*family.yaml:7"):
        build_config(missing, OrtSettings())


@pytest.mark.parametrize("text, message", [
    ("just: a mapping\n", "not a vamc build config: no `backend:` (newer layout) or `engine:` (2023 layout)"),
    ("backend: {dtype: int4}\n", "dtype 'int4' is not int8 or fp16"),
    ("backend: {quantize: {calibrate_mode: histogram}}\n", "calibration mode 'histogram' is not one of"),
    ("engine: {calibration: {skip_conv_layers: [a]}}\n", "skip_conv_layers must be a list of layer indices"),
    ("engine: {calibration: {}}\ndataset: {sampler: {get_data_num: 0}}\n", "get_data_num must be a positive count"),
    ("backend: [1, 2\n", "YAML syntax error"),
])
def test_bad_build_configs_name_the_file(tmp_path, text, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(VaccbenchError) as info:
        read_build_config(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_fp16_build_and_misspelt_mode(tmp_path):
    path = tmp_path / "fp16.yaml"
    path.write_text(ZOO_2023.replace("do_quantization: true", "do_quantization: false"))
    assert read_build_config(path).precision == "fp16"
    path.write_text(ZOO_NEWER.replace("calibrate_mode: percentile", "alibrate_mode: mse"))
    build = read_build_config(path)
    assert build.precision == "int8-mse" and "alibrate_mode" in build.unmirrored[0]
    assert build.skip_matmul_layers == (0,)


# -- the command line -------------------------------------------------------------------------
def test_int8_options_at_startup(pytester):
    """A bad --vamc-config or contradictory flags stop the run at startup with one line;
    --int8-per-channel still works but says it is the default now."""
    (pytester.path / "suites").mkdir()
    bad = pytester.path / "bad.yaml"
    bad.write_text("backend: {dtype: int4}\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--vamc-config={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --vamc-config: {bad}: dtype 'int4' is not int8 or fp16"])
    result = pytester.runpytest("-p", "no:cacheprovider", "--int8-per-channel", "--int8-per-tensor")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --int8-per-channel and --int8-per-tensor contradict each other*"])
    result = pytester.runpytest("-p", "no:cacheprovider", "--int8-per-channel", "-W", "default")
    result.stdout.fnmatch_lines(["*--int8-per-channel is deprecated: per-channel weights are the default*"])


def test_calibration_reads_the_evaluations_image_cache(tmp_path, photos, monkeypatch):
    """An int8 run decodes each image once: calibration takes its crops from the image cache
    entry that evaluation then reads, not from a decode of its own."""
    import pytest_vaccbench.backends as backends_mod

    decoded = []
    real = backends_mod.load_crop
    monkeypatch.setattr(backends_mod, "load_crop", lambda path, *a, **k: decoded.append(path) or real(path, *a, **k))
    source = conv_net(tmp_path / "convnet.onnx")
    entry = replace(adhoc_entry("timm", "convnet", 32), key="timm-convnet", onnx=str(source))
    options = RunOptions(weights_dir=tmp_path, cache_dir=tmp_path / "cache", batch_size=4, threads=1,
                         workers=1, extra={"calib_images": 3})
    result = evaluate(Case(entry, "onnxruntime", "int8-percentile"), photos, options)
    assert result.excluded == 3
    assert sorted(decoded) == sorted(s.path for s in photos.samples)  # each image once


def test_layers_kept_in_float_need_named_nodes(tmp_path, photos):
    source = conv_net(tmp_path / "convnet.onnx")
    model = onnx.load(str(source))
    for node in model.graph.node:
        node.name = ""
    onnx.save(model, str(source))
    config = tmp_path / "build.yaml"
    config.write_text(ZOO_NEWER)
    entry = replace(adhoc_entry("timm", "convnet", 32), key="timm-convnet", onnx=str(source))
    options = RunOptions(weights_dir=tmp_path, cache_dir=tmp_path / "cache", batch_size=4, threads=1,
                         workers=1, extra={"vamc_config": str(config)})
    with pytest.raises(BackendError, match=r"cannot keep layers \['Conv_2', 'Gemm_7'\] in float: their nodes "
                                           r"have no names"):
        OnnxRuntimeBackend().graph(entry, "int8-percentile", photos, options)
