"""Real MobileNetV2 weights through the vamp test double and through PyTorch (slow: ~1 min).

Two independent paths over the same 100 real ImageNet val images and the model zoo's
mobilenetv2 vdsp_params JSON:
- `vamp`: npz files (image2npz) -> tests/vamp_stub.py -> the vdsp emulation of each npz
  -> ONNX Runtime on the exported graph -> output_NNNNNN.npz -> scores by index;
- `reference --preprocess=vdsp:...`: JPEG -> the vdsp emulation -> timm in PyTorch.
They must agree to within one image: this checks the npz contract, output order and class
indices of the vamp backend end to end with real accuracy figures.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import vamp_standin  # noqa: E402

pytestmark = pytest.mark.slow  # real models on the shared images: the slow tier

# imported before pytester snapshots sys.modules (native modules load once per process)
pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
ZOO_JSON = ROOT / "pytest_vaccbench" / "data" / "vdsp" / "timm-mobilenetv2_100-vdsp_params.json"
MODEL = "local-mobilenetv2_100-tvq"


@pytest.fixture(scope="module")
def stand_in_models(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pytest_vaccbench.baselines import load_family

    entry = load_family(ROOT / "baselines" / "mobilenet_v2.yaml").models[MODEL]
    root = tmp_path_factory.mktemp("vamp-models")
    onnx = vamp_standin.export_onnx(entry, shared_data / "weights" / entry.weights.file,
                                    root / ".export" / "model.onnx")
    vamp_standin.install(root, MODEL, onnx, ZOO_JSON, ["fp16"], 224)
    return root


def test_vamp_stand_in_agrees_with_pytorch_on_real_images(pytester: pytest.Pytester, shared_data: Path,
                                                          stand_in_models: Path) -> None:
    from pytest_vaccbench.baselines import read_yaml

    (pytester.path / "baselines").mkdir()
    shutil.copy(ROOT / "baselines" / "mobilenet_v2.yaml", pytester.path / "baselines")
    pytester.makefile(".yaml", **{"suites/real": f"baselines: ../baselines\nfamilies: [mobilenet_v2]\n"
                                                 f"models: [{MODEL}]\n"})
    result = pytester.runpytest(
        "suites", "-p", "no:cacheprovider", "--backend=vamp,reference", f"--preprocess=vdsp:{ZOO_JSON}",
        f"--dataset={shared_data / 'ilsvrc2012-val-subset' / 'images'}", "--limit=100",
        "--dataset-name=val-subset-100", f"--weights-dir={shared_data / 'weights'}", f"--vamp-root={stand_in_models}",
        f"--vamp-bin={vamp_standin.stub_command()}", f"--vaccbench-cache={pytester.path / 'cache'}",
        "--update-baselines")
    result.assert_outcomes(passed=2)
    expected = read_yaml(pytester.path / "baselines" / "mobilenet_v2.yaml")
    runs = expected["extra_models"][MODEL]["expected"]["val-subset-100"]
    vamp, torch_run = runs["vamp/fp16"], runs["reference/fp32+vdsp-timm-mobilenetv2_100"]
    assert vamp["n"] == torch_run["n"] == 100
    assert abs(vamp["top1"] - torch_run["top1"]) <= 1.0 and abs(vamp["top5"] - torch_run["top5"]) <= 1.0
    assert 60 < vamp["top1"] <= 100  # a real model on real images: not chance (0.1 %)
