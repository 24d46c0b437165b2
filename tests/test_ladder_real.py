"""The loss ladder with real weights and images (../shared/data): slow.

- Each step's numbers are those of the single test it stands for: the plugin runs the five
  tests (reference/fp32, and with --preprocess=vdsp the reference, onnxruntime fp32, fp16
  and int8 ones) and its JSON report's predictions, counted on the ladder's images, must give
  the ladder's rows.
- The vamp test double with a device-only loss (VAMP_STUB_LOSS) makes the ladder name the
  device step, and so does the same run written as the zoo's result.txt (--device vamp:FILE);
  vsx's (VSX_DOUBLE_LOSS) through `vaccbench explain --device vsx`.
- On photos wider than tall, the zoo's 256x256 stretch makes it name the device's
  preprocessing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench import ladder
from pytest_vaccbench.backends import RunOptions
from pytest_vaccbench.baselines import load_family
from pytest_vaccbench.dataset import limit, resolve
from pytest_vaccbench.resultfiles import write_result_txt
from pytest_vaccbench.run import Case, predictions_path
from pytest_vaccbench.vdsp import variant_name

pytestmark = pytest.mark.slow
pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
import result_files as rf  # noqa: E402
import vamp_standin  # noqa: E402

LIMIT, CALIB = 100, 20  # 80 images counted by every step
MODELS = {  # key: (family, the device's vdsp_params JSON)
    "local-mobilenetv2_100-tvq": ("mobilenet_v2", ROOT / "pytest_vaccbench/data/vdsp/timm-mobilenetv2_100-vdsp_params.json"),
    "timm-efficientnet_lite0": ("efficientnet_lite", ROOT / "tests/data/vdsp/timm-efficientnet_lite0-vdsp_params.json"),
}


def options(shared_data: Path, cache: Path, **extra) -> RunOptions:
    return RunOptions(weights_dir=shared_data / "weights", cache_dir=cache, threads=2, workers=2,
                      extra={"calib_images": CALIB, **extra})


def single_tests(key: str, vdsp: Path, shared_data: Path, cache: Path, folder: Path) -> dict[str, dict]:
    """The plugin's tests of the ladder's steps, as a user runs them: run -> report record."""
    test = f"suites/default.yaml::{MODELS[key][0]}/{key}"
    variant = variant_name(vdsp)
    common = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
              f"--dataset={shared_data / 'ilsvrc2012-val-subset'}", f"--limit={LIMIT}",
              "--dataset-name=subset-ladder", f"--calib-images={CALIB}", "--threads=2",
              f"--weights-dir={shared_data / 'weights'}", f"--vaccbench-cache={cache}",
              "--update-baselines", "--dry-run"]
    runs = [[f"{test}[reference-fp32]", "--backend=reference", "--precision=fp32",
             f"--vaccbench-json={folder / 'recipe.json'}"],
            [*(f"{test}[{run}+{variant}]" for run in ("reference-fp32", "onnxruntime-fp32",
                                                      "onnxruntime-fp16", "onnxruntime-int8-percentile")),
             "--backend=reference,onnxruntime", "--precision=fp32,fp16,int8-percentile",
             f"--preprocess=vdsp:{vdsp}", f"--vaccbench-json={folder / 'device.json'}"]]
    records = {}
    for extra in runs:
        done = subprocess.run([*common, *extra], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=1800)
        report = Path(extra[-1].partition("=")[2])
        assert report.is_file(), done.stdout[-3000:]
        selected = [arg for arg in extra if arg.startswith("suites/")]
        assert len(json.loads(report.read_text())["tests"]) == len(selected), done.stdout[-3000:]
        for test in json.loads(report.read_text())["tests"]:
            if test.get("top1") is not None:
                records[f"{test['backend']}/{test['precision']}"] = {
                    **test, "predictions": report.parent / test["predictions"]}
    return records


@pytest.fixture(scope="module", params=sorted(MODELS))
def measured(request, shared_data, tmp_path_factory):
    """One model: its single tests, then its ladder in the same cache (the run's time too)."""
    key = request.param
    family, vdsp = MODELS[key]
    folder = tmp_path_factory.mktemp(key)
    cache = folder / "cache"
    tests = single_tests(key, vdsp, shared_data, cache, folder)
    entry = load_family(ROOT / "baselines" / f"{family}.yaml").models[key]
    data = limit(resolve(str(shared_data / "ilsvrc2012-val-subset")), LIMIT)
    started = time.time()
    found = ladder.explain(entry, data, options(shared_data, cache), "int8-percentile", vdsp=vdsp)
    return entry, data, cache, tests, found, started


def test_each_step_equals_the_single_test_it_stands_for(measured):
    entry, _, _, tests, found, _ = measured
    print("\n".join(found.lines()))
    steps = {s.number: s for s in found.steps}
    assert found.n == LIMIT - CALIB and found.excluded == CALIB
    assert [steps[n].status for n in range(2, 7)] == ["measured"] * 5, found.lines()
    int8 = tests[steps[6].run]  # onnxruntime/int8-percentile+vdsp-<name>: counts the ladder's images
    assert int8["n"] == found.n
    assert (steps[6].top1, steps[6].top5) == pytest.approx((int8["top1"], int8["top5"]))
    with np.load(int8["predictions"]) as saved:
        counted = saved["files"].tolist()
    for number in range(2, 6):  # fp32 and fp16 tests count every image: their rows of the ladder's
        step, test = steps[number], tests[steps[number].run]
        assert test["n"] == LIMIT
        with np.load(test["predictions"]) as saved:
            rows = {name: i for i, name in enumerate(saved["files"].tolist())}
            pick = [rows[name] for name in counted]
            hits = saved["top5"][pick] == saved["labels"][pick, None]
        assert (100.0 * hits[:, 0].mean(), 100.0 * hits.any(axis=1).mean()) == \
            pytest.approx((step.top1, step.top5)), step.run
    published = entry.published or {}
    if published.get("top1") is not None:
        assert (steps[1].status, steps[1].top1) == ("context", published["top1"])


def stand_in(entry, shared_data: Path, cache: Path, models: Path) -> Path:
    """The model's exported graph (from the cache) installed as its int8-percentile compiled
    model under `models`, with the device's vdsp_params JSON; returns that JSON."""
    from pytest_vaccbench.backends.onnxruntime import OnnxRuntimeBackend

    vdsp = MODELS[entry.key][1]
    graph = OnnxRuntimeBackend().fp32_graph(entry, options(shared_data, cache))
    vamp_standin.install(models, entry.key, graph, vdsp, ["int8-percentile"], 224)
    return vdsp


def assert_names_the_device(found: dict, run: str, what: str) -> dict:
    """Step 7 measured as `run`, far beyond chance, and the closing sentence names it."""
    device = found["steps"][6]
    assert device["status"] == "measured" and device["run"] == run, found
    assert device["lost"] >= 10 and device["gained"] <= 5 and device["significant"], device
    assert found["conclusion"].startswith(f"{-device['delta_previous']:.2f} of the "), found["conclusion"]
    assert f"are step 7, the device itself: {what}" in found["conclusion"]
    return device


@pytest.mark.parametrize("measured", ["local-mobilenetv2_100-tvq"], indirect=True)
def test_a_device_only_loss_is_named_as_the_device_step(measured, shared_data, tmp_path, monkeypatch):
    """vamp's test double with a device-only loss; then the same run's predictions written as
    the zoo's result.txt (class-folder paths, Relay lines) and read back as step 7 by file
    name (--device vamp:FILE): the same row, the same sentence."""
    entry, data, cache, _, _, started = measured
    vdsp = stand_in(entry, shared_data, cache, tmp_path / "models")
    monkeypatch.setenv("VAMP_STUB_LOSS", "0.3")  # about 20 of the 80 images: far from p = 0.05
    device_options = options(shared_data, cache, vamp_bin=vamp_standin.stub_command(),
                             vamp_root=str(tmp_path / "models"))
    counted = [s for s in data.samples if s not in set(ladder.calibration_images(
        entry, "int8-percentile", data, device_options)[0])]
    found = ladder.explain(entry, data, device_options, "int8-percentile", vdsp=vdsp,
                           device=ladder.Device(backend="vamp"),
                           reuse=ladder.fresh(cache, data, counted, started))
    print("\n".join(found.lines()))  # shown when it fails, or with -rP
    assert all(s.reused for s in found.steps[1:6])  # the CPU steps of the ladder before
    live = assert_names_the_device(found.to_dict(), "vamp/int8-percentile",
                                   "vamp int8-percentile against its CPU emulation")

    with np.load(predictions_path(cache, Case(entry, "vamp", "int8-percentile"), data,
                                  data.fingerprint())) as saved:
        top5 = saved["top5"]
    result_txt = write_result_txt(tmp_path / "result.txt", rf.folder_paths(
        [s.path.name for s in data.samples], [s.label for s in data.samples]), top5,
        rf.probabilities(len(top5)))
    files = ladder.explain(entry, data, device_options, "int8-percentile",
                           device=ladder.parse_device(f"vamp:{result_txt}"),
                           reuse=ladder.fresh(cache, data, counted, started)).to_dict()
    print(files["conclusion"])
    scored = assert_names_the_device(files, "vamp/int8-percentile",
                                     "its vamp int8-percentile result files against the CPU emulation")
    same = ("n", "top1", "top5", "delta_previous", "lost", "gained", "mcnemar_p", "classes")
    assert {k: scored[k] for k in same} == {k: live[k] for k in same}
    assert [s["top1"] for s in files["steps"][:6]] == [s.top1 for s in found.steps[:6]]


@pytest.mark.parametrize("measured", ["local-mobilenetv2_100-tvq"], indirect=True)
def test_vsx_with_a_device_only_loss_through_the_command(measured, shared_data, tmp_path, monkeypatch, capsys):
    """`vaccbench explain --device vsx` through VastStreamX's test double: step 3 is the
    compiled model's vdsp JSON after the host's odd-to-even resize, and a device-only loss
    (VSX_DOUBLE_LOSS) is named as the device step."""
    from pytest_vaccbench.cli import main

    entry, _, cache, _, _, _ = measured
    stand_in(entry, shared_data, cache, tmp_path / "models")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests" / "vsx_double"), str(ROOT)]))
    monkeypatch.setenv("VSX_DOUBLE_LOSS", "0.3")
    code = main(["explain", entry.key, str(shared_data / "ilsvrc2012-val-subset"), "--limit", str(LIMIT),
                 "--calib-images", str(CALIB), "--precision", "int8-percentile", "--device", "vsx",
                 "--vamp-root", str(tmp_path / "models"), "--baselines", str(ROOT / "baselines"),
                 "--weights-dir", str(shared_data / "weights"), "--cache", str(cache), "--threads", "2",
                 "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    found = json.loads(out)
    print(found["conclusion"])  # shown when it fails, or with -rP
    variant = f"vsx-{entry.key}"  # the JSON vamp_standin installs: <key>-vdsp_params.json
    assert found["preprocessing"]["device"].startswith("odd sides made even, then 256x256 stretch, 224 crop")
    assert [s["run"] for s in found["steps"][2:6]] == [
        f"reference/fp32+{variant}", f"onnxruntime/fp32+{variant}", f"onnxruntime/fp16+{variant}",
        f"onnxruntime/int8-percentile+{variant}"]
    assert [s["status"] for s in found["steps"][1:]] == ["measured"] * 6
    assert_names_the_device(found, "vsx/int8-percentile", "vsx int8-percentile against its CPU emulation")


def letterboxed(shared_data: Path, folder: Path, n: int = 60) -> Path:
    """`n` images of the val subset, each centred on a grey canvas three times as wide (PNG,
    lossless): a short-side resize and centre crop sees the photo, a square stretch squeezes
    it to a third of its width."""
    from PIL import Image

    source = limit(resolve(str(shared_data / "ilsvrc2012-val-subset")), n)
    images = folder / "wide" / "images"
    images.mkdir(parents=True)
    lines = []
    for sample in source.samples:
        with Image.open(sample.path) as photo:
            photo = photo.convert("RGB")
            canvas = Image.new("RGB", (3 * photo.width, photo.height), (128, 128, 128))
            canvas.paste(photo, (photo.width, 0))
            name = sample.path.with_suffix(".png").name
            canvas.save(images / name)
        lines.append(f"{name} {sample.label}")
    (folder / "wide" / "val_label.txt").write_text("\n".join(lines) + "\n")
    return images


def test_the_stretch_on_wide_photos_is_named_as_the_devices_preprocessing(shared_data, tmp_path):
    entry = load_family(ROOT / "baselines" / "mobilenet_v2.yaml").models["local-mobilenetv2_100-tvq"]
    data = resolve(str(letterboxed(shared_data, tmp_path)))
    found = ladder.explain(entry, data, options(shared_data, tmp_path / "cache"), "fp16",
                           vdsp=MODELS[entry.key][1])
    print("\n".join(found.lines()))
    steps = {s.number: s for s in found.steps}
    assert found.n == 60 and found.excluded == 0  # an fp16 build calibrates nothing
    assert steps[6].reason == "fp16 build: nothing is quantized to int8"
    stretch = steps[3]
    assert stretch.significant_loss and stretch.delta_previous < -20, found.lines()
    assert found.conclusion.startswith(f"{-stretch.delta_previous:.2f} of the ")
    assert ("are step 3, the device's preprocessing: its 256x256 stretch, 224 crop at 16,16 against "
            "the recipe's short-side resize to 256, centre 224 crop; OpenCV bilinear against the "
            "recipe's Pillow bilinear (exact McNemar p=") in found.conclusion
