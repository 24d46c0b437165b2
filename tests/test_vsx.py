"""The vsx backend, end to end through the test double of VastStreamX (tests/vsx_double).

The project is test_vamp's: nearest-colour stand-in compiled models and solid-colour images
with known labels (top1 75.0, top5 87.5 by construction), here gated as `vsx/<precision>`.
Two of the images have odd sizes (33x61, 45x45), which the double refuses: the host's
odd-to-even resize is exercised by every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from test_vamp import BASELINE, CENTROIDS, Project, gone_within  # imports cv2, onnx, onnxruntime or skips
from vaccbench_fake import summary_table

from colour_zoo import VDSP

import vamp_standin
from pytest_vaccbench.backends import available, get_backend
from pytest_vaccbench.backends.vsx import Events, VsxSettings, find_sdk
from pytest_vaccbench.backends.vsx_runner import MARK, Consumer, Failure, collect, first_scores

cv2 = pytest.importorskip("cv2")
ROOT = Path(__file__).resolve().parents[1]
DOUBLE = Path(__file__).resolve().parent / "vsx_double"
VSX_BASELINE = BASELINE.replace("vamp/", "vsx/")
ZOO_CLAIM = ["75.000", "+0.000", "0.500", "8", "passed"]  # 80 columns: the compact table


def with_double() -> str:
    """PYTHONPATH under which `import vaststreamx` finds the test double."""
    return os.pathsep.join([str(DOUBLE), str(ROOT)])


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("PYTHONPATH", with_double())
    for name in ("VSX_DOUBLE_FAIL", "VSX_DOUBLE_AT", "VSX_DOUBLE_ORDER", "VSX_DOUBLE_LOSS", "VSX_DOUBLE_LOG"):
        monkeypatch.delenv(name, raising=False)
    made = Project(pytester)
    (made.root / "suites" / "vamp.yaml").write_text("baselines: ../baselines\nbackends: [vsx]\n")
    (made.root / "baselines" / "stub.yaml").write_text(VSX_BASELINE)
    return made


def run(project: Project, *extra: str) -> pytest.RunResult:
    return project.pytester.runpytest("suites", "-p", "no:cacheprovider", "-rs",
                                      f"--vamp-root={project.models}",
                                      f"--dataset={project.root / 'colours' / 'images'}",
                                      f"--vaccbench-cache={project.root / 'cache'}", *extra)


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_gate_passes_through_the_double(project: Project) -> None:
    result = run(project)
    result.assert_outcomes(passed=3, skipped=1)
    table = summary_table(result.outlines)
    for test in ("stub/stub-colours vsx/int8-percentile", "stub/stub-colours vsx/fp16",
                 "stub/stub-colours1001 vsx/int8-max"):  # 1001 classes: the background column dropped
        assert table[test] == ZOO_CLAIM
    result.stdout.fnmatch_lines(["SKIPPED [[]1] baselines/stub.yaml:*: no compiled model for "
                                 "stub/stub-notcompiled: looked in */models for stub-notcompiled-*"])


def test_async_batches_keep_one_call_in_flight_whatever_the_answer_order(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs carry no input id: with the double answering the newest pending call first,
    the backend is right because it never has two calls pending."""
    log = project.root / "calls.jsonl"
    monkeypatch.setenv("VSX_DOUBLE_LOG", str(log))
    monkeypatch.setenv("VSX_DOUBLE_ORDER", "reverse")
    result = run(project, "--vsx-mode=async", "--vsx-batch=3", "-k", "stub-colours and fp16")
    result.assert_outcomes(passed=1)
    assert summary_table(result.outlines)["stub/stub-colours vsx/fp16"] == ZOO_CLAIM
    logged = calls(log)
    submitted = [c for c in logged if c["call"] == "run_async"]
    assert [len(c["sizes"]) for c in submitted] == [3, 3, 2] and {c["pending"] for c in submitted} == {0}
    assert all(w % 2 == 0 and h % 2 == 0 for c in submitted for w, h in c["sizes"])
    assert [c["batch"] for c in logged if c["call"] == "Model"] == [3]


def test_the_double_answers_pending_async_calls_out_of_order(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """The reordering the test above survives is real: two calls pending, the second comes first."""
    monkeypatch.setenv("VSX_DOUBLE_ORDER", "reverse")
    monkeypatch.syspath_prepend(str(DOUBLE))
    import vaststreamx as vsx

    onnx = vamp_standin.colour_model(tmp_path / "m.onnx", CENTROIDS)
    vdsp = tmp_path / "v.json"
    vdsp.write_text(json.dumps(VDSP))
    model = vsx.Model(str(onnx.with_suffix("")), 1)
    model_op = vsx.ModelOperator(model)
    graph = vsx.Graph()
    graph.add_operators(vsx.Operator.load_ops_from_json_file(str(vdsp))[0], model_op)
    stream = vsx.Stream(graph, vsx.StreamBalanceMode.ONCE)
    stream.register_operator_output(model_op)
    stream.build()
    for index in (1, 300):
        pixels = np.zeros((3, 40, 40), np.uint8) + np.asarray(CENTROIDS[index], np.uint8)[:, None, None]
        stream.run_async([vsx.create_image(pixels, vsx.ImageFormat.RGB_PLANAR, 40, 40, 0)])
    answers = [int(vsx.as_numpy(stream.get_operator_output(model_op)[0][0]).argmax()) for _ in range(2)]
    assert answers == [300, 1]
    with pytest.raises(ValueError, match="even width and height"):
        vsx.create_image(np.zeros((3, 41, 40), np.uint8), vsx.ImageFormat.RGB_PLANAR, 40, 41, 0)


@pytest.mark.parametrize("mode, fail, lines", [
    ("sync", "set_device", ["vsx.set_device(0) returned 3, not 0: device 0 cannot be used*"]),
    ("sync", "load", ["the compiled model does not load: vsx.Model('*/stub-colours-fp16-none-3_32_32-vacc/"
                      "stub-colours', 1) raised RuntimeError: load model failed*"]),
    ("sync", "ops", ["the vdsp_params JSON does not load as a fused op: vsx.Operator.load_ops_from_json_file "
                     "raised RuntimeError*"]),
    ("sync", "stream", ["the stream failed: stream.run_sync of images 1-1 (ILSVRC2012_val_00000001.png) "
                        "raised ValueError: run_sync: the device stream failed*"]),
    ("async", "stream", ["the stream failed: stream.run_async of images 1-1 (ILSVRC2012_val_00000001.png) "
                         "(call 0) raised ValueError*"]),
    ("async", "closed", ["the stream closed (ValueError: get_operator_output: the stream is closed*) with "
                         "1 image(s) of call 0 unanswered (while: waiting for the stream's outputs of *"]),
    ("sync", "nan", ["the first output holds NaN or infinite scores for 1 of 1 images of this call: "
                     "ILSVRC2012_val_00000001.png (while: stream.run_sync of images 1-1 *"]),
    ("async", "shape", ["the first output of ILSVRC2012_val_00000001.png has shape (2, 1000), expected "
                        "(1, classes) or (classes,)*"]),
    ("sync", "crash", ["the VastStreamX process was killed by signal 6 (SIGABRT) while: stream.run_sync of *"]),
])
def test_each_failure_names_model_device_and_files(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                   mode: str, fail: str, lines: list[str]) -> None:
    monkeypatch.setenv("VSX_DOUBLE_FAIL", fail)
    result = run(project, f"--vsx-mode={mode}", "--precision=fp16", "-k", "stub-colours and not 1001")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*_ stub/stub-colours[[]vsx-fp16[]] _*", *lines,
                                 "  model: stub/stub-colours vsx/fp16, compiled model */stub-colours-fp16-"
                                 "none-3_32_32-vacc/stub-colours (stub-colours.onnx)",
                                 "  vdsp_params: */models/vdsp_params/stub-colours-vdsp_params.json",
                                 "  device: 0", "  its log: */vsx-runs/stub-colours-fp16-*/vsx.stderr.log"])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.slow  # the timeout itself takes a second
@pytest.mark.parametrize("mode, waiting", [("sync", "stream.run_sync of images 2-2 (*)"),
                                           ("async", "waiting for the stream's outputs of images 2-2 (*) (call 1)")])
def test_a_stream_that_stops_answering_is_killed(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                 mode: str, waiting: str) -> None:
    log = project.root / "calls.jsonl"
    monkeypatch.setenv("VSX_DOUBLE_FAIL", "hang")
    monkeypatch.setenv("VSX_DOUBLE_AT", "1")
    monkeypatch.setenv("VSX_DOUBLE_LOG", str(log))
    result = run(project, f"--vsx-mode={mode}", "--vsx-timeout=1", "--precision=fp16", "-k",
                 "stub-colours and not 1001")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"the stream stopped answering: nothing within 1 s (--vsx-timeout) while: "
                                 f"{waiting}; the VastStreamX process and its children were killed"])
    assert gone_within(calls(log)[0]["pid"])


def test_missing_sdk_skips_with_the_reason_and_strict_mode_fails(project: Project,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    reason = (f"VastStreamX SDK not found: `import vaststreamx` fails in {sys.executable} "
              "(ModuleNotFoundError: No module named 'vaststreamx'); run on a device host with the "
              "SDK installed, or pass --vsx-python with the interpreter that has it")
    result = run(project)
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines([f"skipped (4): {reason}",
                                 "ERROR: 0 of 4 selected accuracy tests measured: 4 skipped "
                                 "(VastStreamX SDK not found)"])
    strict = run(project, "--vaccbench-strict")
    strict.assert_outcomes(failed=4)
    strict.stdout.fnmatch_lines([f"strict mode (--vaccbench-strict): {reason}"])
    absent = run(project, "--vsx-python=/nonexistent/python3", "-k", "stub-colours and fp16")
    absent.stdout.fnmatch_lines(["*VastStreamX SDK not found: `import vaststreamx` fails in "
                                 "/nonexistent/python3 (cannot run /nonexistent/python3: No such file*"])


def test_results_record_sdk_device_and_file_digests(project: Project) -> None:
    from pytest_vaccbench.baselines import read_yaml

    result = run(project, "-k", "stub-colours and fp16 and not 1001", "--update-baselines")
    result.assert_outcomes(passed=1)
    recorded = read_yaml(project.root / "baselines" / "stub.yaml")["models"]["stub-colours"]["expected"]
    run_entry = recorded["colours"]["vsx/fp16"]
    compiled = project.prefixes[1].with_suffix(".onnx")  # the fp16 stand-in
    vdsp = project.models / "vdsp_params" / "stub-colours-vdsp_params.json"
    assert run_entry["options"]["compiled_sha256"] == {compiled.name: hashlib.sha256(compiled.read_bytes()).hexdigest()}
    assert run_entry["options"]["vdsp_sha256"] == hashlib.sha256(vdsp.read_bytes()).hexdigest()
    assert run_entry["options"]["vsx_device"] == 0 and run_entry["options"]["batch_size"] == 1
    assert run_entry["options"]["vsx_sdk"] == "0.0.0+vaccbench.testdouble"
    assert "vaststreamx 0.0.0+vaccbench.testdouble" in run_entry["versions"]


def test_crop_resize_ext_when_the_baseline_asks_for_it(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each call passes the vendor sample's per-image short-side resize of each (even) image."""
    log = project.root / "calls.jsonl"
    monkeypatch.setenv("VSX_DOUBLE_LOG", str(log))
    baseline = project.root / "baselines" / "stub.yaml"
    baseline.write_text(baseline.read_text().replace("shape: [3, 32, 32]}", "shape: [3, 32, 32],\n"
                                                     "           crop_resize_ext: true}"))
    result = run(project, "-k", "1001", "--vsx-batch=4")
    result.assert_outcomes(passed=1)
    resize, size = 40, 32  # the JSON's ResizeWidth; its output (the model's input)

    def vendor(w: int, h: int) -> list[int]:  # the vendor sample's get_resize + get_crop, verbatim
        resize_w, resize_h = (resize * w // h, resize) if w > h else (resize, resize * h // w)
        return [(resize_w - size + 1) // 2, (resize_h - size + 1) // 2, resize_w, resize_h]

    submitted = [c for c in calls(log) if c["call"] == "run_sync"]
    assert [c["params"]["crop_resize_ext"] for c in submitted] == [[vendor(w, h) for w, h in c["sizes"]]
                                                                  for c in submitted]
    assert submitted[0]["sizes"][3] == [32, 60]  # 33x61 made even first


def test_the_loss_knob_costs_top1_on_the_device_only(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """VSX_DOUBLE_LOSS swaps top-1 and top-2 of the images it picks: top1 falls, top5 holds."""
    monkeypatch.setenv("VSX_DOUBLE_LOSS", "1")
    result = run(project, "-k", "stub-colours and fp16 and not 1001")
    result.assert_outcomes(failed=1)
    row = summary_table(result.outlines)["stub/stub-colours vsx/fp16"]
    assert float(row[0]) < 75.0
    result.stdout.fnmatch_lines(["*top5: measured  87.500  expected  87.500*"])


@pytest.mark.slow
def test_each_xdist_worker_holds_its_own_device(project: Project) -> None:
    pytest.importorskip("xdist")
    log = project.root / "calls.jsonl"
    os.environ["VSX_DOUBLE_LOG"] = str(log)  # runpytest_subprocess: the environment, not monkeypatch
    try:
        result = project.pytester.runpytest_subprocess(
            "suites", "-p", "no:cacheprovider", f"--vamp-root={project.models}", "-n", "2",
            "--devices", "4,7", f"--dataset={project.root / 'colours' / 'images'}",
            f"--vaccbench-cache={project.root / 'cache'}", "-k", "stub-colours and not 1001")
    finally:
        del os.environ["VSX_DOUBLE_LOG"]
    result.assert_outcomes(passed=2)
    devices = {c["worker"]: c["device"] for c in calls(log) if c["call"] == "set_device"}
    assert set(devices.values()) <= {4, 7} and len(set(devices.values())) == len(devices)


# --- plain functions -------------------------------------------------------------------------

def odd_photos(shared_data: Path, count: int = 12) -> list[Path]:
    from PIL import Image

    photos = sorted((shared_data / "imagenet-sample").glob("*.JPEG"))
    odd = [p for p in photos if any(side % 2 for side in Image.open(p).size)]
    return odd[:count] + sorted((shared_data / "ilsvrc2012-val-subset" / "images").glob("*"))[:2]


@pytest.mark.slow
def test_a_sequential_run_is_one_runner_job_per_chunk(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """--vaccbench-sequential through Backend.scorer's default: each chunk of the stratified
    order is one `scores` call, one VastStreamX job (its own model load) over its images."""
    select = ("-k", "stub-colours and fp16 and not 1001", "--vaccbench-store=store")
    run(project, *select, "--update-baselines").assert_outcomes(passed=1)
    log = project.root / "calls.jsonl"
    monkeypatch.setenv("VSX_DOUBLE_LOG", str(log))
    result = run(project, *select, "--vaccbench-sequential", "--vaccbench-json=out.json")
    result.assert_outcomes(passed=1)
    (test,) = json.loads((project.root / "out.json").read_text())["tests"]
    info = test["gate"]["sequential"]
    # 8 images, one stratum: a round is one image; too few to stop before the last
    assert (test["n"], info["looks"], info["early"]) == (8, 8, False)
    assert len([c for c in calls(log) if c["call"] == "Model"]) == 8
    assert test["gate"]["stored"]["lost"] == test["gate"]["stored"]["gained"] == 0


def test_host_side_is_the_zoo_script_and_the_cpu_emulation_sees_the_same_pixels(
        shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On real photos with an odd height or width: the runner hands create_image exactly what
    the zoo's script does (its lines, verbatim), and `--preprocess=vsx:` crops exactly what the
    fused op gets from it."""
    from pytest_vaccbench.backends.vsx_runner import host_image
    from pytest_vaccbench.preprocess import load_crop, normalize
    from pytest_vaccbench.vdsp import preprocess_option

    monkeypatch.syspath_prepend(str(DOUBLE))
    import vaststreamx as vsx

    zoo_json = ROOT / "pytest_vaccbench" / "data" / "vdsp" / "timm-mobilenetv2_100-vdsp_params.json"
    fused, spec = vsx.Operator.load_ops_from_json_file(str(zoo_json))[0], preprocess_option(f"vsx:{zoo_json}")[1]
    for path in odd_photos(shared_data):
        cv_image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if cv_image.shape[0] % 2 != 0 or cv_image.shape[1] % 2 != 0:
            cv_image = cv2.resize(cv_image, (cv_image.shape[1] // 2 * 2, cv_image.shape[0] // 2 * 2))
        image = np.stack(cv2.split(cv2.cvtColor(cv_image, cv2.COLOR_BGR2RGB)))
        hosted = host_image(str(path))
        np.testing.assert_array_equal(hosted, image, err_msg=str(path))
        device = fused.run(vsx.create_image(hosted, vsx.ImageFormat.RGB_PLANAR, hosted.shape[2],
                                            hosted.shape[1], 0), None)
        np.testing.assert_array_equal(device, normalize(load_crop(path, spec)[None], spec), err_msg=str(path))


def test_vsx_is_registered_with_the_compiled_precisions() -> None:
    assert available()["vsx"] == "pytest_vaccbench.backends.vsx:VsxBackend"
    assert get_backend("vsx").precisions == get_backend("vamp").precisions


def test_settings_take_the_pool_device_and_fall_back_to_vamp_root(tmp_path: Path) -> None:
    settings = VsxSettings.from_options({"vamp_root": str(tmp_path), "device": 5, "vsx_mode": "async"})
    assert (settings.root, settings.device, settings.mode, settings.python) == (tmp_path, 5, "async",
                                                                                (sys.executable,))
    assert VsxSettings.from_options({"vsx_root": "/a", "vamp_root": "/b"}).root == Path("/a")
    assert VsxSettings.from_options({}).device == 0


def test_sdk_probe_reads_the_version_after_the_sdk_s_own_output(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "fake" / "vaststreamx"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("print('[VSX] runtime 2.8 loaded')\n__version__ = '2.8.1'\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    assert find_sdk((sys.executable,)).version == "2.8.1"


def test_first_scores_checks_count_shape_and_values() -> None:
    rows = np.eye(4, dtype=np.float32)
    as_numpy = np.asarray
    assert first_scores([[rows[0][None]], [rows[1]]], ["a", "b"], as_numpy).argmax(axis=1).tolist() == [0, 1]
    with pytest.raises(Failure, match=r"answered 1 outputs for a call of 2 images \(a \.\.\.\)"):
        first_scores([[rows[0]]], ["a", "b"], as_numpy)
    with pytest.raises(Failure, match=r"first output of b has shape \(5,\), expected \(1, 4\) like"):
        first_scores([[rows[0]], [np.ones(5)]], ["a", "b"], as_numpy)
    with pytest.raises(Failure, match="NaN or infinite scores for 1 of 2 images of this call: b"):
        first_scores([[rows[0]], [np.array([np.inf, 0, 0, 0])]], ["a", "b"], as_numpy)


def test_collect_gathers_one_call_answered_in_parts_and_refuses_extra_outputs() -> None:
    class Fed:
        def __init__(self, answers: list) -> None:
            self.answers = answers

        def get_operator_output(self, _: object) -> object:
            if not self.answers:
                raise ValueError("closed")
            return self.answers.pop(0)

    consumer = Consumer(Fed([None, ["o1"], ["o2", "o3"]]), None)
    consumer.start()
    assert collect(consumer, 0, 3) == ["o1", "o2", "o3"]
    consumer = Consumer(Fed([["o1", "o2", "o3"]]), None)
    consumer.start()
    with pytest.raises(Failure, match="answered 3 outputs for call 0 of 2 images"):
        collect(consumer, 0, 2)


def test_events_keep_the_step_and_log_other_output() -> None:
    class Log(list):
        write = list.append

    log = Log()
    events = Events(log)
    for line in [f"{MARK}{json.dumps({'step': 'vsx.set_device(0)'})}", "[VSX] device ready",
                 f"{MARK}not json", f"{MARK}{json.dumps({'error': 'x', 'step': 'build'})}"]:
        events.handle(line)
    assert (events.step, events.error) == ("build", "x")
    assert log == ["[VSX] device ready\n", f"{MARK}not json\n"]


def test_an_unknown_vsx_mode_from_an_ini_file_is_refused_at_startup() -> None:
    from pytest_vaccbench.errors import VaccbenchError
    from pytest_vaccbench.options import check_options

    with pytest.raises(VaccbenchError, match="--vsx-mode=fast: must be sync or async"):
        check_options({"vsx_mode": "fast"})
