"""The onnxruntime backend and `vaccbench export` on small models: export options, the export
cache, ready graphs without torch, and the clear errors for bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from pytest_vaccbench.backends import RunOptions, iter_batches  # noqa: E402
from pytest_vaccbench.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from pytest_vaccbench.dataset import resolve  # noqa: E402
from pytest_vaccbench.errors import BackendError  # noqa: E402
from pytest_vaccbench.export import adhoc_entry  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64


@pytest.fixture(scope="module")
def photos():
    pytest.importorskip("skimage")
    return resolve("skimage-photos")


def options(tmp_path: Path, **extra) -> RunOptions:
    return RunOptions(weights_dir=tmp_path, cache_dir=tmp_path / "cache", batch_size=4, threads=1,
                      workers=1, extra=extra)


def linear_graph(path: Path, weight: np.ndarray, size: int = SIZE, batch: int | str = "batch") -> Path:
    """A hand-built classifier: per-channel mean of the image times `weight` (3, classes)."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["features"]),
         helper.make_node("MatMul", ["features", "weight"], ["output"])],
        "linear", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, weight.shape[1]])],
        [numpy_helper.from_array(weight.astype(np.float32), "weight")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def linear_entry(key: str = "timm-linear", **changes):
    return replace(adhoc_entry("timm", "linear", SIZE), key=key, **changes)


# -- ready graphs -------------------------------------------------------------------------
def test_1001_outputs_drop_the_background_class(tmp_path, photos):
    """Column 0 (background) always wins; the backend must score the 1000 classes after it."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3, 1001))
    weight[:, 0] = 1e3
    onnx_dir = tmp_path / "graphs"
    onnx_dir.mkdir()
    linear_graph(onnx_dir / "timm-linear.onnx", weight)
    entry = linear_entry()
    scores = OnnxRuntimeBackend().scores(entry, "fp32", photos, options(tmp_path, onnx_dir=onnx_dir))
    batch = np.concatenate(list(iter_batches(photos.samples, entry.preprocess, 8, 1)))
    expected = batch.mean(axis=(2, 3)) @ weight[:, 1:]  # independent: numpy, no onnxruntime
    assert scores.shape == (len(photos.samples), 1000)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-3)


def test_entry_onnx_field_and_zoo_file_names(tmp_path, photos):
    weight = np.random.default_rng(1).normal(size=(3, 1000))
    backend = OnnxRuntimeBackend()
    zoo = linear_graph(tmp_path / f"linear_{SIZE}.onnx", weight, batch=1)  # the zoo's name, batch 1
    opts = options(tmp_path, onnx_dir=tmp_path)
    assert backend.given_graph(linear_entry(), opts)[0] == zoo
    # a model whose weights are not the library's (mmcls) never takes the zoo's timm export
    assert backend.given_graph(linear_entry("mmcls-linear", sources=("mmcls",)), opts)[0] is None
    named = linear_entry("timm-other", onnx=str(zoo))
    assert backend.skip_reason(named, "fp32", options(tmp_path)) is None
    missing = linear_entry(onnx="nowhere.onnx")
    assert "nowhere.onnx" in backend.skip_reason(missing, "fp32", opts)
    # a fixed batch-1 graph runs with batch size 1 whatever --batch-size says
    scores = backend.scores(named, "fp32", photos, options(tmp_path))
    assert scores.shape == (len(photos.samples), 1000)


def test_ready_graph_runs_without_torch(tmp_path, photos):
    """fp32 and fp16 from a ready .onnx import neither torch nor timm nor torchvision."""
    linear_graph(tmp_path / "timm-linear.onnx", np.random.default_rng(2).normal(size=(3, 1000)))
    script = textwrap.dedent(f"""
        import sys
        for name in ("torch", "timm", "torchvision"):
            sys.modules[name] = None  # any import of them raises ImportError
        from dataclasses import replace
        from pathlib import Path
        from pytest_vaccbench.backends import RunOptions
        from pytest_vaccbench.dataset import resolve
        from pytest_vaccbench.export import adhoc_entry
        from pytest_vaccbench.run import Case, evaluate
        entry = replace(adhoc_entry("timm", "linear", {SIZE}), key="timm-linear")
        opts = RunOptions(Path({str(tmp_path)!r}), Path({str(tmp_path / 'cache')!r}), batch_size=4,
                          threads=1, workers=1, extra={{"onnx_dir": {str(tmp_path)!r}}})
        for precision in ("fp32", "fp16"):
            result = evaluate(Case(entry, "onnxruntime", precision), resolve("skimage-photos"), opts)
            print(precision, result.n)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["fp32", str(len(photos.samples)), "fp16", str(len(photos.samples))]


# -- bad inputs -----------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_or_truncated_onnx_is_a_clear_error(tmp_path, photos, damage, precision):
    path = linear_graph(tmp_path / "timm-linear.onnx", np.ones((3, 1000)))
    data = path.read_bytes()
    path.write_bytes(b"\x00not a model\xff" * 100 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(BackendError, match="corrupt or truncated") as info:
        OnnxRuntimeBackend().scores(linear_entry(), precision, photos, options(tmp_path, onnx_dir=tmp_path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("precision", ["fp32", "int8-max"])
def test_input_size_mismatch_names_the_file_and_the_baseline(tmp_path, photos, precision):
    path = linear_graph(tmp_path / "timm-linear.onnx", np.ones((3, 1000)), size=SIZE + 32)
    with pytest.raises(BackendError) as info:
        OnnxRuntimeBackend().scores(linear_entry(), precision, photos,
                                    options(tmp_path, onnx_dir=tmp_path, calib_images=2))
    message = str(info.value)
    assert str(path) in message and f"3, {SIZE + 32}, {SIZE + 32}" in message
    assert f"needs (batch, 3, {SIZE}, {SIZE})" in message


def test_absent_execution_provider_lists_the_available_ones(tmp_path, photos):
    import onnxruntime

    linear_graph(tmp_path / "timm-linear.onnx", np.ones((3, 1000)))
    opts = options(tmp_path, onnx_dir=tmp_path, ort_provider="cuda")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendError, match="CUDAExecutionProvider.*not available.*CPUExecutionProvider"):
        OnnxRuntimeBackend().scores(linear_entry(), "fp32", photos, opts)


def test_unwritable_cache_dir_is_a_clear_error(tmp_path, photos):
    linear_graph(tmp_path / "timm-linear.onnx", np.ones((3, 1000)))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    opts = replace(options(tmp_path, onnx_dir=tmp_path), cache_dir=blocker / "cache")
    with pytest.raises(BackendError, match="cannot write to this directory") as info:
        OnnxRuntimeBackend().scores(linear_entry(), "fp16", photos, opts)
    assert str(blocker / "cache") in str(info.value)
