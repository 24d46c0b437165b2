"""The loss ladder (pytest_vaccbench.ladder, waterfall, `vaccbench explain`, the gate's note).

Fast tests on hand-built predictions whose flips, McNemar p and class losses are counted by
hand here; the plugin's note on a tiny ONNX network. Real weights and images: test_ladder_real.py.
"""

from __future__ import annotations

import json
import shlex
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench import ladder
from pytest_vaccbench.backends import RunOptions
from pytest_vaccbench.baselines import load_family
from pytest_vaccbench.dataset import Dataset, Sample, class_name
from pytest_vaccbench.errors import VaccbenchError
from pytest_vaccbench.preprocess import PreprocessSpec
from pytest_vaccbench.report import Row, write_json
from pytest_vaccbench.report_html import html_report
from pytest_vaccbench.run import Case, Result
from pytest_vaccbench.vdsp import load_vdsp
from pytest_vaccbench.waterfall import PLOT_H, ladder_page, waterfall_svg

try:  # onnx before any pytester run: a run drops the modules it imported, and onnx's protobuf
    import onnx  # noqa: F401 - descriptors abort the process when imported a second time
except ImportError:  # the core's tests run without the onnx extra
    pass

sys.path.insert(0, str(Path(__file__).parent))
import colour_zoo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENTRY = load_family(ROOT / "baselines" / "mobilenet_v2.yaml").models["local-mobilenetv2_100-tvq"]
N = 40
LABELS = np.arange(N) % 8 * 100  # 8 classes of 5 images


def predictions(wrong: set[int]) -> dict[str, np.ndarray]:
    """Top-5 arrays: image i right at top-1 unless i is in `wrong` (then its label is 2nd)."""
    top5 = np.stack([LABELS + 1, LABELS, LABELS + 2, LABELS + 3, LABELS + 4], axis=1)
    for i in range(N):
        if i not in wrong:
            top5[i, :2] = top5[i, [1, 0]]
    return {"top5": top5, "labels": LABELS.copy(), "files": np.array([f"{i:03d}.JPEG" for i in range(N)])}


def planned(number: int, run: str) -> ladder.Planned:
    return ladder.Planned(number, run, f"what step {number} changes")


# step 2: 2 wrong; 3: the same; 4: 7 more wrong (images 10-16, classes 100, 200, 300) and
# none back; 5: one lost (20), one won back (10); 6 could not run; 7: images 30-31 lost
STEPS = [(planned(2, "reference/fp32"), predictions({0, 1}), 3.0, False),
         (planned(3, "reference/fp32+vdsp-x"), predictions({0, 1}), 3.0, False),
         (planned(4, "onnxruntime/fp32+vdsp-x"), predictions({0, 1, *range(10, 17)}), 2.0, False),
         (planned(5, "onnxruntime/fp16+vdsp-x"), predictions({0, 1, 20, *range(11, 17)}), 2.0, True),
         (planned(6, "onnxruntime/int8-max+vdsp-x"), "no onnxruntime here", 0.0, False),
         (planned(7, "vamp/int8-max"), predictions({0, 1, 20, 30, 31, *range(11, 17)}), 9.0, False)]


@pytest.fixture(scope="module")
def rows() -> list[ladder.Step]:
    return ladder.rows(ENTRY, "hand", STEPS)


def test_each_row_is_paired_with_the_measured_step_before(rows):
    two, three, four, five, six, seven = rows
    assert (two.top1, two.delta_previous, two.lost, two.mcnemar_p) == (95.0, None, None, None)
    assert (three.top1, three.delta_previous, three.lost, three.gained, three.mcnemar_p) == (95.0, 0.0, 0, 0, 1.0)
    assert (four.top1, four.previous, four.delta_previous, four.delta_step2) == (77.5, 3, -17.5, -17.5)
    assert (four.lost, four.gained) == (7, 0)
    assert four.mcnemar_p == pytest.approx(2 / 2 ** 7)  # 7 discordant, all one way: 2 * (1/2)^7
    assert four.significant_loss
    assert (five.lost, five.gained, five.delta_previous, five.mcnemar_p) == (1, 1, 0.0, 1.0)
    assert five.reused and not four.reused
    assert (six.status, six.reason, six.top1) == ("not run", "no onnxruntime here", None)
    # step 7 pairs with step 5, the last measured step: 2 lost, none won
    assert (seven.previous, seven.lost, seven.gained) == (5, 2, 0)
    assert seven.mcnemar_p == pytest.approx(0.5)  # 2 * (1/2)^2
    assert not seven.significant_loss
    assert seven.delta_step2 == pytest.approx(72.5 - 95.0)


def test_the_classes_that_lost_most_come_worst_first_three_at_most(rows):
    four = rows[2]
    # images 10-16: labels 10%8*100=200, 300, 400, 500, 600, 700, 0 -> one image each
    assert [c["change"] for c in four.classes] == [-1, -1, -1]
    assert [c["class"] for c in four.classes] == [0, 200, 300]  # ties: by class index
    assert four.classes[0] == {"class": 0, "name": class_name(0), "n": 5, "before": 4, "after": 3,
                               "change": -1}


def test_the_sentence_names_the_step_with_most_significant_loss(rows):
    text = ladder.conclusion(rows)
    assert text == ("17.50 of the 22.50 top1 points lost from step 2 to step 7 are step 4, what step 4 "
                    "changes (exact McNemar p=0.016).")


def _step(number: int, top1: float, delta: float | None, p: float | None) -> ladder.Step:
    return ladder.Step(number, ladder.NAMES[number], "x/y", f"change {number}", "measured", n=100,
                       top1=top1, delta_previous=delta, mcnemar_p=p)


def test_the_sentence_without_a_significant_loss_or_any_loss():
    steps = [_step(2, 80.0, None, None), _step(3, 79.0, -1.0, 0.4), _step(4, 78.5, -0.5, 0.6)]
    assert ladder.conclusion(steps) == (
        "No step loses significantly (exact McNemar p >= 0.05 against the step before); of the "
        "1.50 top1 points lost from step 2 to step 4, the most, 1.00, are step 3, change 3 (p=0.4).")
    assert ladder.conclusion([_step(2, 80.0, None, None), _step(3, 80.5, 0.5, 0.5)]) == \
        "No step loses top1: from step 2 to step 3 it changes by +0.50."
    won_back = [_step(2, 80.0, None, None), _step(3, 75.0, -5.0, 0.001), _step(4, 79.0, 4.0, 0.01)]
    assert ladder.conclusion(won_back).startswith(
        "The largest significant loss, 5.00 top1 points, is step 3, change 3 (exact McNemar p=0.001); "
        "from step 2 to step 4 top1 changes by -1.00 in all.")
    assert ladder.conclusion([_step(2, 80.0, None, None)]).startswith("Fewer than two steps")


def _ladder(rows) -> ladder.Ladder:
    published = ladder.Step(1, "published", "README (full val)", "other images: context only", "context",
                            top1=72.0, top5=91.0)
    steps = [published, *rows]
    return ladder.Ladder("mobilenet_v2/local-mobilenetv2_100-tvq", "hand", "int8-max", N, 8,
                         {"recipe": "a", "device": "b"}, steps, ladder.conclusion(steps), 12.0)


def test_text_and_json_of_the_ladder(rows):
    found = _ladder(rows)
    lines = [" ".join(line.split()) for line in found.lines()]
    assert lines[0].startswith("loss ladder of mobilenet_v2/local-mobilenetv2_100-tvq int8-max on hand: "
                               "40 images, the same in every step (8 calibration images not counted)")
    assert "4 exported graph onnxruntime/fp32 77.50 100.00 -17.50 -17.50 7 0 0.016 -1 tench, -1 " \
           f"{class_name(200)}, -1 {class_name(300)}" in lines
    assert "6 int8 onnxruntime/int8-max not run: no onnxruntime here" in lines
    assert "1 published README (full val) 72.00 91.00 - - - - - other images: context only" in lines
    assert lines[-1] == found.conclusion
    short = [" ".join(line.split()) for line in found.lines(short=True)]
    assert "4 exported graph onnxruntime/fp32 77.50 -17.50 -17.50 7 0 0.016" in short
    assert "6 int8 onnxruntime/int8-max not run: no onnxruntime here" in short
    data = json.loads(json.dumps(found.to_dict()))
    assert [s["number"] for s in data["steps"]] == [1, 2, 3, 4, 5, 6, 7]
    assert data["steps"][3]["significant"] is True and data["steps"][3]["lost"] == 7


def test_waterfall_draws_each_step_to_scale(rows):
    svg = ET.fromstring(waterfall_svg(_ladder(rows).to_dict()))
    ns = "{http://www.w3.org/2000/svg}"
    rects = list(svg.iter(f"{ns}rect"))
    assert [r.get("class") for r in rects] == ["context", "base", "same", "loss", "same", "loss"]
    context, base, _, loss4, _, loss7 = (float(r.get("height")) for r in rects)
    # one scale from the axis floor, 68 (the lowest top1, 72, less 15% of the 72-95 range):
    # published 72 - 68, step 2 95 - 68, the losses 17.5 and 5 points
    assert base / context == pytest.approx(27 / 4, rel=1e-3)
    assert loss4 / base == pytest.approx(17.5 / 27, rel=1e-3)
    assert loss4 / loss7 == pytest.approx(17.5 / 5.0, rel=1e-3)
    assert base < PLOT_H
    assert float(rects[3].get("opacity")) == 1.0 and float(rects[5].get("opacity")) < 1.0  # p 0.016, 0.5
    assert [t.text for t in svg.iter(f"{ns}text") if t.get("class") == "not-run"] == ["not run"]
    page = ladder_page(_ladder(rows).to_dict())
    assert "<svg" in page and "not run: no onnxruntime here" in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched


def test_the_report_keeps_a_failing_tests_ladder(rows, tmp_path):
    result = Result("mobilenet_v2", "local-mobilenetv2_100-tvq", "onnxruntime", "int8-max", "hand",
                    "f", N, 31, 37, 1.0, str(tmp_path / "none.npz"), "b.yaml")
    row = Row("suites/x.yaml::mobilenet_v2/local-mobilenetv2_100-tvq[onnxruntime-int8-max]", "failed",
              result, explain=_ladder(rows).to_dict())
    page = html_report([row], {"command": "pytest"})
    assert '<section class="s-ladder"><h3>where the accuracy went: the loss ladder</h3>' in page
    assert 'class="waterfall"' in page and "17.50 of the 22.50 top1 points lost" in page
    report = json.loads(write_json([row], tmp_path / "r.json", {}).read_text())
    assert report["tests"][0]["explain"]["steps"][3]["lost"] == 7
    assert "s-ladder" not in html_report([replace(row, explain=None)], {"command": "pytest"})


def test_measure_reads_saved_predictions_on_the_ladders_images_and_says_why_not(tmp_path):
    saved = tmp_path / "saved.npz"
    np.savez(saved, **predictions({3}))
    half = tmp_path / "half.npz"
    np.savez(half, **{k: v[:20] for k, v in predictions(set()).items()})
    samples = [Sample(Path(f"{i:03d}.JPEG"), int(LABELS[i])) for i in range(N)]
    counted = samples[10:30]
    data = Dataset("hand", tmp_path, "flat", tuple(samples), N)
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 not a zip")
    cases = {n: Case(ENTRY, "reference", "fp32", f"v{n}") for n in (2, 3, 5)}
    steps = [ladder.Planned(2, "reference/fp32+v2", "", cases[2]),
             ladder.Planned(3, "reference/fp32+v3", "", cases[3]),
             ladder.Planned(4, "onnxruntime/fp32", "", reason="why not"),
             ladder.Planned(5, "reference/fp32+v5", "", cases[5])]
    files = {cases[2].id: saved, cases[3].id: half, cases[5].id: damaged}
    options = RunOptions(weights_dir=tmp_path, cache_dir=tmp_path)
    out = ladder.measure(steps, data, counted, options, reuse=lambda case: files.get(case.id))
    arrays = out[0][1]
    assert list(arrays["files"]) == [s.path.name for s in counted] and out[0][3] is True
    assert out[1][1] == "its predictions lack 10 of the ladder's images (020.JPEG, 021.JPEG, 022.JPEG, ...)"
    assert out[2][1] == "why not"
    assert out[3][1].startswith(f"cannot read its predictions {damaged} (")


def test_a_step_over_the_time_budget_is_listed_as_not_run(tmp_path):
    data = Dataset("hand", tmp_path, "flat", (Sample(tmp_path / "a.JPEG", 1),), 1)
    step = ladder.Planned(4, "onnxruntime/fp32", "", Case(replace(ENTRY, onnx=str(tmp_path / "g.onnx")),
                                                          "onnxruntime", "fp32"))
    (tmp_path / "g.onnx").write_bytes(b"")
    out = ladder.measure([step], data, list(data.samples), RunOptions(tmp_path, tmp_path),
                         budget=5.0, estimate=10.0)
    assert out[0][1] == "time budget of 5 s (--explain-budget)"


def test_preprocessing_in_a_few_words_and_what_the_device_does_otherwise():
    recipe = ENTRY.preprocess
    vdsp = load_vdsp(ROOT / "pytest_vaccbench/data/vdsp/timm-mobilenetv2_100-vdsp_params.json")
    assert ladder.describe(recipe) == ("short-side resize to 256, centre 224 crop (Pillow bilinear; "
                                       "mean 0.485,0.456,0.406 std 0.229,0.224,0.225)")
    assert ladder.describe(vdsp) == ("256x256 stretch, 224 crop at 16,16 (OpenCV bilinear; "
                                     "mean 0.485,0.456,0.406 std 0.229,0.224,0.225)")  # fp16 rounded
    assert ladder.differences(recipe, vdsp) == (
        "its 256x256 stretch, 224 crop at 16,16 against the recipe's short-side resize to 256, "
        "centre 224 crop; OpenCV bilinear against the recipe's Pillow bilinear")
    halves = PreprocessSpec(resize=256, crop=224, mean=(127.5,) * 3, std=(127.5,) * 3, pixel_scale=1.0,
                            channel_order="BGR")
    assert ladder.differences(recipe, halves) == (
        "its mean 0.5,0.5,0.5 std 0.5,0.5,0.5 on BGR against the recipe's mean 0.485,0.456,0.406 "
        "std 0.229,0.224,0.225")
    assert ladder.differences(recipe, recipe) == "the same as the recipe's"


def test_which_failing_tests_get_a_ladder_and_what_a_device_is(tmp_path):
    assert ladder.explains("onnxruntime", "int8-percentile") and ladder.explains("onnxruntime", "fp16")
    assert ladder.explains("vamp", "int8-percentile") and ladder.explains("vamp", "fp16")
    assert not ladder.explains("onnxruntime", "fp32") and not ladder.explains("reference", "fp32")
    assert not ladder.explains("vamp", "fp16", "stale") and not ladder.explains("onnxruntime", "fp16", "images")
    for value, device in (("vamp", ladder.Device(backend="vamp")),
                          (str(tmp_path), ladder.Device(results=(tmp_path,))),
                          (f"vsx:{tmp_path}", ladder.Device("vsx", (tmp_path,)))):
        assert ladder.parse_device(value) == device and device.option == value
    with pytest.raises(VaccbenchError, match=r"--device vampp: neither an accelerator backend \(.*vamp.*\) nor"):
        ladder.parse_device("vampp")
    with pytest.raises(VaccbenchError, match=r"as BACKEND:FILE \(no such file or folder /nowhere\)"):
        ladder.parse_device("vamp:/nowhere")


def test_cli_refuses_an_unknown_build_precision_and_device(capsys):
    from pytest_vaccbench.cli import main

    base = ["explain", "local-mobilenetv2_100-tvq", "skimage-photos", "--baselines", str(ROOT / "baselines")]
    assert main([*base, "--precision", "int8-maxx"]) == 2
    assert "precision int8-maxx: a build is fp16 or one of int8-max, int8-percentile" in capsys.readouterr().err
    assert main([*base, "--device", "nowhere"]) == 2
    assert "--device nowhere: neither an accelerator backend" in capsys.readouterr().err


# -- in a failing test, through the plugin -------------------------------------------------------
@pytest.fixture
def tiny_gate(pytester):
    """test_triage's tiny net on the skimage photos, with an int8 baseline it cannot meet."""
    onnx = pytest.importorskip("onnx")
    from test_triage import BASELINE, tiny_model

    onnx.save(tiny_model(size=32, classes=1000), str(pytester.path / "tiny.onnx"))
    pytester.makefile(".yaml", **{"suites/tiny": "baselines: ../baselines\nbackends: [onnxruntime]\n"})
    (pytester.path / "baselines").mkdir()
    (pytester.path / "baselines" / "tiny.yaml").write_text(BASELINE % {"fp32": 0.0, "fp32_5": 0.0})
    return pytester, ["suites", "-p", "no:cacheprovider", f"--vaccbench-cache={pytester.path / 'cache'}",
                      f"--weights-dir={pytester.path}", "--calib-images=2", "--precision=int8-max",
                      "--no-triage"]


@pytest.mark.slow
def test_failing_int8_test_ends_with_its_short_ladder(tiny_gate):
    pytester, args = tiny_gate
    result = pytester.runpytest_subprocess(*args, "--vaccbench-json=run.json", "--vaccbench-html=run.html")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*loss ladder of tiny/tiny-net int8-max on skimage-photos: 3 images, the same in every step "
        "(2 calibration images not counted)*",
        "*2 recipe * reference/fp32 * not run: *",
        "*3 device preprocessing * not run: no vdsp_params JSON in this session (--preprocess=vdsp:FILE or vsx:FILE)*",
        "*4 exported graph * onnxruntime/fp32 * -*",
        "*5 fp16 * onnxruntime/fp16 *",
        "*6 int8 * onnxruntime/int8-max *",
        "*7 device * not run: this test is the CPU emulation: no device run to compare*",
        "No step loses top1: from step 4 to step 6 it changes by +0.00."])
    steps = json.loads((pytester.path / "run.json").read_text())["tests"][0]["explain"]["steps"]
    assert [s["status"] for s in steps] == ["not run", "not run", "not run", "measured", "measured",
                                            "measured", "not run"]
    assert steps[5]["reused"] and not steps[3]["reused"]  # the failing test's own predictions
    assert steps[5]["n"] == 3
    page = (pytester.path / "run.html").read_text()
    ladder_html = page.split('<section class="s-ladder">')[1].split("</section>")[0]
    assert ladder_html.count('<rect class="') == 3  # steps 4, 5 and 6 measured

    quiet = pytester.runpytest_subprocess(*args, "--no-explain")
    quiet.assert_outcomes(failed=1)
    assert "loss ladder" not in quiet.stdout.str()

    hurried = pytester.runpytest_subprocess(*args, "--explain-budget=0")
    hurried.assert_outcomes(failed=1)
    hurried.stdout.fnmatch_lines([
        "*4 exported graph * not run: time budget of 0 s (--explain-budget)*",
        "*the whole ladder: vaccbench explain tiny/tiny-net skimage-photos --precision=int8-max "
        "--weights-dir=* --calib-images=2*"])


@pytest.mark.slow
def test_a_failing_device_test_is_its_ladders_device_step(tmp_path):
    """A broken stand-in compiled model on vamp: the ladder takes the device test's own run as
    step 7 and the compiled model's vdsp_params JSON as step 3's preprocessing."""
    import subprocess

    root = colour_zoo.build(tmp_path, [colour_zoo.ZooModel("zoo-broken", "zoob", ("fp16",), broken=True)])
    done = subprocess.run([sys.executable, "-m", "pytest", *colour_zoo.pytest_args(root), "-q",
                           "--vaccbench-json=run.json"], cwd=root, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=600)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "loss ladder of zoob/zoo-broken fp16 on colours: 8 images, the same in every step" in done.stdout
    assert "  device preprocessing: 40x40 stretch, 32 crop at 4,4 (OpenCV bilinear; mean 0,0,0 std " \
           "0.004,0.004,0.004); vdsp-zoo-broken, steps 3-6 use it" in done.stdout
    test = json.loads((root / "run.json").read_text())["tests"][0]
    steps = test["explain"]["steps"]
    device = steps[6]
    assert (device["run"], device["status"], device["reused"], device["top1"], device["n"]) == \
        ("vamp/fp16", "measured", True, test["top1"], test["n"])
    assert steps[2]["run"] == "reference/fp32+vdsp-zoo-broken" and steps[2]["status"] == "not run"
    assert steps[5]["reason"] == "fp16 build: nothing is quantized to int8"


def test_step_3_is_the_compiled_models_vdsp_file_made_even_first_for_vsx(tmp_path):
    vdsp = ROOT / "pytest_vaccbench/data/vdsp/timm-mobilenetv2_100-vdsp_params.json"
    folder = tmp_path / "deploy_weights" / "local_mobilenetv2_100_tvq_run_stream_int8_percentile"
    folder.mkdir(parents=True)
    (folder / "mod.onnx").write_bytes(b"")
    (folder / "vdsp_params.json").write_bytes(vdsp.read_bytes())
    options = RunOptions(tmp_path, tmp_path, extra={"vamp_root": str(tmp_path)})
    plain = load_vdsp(vdsp)
    found = ladder.device_preprocessing(ladder.Device("vamp"), ENTRY, "int8-percentile", options, None)
    assert found == ("vdsp-vdsp_params", plain)
    name, spec = ladder.device_preprocessing(ladder.Device("vsx"), ENTRY, "int8-percentile", options, None)
    assert (name, spec) == ("vsx-vdsp_params", replace(plain, even_size=True))
    assert ladder.describe(spec).startswith("odd sides made even, then 256x256 stretch, 224 crop at 16,16")
    given = ladder.device_preprocessing(ladder.Device("vsx"), ENTRY, "fp16", options, vdsp)
    assert given == ("vsx-timm-mobilenetv2_100", replace(plain, even_size=True))
    missing = ladder.device_preprocessing(ladder.Device("vamp"), ENTRY, "fp16", options, None)
    assert missing.startswith("mobilenet_v2.yaml expects vamp/fp16 results for local-mobilenetv2_100-tvq, "
                              "but there is no fp16 compiled model") and missing.endswith("(or give --vdsp FILE)")
    assert ladder.device_preprocessing(None, ENTRY, "fp16", options, None) == \
        "no vdsp_params JSON (give --vdsp FILE, or a device with --device)"


def test_result_files_as_the_device_step(tmp_path):
    """The device's result files (here this tool's predictions format; result.txt and vamp
    outputs are read by the same resultfiles.read_predictions) give step 7 on the ladder's
    images, with the flat dataset's label file."""
    images = tmp_path / "images"
    images.mkdir()
    samples = [Sample(images / f"{i:03d}.JPEG", int(LABELS[i])) for i in range(N)]
    (tmp_path / "val_label.txt").write_text("".join(f"{s.path.name} {s.label}\n" for s in samples))
    results = tmp_path / "device.npz"
    np.savez(results, **predictions({0, 1, 5}))
    data = Dataset("hand", images, "flat", tuple(samples), N)
    device = ladder.parse_device(str(results))
    (step,) = [p for p in ladder.plan(ENTRY, "fp16", RunOptions(tmp_path, tmp_path), "no vdsp", device,
                                      "fp16 build", 0) if p.number == 7]
    assert step.run == "results/fp16" and step.results == (results,)
    ((_, arrays, _, reused),) = ladder.measure([step], data, samples[:10], RunOptions(tmp_path, tmp_path))
    assert list(arrays["files"]) == [f"{i:03d}.JPEG" for i in range(10)] and not reused
    assert (arrays["top5"][:, 0] != arrays["labels"]).tolist() == [i in (0, 1, 5) for i in range(10)]


# -- the device step from result files (pytest --results, --device RESULTS) ---------------------
def colour_results(pytester) -> tuple[Path, Path]:
    """The colour zoo's zoo-a with a ready ONNX graph (--onnx-dir: steps 4 and 5 run without
    weights, at 6 of 8 right) and the result.txt of a device that gets every image wrong at
    top-1 (right at top-2), under --results' layout; returns (the project, the results folder)."""
    from pytest_vaccbench.dataset import resolve
    from pytest_vaccbench.resultfiles import write_result_txt

    root = colour_zoo.build(pytester.path, [colour_zoo.ZooModel("zoo-a", "zooa", ("fp16",))])
    (root / "graphs").mkdir()
    (root / "export" / "colours.onnx").rename(root / "graphs" / "zoo-a.onnx")
    data = resolve(str(root / "colours" / "images"))
    labels = np.array([s.label for s in data.samples])
    top5 = np.stack([(labels + 1) % 1000, labels, *((labels + k) % 1000 for k in (2, 3, 4))], axis=1)
    folder = root / "nightly" / "zooa" / "zoo-a" / "vamp-fp16"
    folder.mkdir(parents=True)
    write_result_txt(folder / "result.txt", [str(s.path) for s in data.samples], top5,
                     np.tile([0.5, 0.2, 0.1, 0.05, 0.02], (len(labels), 1)))
    return root, folder


def test_a_test_scored_from_result_files_has_them_as_its_device_step(pytester, monkeypatch, capsys):
    """pytest --results: the failing test's result files are step 7, the CPU steps run on the
    images they name. Where those images are not, the message says so and prints the
    `vaccbench explain --device FOLDER` command, which gives the same ladder where they are."""
    pytest.importorskip("onnxruntime")
    from pytest_vaccbench.cli import main

    root, folder = colour_results(pytester)
    args = ["suites", "-p", "no:cacheprovider", f"--results={root / 'nightly'}", "--dataset-name=colours",
            f"--labels={root / 'colours' / 'val_label.txt'}", f"--vaccbench-cache={root / 'cache'}",
            f"--vamp-root={root / 'models'}", f"--onnx-dir={root / 'graphs'}"]
    result = pytester.runpytest(*args, "--vaccbench-json=run.json")
    result.assert_outcomes(failed=1)
    # by construction: the graph gets 6 of 8 right, the device's files none, and the 6 lost
    # images against none won have an exact McNemar p of 2 / 2**6
    conclusion = ("75.00 of the 75.00 top1 points lost from step 4 to step 7 are step 7, the device "
                  "itself: its vamp fp16 result files against the CPU emulation (exact McNemar p=0.031).")
    result.stdout.fnmatch_lines(["*loss ladder of zooa/zoo-a fp16 on colours: 8 images, the same in every step*",
                                 "*device preprocessing: 40x40 stretch, 32 crop at 4,4 *; vdsp-zoo-a, steps 3-6 use it",
                                 "*4 exported graph * onnxruntime/fp32 * 75.00 *",
                                 "*5 fp16 * onnxruntime/fp16 * 75.00 * +0.00 *",
                                 "*7 device * vamp/fp16 * 0.00 * -75.00 * - * 6 * 0 * 0.031", conclusion])
    device = json.loads((pytester.path / "run.json").read_text())["tests"][0]["explain"]["steps"][6]
    assert (device["status"], device["reused"], device["n"], device["top1"]) == ("measured", True, 8, 0.0)

    images = root / "colours" / "images"
    images.rename(root / "elsewhere")
    away = pytester.runpytest(*args)
    away.assert_outcomes(failed=1)
    line = next(x for x in away.outlines if x.startswith("loss ladder not run: "))
    assert line.startswith("loss ladder not run: 8 of the 8 images the result files name are not on "
                           "this machine (ILSVRC2012_val_00000001.png, ILSVRC2012_val_00000002.png, ")
    rerun = line.split("Where the images and the weights are: ")[1]
    assert rerun.endswith(" (IMAGES: the folder of the images the result files name)")
    words = shlex.split(rerun.removesuffix(" (IMAGES: the folder of the images the result files name)"))
    assert words[:5] == ["vaccbench", "explain", "zooa/zoo-a", "IMAGES", "--precision=fp16"]
    assert f"--device=vamp:{folder}" in words and f"--vamp-root={root / 'models'}" in words

    (root / "elsewhere").rename(images)
    monkeypatch.chdir(root)
    capsys.readouterr()
    assert main([*words[1:3], str(images), *words[4:], "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["conclusion"] == conclusion
    assert [(s["top1"], s["lost"], s["gained"]) for s in again["steps"][3:]] == \
        [(75.0, None, None), (75.0, 0, 0), (None, None, None), (0.0, 6, 0)]


def test_a_run_that_stopped_early_is_run_again_as_its_step(tmp_path):
    """--vaccbench-sequential stops a failing test before the last image: its predictions lack
    some of the ladder's images, so its step runs in full (here the vamp double on the colour
    zoo's 8 images) instead of being listed as not run."""
    pytest.importorskip("onnxruntime")
    from pytest_vaccbench.dataset import resolve

    root = colour_zoo.build(tmp_path, [colour_zoo.ZooModel("zoo-a", "zooa", ("fp16",))])
    entry = load_family(root / "baselines" / "zooa.yaml").models["zoo-a"]
    data = resolve(str(root / "colours" / "images"))
    first = data.samples[:3]
    partial = tmp_path / "partial.npz"
    np.savez(partial, top5=np.array([[s.label, 0, 2, 3, 4] for s in first]),
             labels=np.array([s.label for s in first]), files=np.array([s.path.name for s in first]))
    stopped = Result("zooa", "zoo-a", "vamp", "fp16", "colours", "", 3, 3, 3, 0.1, str(partial), "")
    options = RunOptions(tmp_path / "weights", tmp_path / "cache", extra={
        "vamp_bin": colour_zoo.vamp_standin.stub_command(), "vamp_root": str(root / "models")})
    found = ladder.explain_failure(Case(entry, "vamp", "fp16"), data, options, stopped, since=0.0)
    device = found.steps[6]
    assert (device.status, device.reused, device.n, device.top1) == ("measured", False, 8, 75.0)
