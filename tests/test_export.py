"""`vaccbench export` and the export cache on small timm models (random weights saved to a file)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from pytest_vaccbench import export  # noqa: E402
from pytest_vaccbench.backends import RunOptions  # noqa: E402
from pytest_vaccbench.cli import main  # noqa: E402
from pytest_vaccbench.dataset import resolve  # noqa: E402
from pytest_vaccbench.export import adhoc_entry  # noqa: E402
from pytest_vaccbench.run import Case, evaluate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64



@pytest.fixture(scope="module")
def small_weights(tmp_path_factory) -> Path:
    """Random mobilenetv2_050 weights saved as a state dict, like a user's checkpoint."""
    import timm

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mobilenetv2_050.pth"
    torch.save(timm.create_model("mobilenetv2_050", pretrained=False).state_dict(), path)
    return path


@pytest.mark.slow
def test_export_cli_writes_the_zoo_file_and_matches_pytorch(tmp_path, small_weights, capsys):
    assert main(["export", "--model-library", "timm", "--model-name", "mobilenetv2_050",
                 "--pretrained-weights", str(small_weights), "--size", "96",
                 "--save-dir", str(tmp_path)]) == 0
    path = tmp_path / "mobilenetv2_050_96.onnx"
    assert str(path) in capsys.readouterr().out
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 11
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert model.graph.input[0].name == "input" and dims == [1, 3, 96, 96]
    import onnxruntime
    import timm

    reference = timm.create_model("mobilenetv2_050", pretrained=False)
    reference.load_state_dict(torch.load(small_weights))
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        want = reference.eval()(x).numpy()
    got = onnxruntime.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    assert np.abs(got - want).max() <= 1e-3  # the weights were loaded, not left at random init


@pytest.mark.slow
def test_export_repvgg_in_deploy_form(tmp_path):
    """Deploy form: one 3x3 conv per block (the 1x1 and identity branches fused into it)."""
    counts = {}
    for form in ("deploy", "train"):
        out = tmp_path / form
        args = ["export", "--model-library", "timm", "--model-name", "repvgg_a0", "--size", "64",
                "--save-dir", str(out), "--dynamic-batch"]
        assert main(args + (["--train-form"] if form == "train" else [])) == 0
        model = onnx.load(str(out / "repvgg_a0_64.onnx"))
        counts[form] = sum(node.op_type == "Conv" for node in model.graph.node)
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert counts["deploy"] == 22  # RepVGG-A0: 1 + 2 + 4 + 14 + 1 blocks
    assert counts["train"] == 2 * 22


def test_export_errors(tmp_path, capsys):
    assert main(["export", "--model-library", "timm", "--model-name", "mobilenetv2_050",
                 "--pretrained-weights", str(tmp_path / "missing.pth")]) == 2
    assert f"{tmp_path / 'missing.pth'}: weight file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert main(["export", "--model-library", "timm", "--model-name", "mobilenetv2_050",
                 "--pretrained-weights", str(bad), "--save-dir", str(tmp_path)]) == 2
    assert f"{bad}: cannot read weights" in capsys.readouterr().err
    assert main(["export", "no-such-model", "--baselines", str(ROOT / "baselines")]) == 2
    assert "no baseline model(s) named 'no-such-model'" in capsys.readouterr().err


@pytest.mark.slow
def test_export_cache_exports_once_per_weights(tmp_path, small_weights, monkeypatch):
    entry = replace(adhoc_entry("timm", "mobilenetv2_050", SIZE), key="timm-mobilenetv2_050")
    first = export.cached_export(entry, small_weights, tmp_path)
    assert first.is_file() and "opset11" in str(first) and first.name == f"mobilenetv2_050_{SIZE}.onnx"

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    with monkeypatch.context() as patch:
        patch.setattr(export, "export_entry", no_export)
        export._DIGESTS.clear()  # a new process: the digest comes from digests.json
        patch.setattr(export.hashlib, "sha256", no_export)
        assert export.cached_export(entry, small_weights, tmp_path) == first
    other = tmp_path / "other.pth"
    state = torch.load(small_weights)
    state["conv_stem.weight"] = state["conv_stem.weight"] * 2
    torch.save(state, other)
    second = export.cached_export(entry, other, tmp_path)
    assert second != first and second.is_file()


def test_backend_exports_on_demand(tmp_path, small_weights):
    pytest.importorskip("skimage")
    photos = resolve("skimage-photos")
    entry = replace(adhoc_entry("timm", "mobilenetv2_050", SIZE), key="timm-mobilenetv2_050",
                    weights=replace(adhoc_entry("timm", "x", SIZE).weights, file=str(small_weights)))
    opts = RunOptions(weights_dir=tmp_path, cache_dir=tmp_path / "cache", batch_size=4, threads=1)
    result = evaluate(Case(entry, "onnxruntime", "fp32"), photos, opts)
    assert result.n == len(photos.samples)
    assert len(list((tmp_path / "cache" / "onnx").rglob("*.onnx"))) == 1
