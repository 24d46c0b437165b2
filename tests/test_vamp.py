"""The vamp backend, end to end through the test double of the vendor's runner (tests/vamp_stub.py).

The stand-in compiled model is a hand-built nearest-colour classifier, and the dataset is
solid-colour images with known labels, so every expected number is known by construction:
6 of 8 images are labelled with their colour's class (top1 = 75.0) and one more has its
label among the 5 nearest colours (top5 = 87.5). Any mix-up of input/output order, of class
indices or of the 1001-class offset changes these numbers.
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

from pytest_vaccbench.backends.compiled import find_compiled, parse_deploy_dir, parse_model_dir
from pytest_vaccbench.backends.vamp import VampError, read_outputs, run_vamp
from pytest_vaccbench.baselines import load_family

sys.path.insert(0, str(Path(__file__).parent))
import vamp_standin  # noqa: E402
from vaccbench_fake import summary_table  # noqa: E402

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
# imported here, before any pytester fixture snapshots sys.modules: onnx's native module
# cannot be imported a second time in one process
pytest.importorskip("onnx")

from colour_zoo import CENTROIDS, VDSP, write_colours  # noqa: E402  (the colours dataset)

BASELINE = """\
family: stub
preprocess: {resize: 40, resize_mode: square, crop: 32, library: cv2}
models:
  stub-colours:
    name: colours
    source: stub
    library:
    arch:
    input_size: 32
    expected:
      colours:
        vamp/int8-percentile: {top1: 75.0, top5: 87.5}
        vamp/fp16: {top1: 75.0, top5: 87.5}
  stub-colours1001:
    name: colours with a background class
    source: stub
    library:
    arch:
    input_size: 32
    vamp: {model: legacy/c1001/colours1001, vdsp_params: colours.json, precision: int8-max,
           shape: [3, 32, 32]}
    expected:
      colours:
        vamp/int8-max: {top1: 75.0, top5: 87.5}
  stub-notcompiled:
    name: nothing compiled
    source: stub
    library:
    arch:
    input_size: 32
"""


class Project:
    """A pytester project: suites/, baselines/, the colours dataset and --vamp-root models/."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.root = pytester.path
        vdsp = write_colours(self.root)
        onnx = vamp_standin.colour_model(self.root / "export" / "colours.onnx", CENTROIDS)
        self.models = self.root / "models"
        self.prefixes = vamp_standin.install(self.models, "stub-colours", onnx, vdsp,
                                             ["int8-percentile", "fp16"], 32)
        shifted = {k + 1: c for k, c in CENTROIDS.items()}  # index 0 = background
        vamp_standin.colour_model(self.models / "legacy" / "c1001" / "colours1001.onnx", shifted, 1001)
        (self.models / "colours.json").write_text(json.dumps(VDSP))
        pytester.makefile(".yaml", **{"suites/vamp": "baselines: ../baselines\nbackends: [vamp]\n"})
        (self.root / "baselines").mkdir()
        (self.root / "baselines" / "stub.yaml").write_text(BASELINE)

    def args(self, *extra: str) -> list[str]:
        return ["suites", "-p", "no:cacheprovider", "-rs", f"--vamp-bin={vamp_standin.stub_command()}",
                f"--vamp-root={self.models}", f"--dataset={self.root / 'colours' / 'images'}",
                f"--vaccbench-cache={self.root / 'cache'}", *extra]

    def run(self, *extra: str) -> pytest.RunResult:
        return self.pytester.runpytest(*self.args(*extra))


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    return Project(pytester)


def test_gate_passes_through_the_stand_in(project: Project) -> None:
    result = project.run()
    result.assert_outcomes(passed=3, skipped=1)
    table = summary_table(result.outlines)
    for test in ("stub/stub-colours vamp/int8-percentile", "stub/stub-colours vamp/fp16",
                 "stub/stub-colours1001 vamp/int8-max"):
        assert table[test] == ["75.000", "+0.000", "0.500", "8", "passed"]  # 80 columns: compact
    result.stdout.fnmatch_lines(["SKIPPED [[]1] baselines/stub.yaml:*: no compiled model for "
                                 "stub/stub-notcompiled: looked in */models for stub-notcompiled-"
                                 "<fp16|int8>-<calibration>-3_<h>_<w>-vacc/stub-notcompiled*"])


def test_precision_comes_from_the_compiled_models(project: Project) -> None:
    result = project.pytester.runpytest(*project.args("--collect-only", "-q"))
    ids = {line.split("::", 1)[1] for line in result.stdout.lines if "::" in line}
    assert ids == {"stub/stub-colours[vamp-fp16]", "stub/stub-colours[vamp-int8-percentile]",
                   "stub/stub-colours1001[vamp-int8-max]", "stub/stub-notcompiled[vamp-uncompiled]"}
    result = project.run("--precision=int8-kl_divergence", "-k", "stub-colours and not 1001")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no int8-kl_divergence compiled model for stub/stub-colours "
                                 "(compiled: fp16 (*), int8-percentile (*)*"])


def test_missing_binary_skips_every_vamp_test(project: Project) -> None:
    result = project.pytester.runpytest(*project.args("--vamp-bin=/nonexistent/vamp"))
    result.assert_outcomes(skipped=4)
    reason = ("vamp binary not found: '/nonexistent/vamp' is not an executable on PATH; run on a "
              "machine with a VastAI accelerator and its SDK, or pass --vamp-bin")
    # -rs groups the two tests of one entry (3 lines); the vaccbench summary shows it once
    assert result.stdout.str().count(reason) == 4
    result.stdout.fnmatch_lines([f"skipped (4): {reason}",
                                 "ERROR: 0 of 4 selected accuracy tests measured: 4 skipped "
                                 "(vamp binary not found)"])
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED  # nothing measured is not green



@pytest.mark.parametrize("mode, lines", [
    ("crash", ["*vamp exited with code 3.", "*command: * -m */stub-colours-int8-percentile-3_32_32-vacc/"
               "stub-colours --vdsp_params * -i 1 -p 1 -b 1 --datalist *npz_datalist.txt --path_output *",
               "last lines of its stderr (*vamp.stderr.log):",
               "  | [[]vamp] error: VACC runtime: stream 1 exceeded its memory pool (code 0x2f)"]),
    ("few", ["*vamp wrote 7 output files for 8 inputs in *: missing output_000007.npz",
             "last lines of vamp's stderr (*vamp.stderr.log):"]),
    ("many", ["*vamp wrote 9 output files for 8 inputs in *: unexpected output_000008.npz"]),
    ("shape", ["*output_000000.npz: output_0 has shape (3, 1000), expected (1, classes) or (classes,)*"]),
    ("nan", ["*output_000000.npz: output_0 holds 10 NaN/inf values of 1000"]),
])
def test_each_failure_of_vamp_has_its_message(project: Project, monkeypatch: pytest.MonkeyPatch,
                                              mode: str, lines: list[str]) -> None:
    monkeypatch.setenv("VAMP_STUB_FAIL", mode)
    result = project.run("--precision=int8-percentile", "-k", "stub-colours and not 1001")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*_ stub/stub-colours[[]vamp-int8-percentile[]] _*", *lines])
    assert "Traceback" not in result.stdout.str()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in state


def gone_within(pid: int, seconds: float = 5) -> bool:
    """Whether process `pid` ends (or is a zombie) within `seconds`."""
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


def test_a_hanging_vamp_is_killed_with_its_children(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    child_file = project.root / "child.pid"
    monkeypatch.setenv("VAMP_STUB_FAIL", "hang")
    monkeypatch.setenv("VAMP_STUB_CHILD", str(child_file))
    start = time.monotonic()
    result = project.run("--precision=int8-percentile", "-k", "stub-colours and not 1001",
                         "--vamp-timeout=3")
    assert time.monotonic() - start < 30
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*vamp did not finish within 3 s (--vamp-timeout); it and its child "
                                 "processes were killed.", "*| [[]vamp] waiting for the device ..."])
    assert gone_within(int(child_file.read_text()))


def test_missing_model_or_vdsp_file_fails_when_the_baseline_expects_results(project: Project) -> None:
    (project.prefixes[0].parent / "stub-colours.onnx").unlink()  # int8-percentile folder, now empty
    (project.models / "colours.json").unlink()  # the 1001 model's vdsp_params
    project.prefixes[1].with_suffix(".onnx").rename(project.root / "moved.onnx")  # fp16 folder
    (project.prefixes[1].parent).rmdir()
    result = project.run("-k", "stub-colours")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines_random([
        "*compiled model not found: no stub-colours.* files in */stub-colours-int8-percentile-3_32_32-vacc*",
        "*stub.yaml expects vamp/fp16 results for stub-colours, but there is no fp16 compiled model: "
        "looked in */models for stub-colours-<fp16|int8>-<calibration>-3_<h>_<w>-vacc/stub-colours*",
        "*vdsp_params JSON not found for */legacy/c1001/colours1001: looked for */models/colours.json"])


@pytest.mark.parametrize("block, message", [
    ("{modle: legacy/c1001/colours1001}", "`vamp:` of stub-colours1001 must be a mapping (or a list "
                                          "of them) with `model` and optional vdsp_params, precision, shape, crop_resize_ext"),
    ("{model: legacy/c1001/colours1001}", "`vamp:` of stub-colours1001: no `precision`, and the folder "
                                          "name 'c1001' does not say it*"),
    ("{model: x/y, precision: fp16, shape: [224, 224]}", "`vamp.shape` of stub-colours1001 must be "
                                                         "[[]channels, height, width]"),
])
def test_a_bad_vamp_block_is_a_collection_error_naming_the_line(project: Project, block: str,
                                                                message: str) -> None:
    baseline = project.root / "baselines" / "stub.yaml"
    text = baseline.read_text()
    start = text.index("    vamp: {model: legacy")
    end = text.index("    expected:", start)
    baseline.write_text(text[:start] + f"    vamp: {block}\n" + text[end:])
    result = project.run()
    result.stdout.fnmatch_lines([f"*/baselines/stub.yaml:20: {message}"])
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_vdsp_output_size_must_match_the_compiled_input(project: Project) -> None:
    vdsp = project.models / "vdsp_params" / "stub-colours-vdsp_params.json"
    config = json.loads(vdsp.read_text())
    config["OpConfig"].update(OimageWidth=24, OimageHeight=24)
    vdsp.write_text(json.dumps(config))
    result = project.run("--precision=fp16", "-k", "stub-colours and not 1001")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*stub-colours-vdsp_params.json makes 24x24 inputs, but the compiled "
                                 "model */stub-colours-fp16-none-3_32_32-vacc/stub-colours takes 32x32"])


def test_each_xdist_worker_holds_its_own_device(project: Project) -> None:
    pytest.importorskip("xdist")
    log = project.root / "vamp-calls.jsonl"
    env = {"VAMP_STUB_LOG": str(log)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = project.pytester.runpytest_subprocess(*project.args("-n", "2", "--devices", "4,7",
                                                                     "-k", "stub-colours"))
    finally:
        for key, value in old.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    result.assert_outcomes(passed=3)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 3
    by_worker = {}
    for call in calls:  # each worker holds one device of the pool, and no two the same
        assert call["argv"][call["argv"].index("-d") + 1] == str(call["device"])
        assert by_worker.setdefault(call["worker"], call["device"]) == call["device"]
    assert set(by_worker.values()) <= {4, 7}
    assert len(set(by_worker.values())) == len(by_worker)


def test_preprocess_option_relabels_cpu_backends_only(project: Project) -> None:
    zoo = Path(__file__).parents[1] / "pytest_vaccbench" / "data" / "vdsp" / "timm-mobilenetv2_100-vdsp_params.json"
    result = project.run("--backend=vamp,reference", f"--preprocess=vdsp:{zoo}", "-k", "stub-colours and not 1001")
    assert "stub/stub-colours vamp/int8-percentile" in summary_table(result.outlines)  # its own preprocessing
    result.stdout.fnmatch_lines(["*SKIPPED*--preprocess gives 224x224 images; stub-colours takes 32"])
    collected = project.pytester.runpytest(*project.args("--backend=reference", "--collect-only", "-q",
                                                         f"--preprocess=vdsp:{zoo}"))
    assert "suites/vamp.yaml::stub/stub-colours[reference-fp32+vdsp-timm-mobilenetv2_100]" in collected.stdout.str()
    bad = project.run("--preprocess=torchvision")
    assert "--preprocess=torchvision: expected vdsp:<vdsp_params JSON file>" in bad.stdout.str()


def test_outputs_are_read_in_datalist_order_by_index(tmp_path: Path) -> None:
    rows = np.eye(1000, dtype=np.float32)[[5, 3, 999]]
    np.savez(tmp_path / "output_000000.npz", output_0=rows[0][None])  # (1, 1000)
    np.savez(tmp_path / "output_000001.npz", output_0=rows[1])  # (1000,)
    np.savez(tmp_path / "output_000002.npz", output_0=rows[2].astype(np.float16)[None])
    np.testing.assert_array_equal(read_outputs(tmp_path, 3, tmp_path).argmax(axis=1), [5, 3, 999])
    np.savez(tmp_path / "output_000002.npz", output_0=np.ones((1, 1001), dtype=np.float32))
    with pytest.raises(VampError, match=r"output_000002.npz: output_0 has shape \(1, 1001\), "
                                        r"expected \(1, 1000\) like the outputs before it"):
        read_outputs(tmp_path, 3, tmp_path)
    np.savez(tmp_path / "output_000002.npz", other=rows[2])
    with pytest.raises(VampError, match=r"no `output_0` in this output \(keys: \['other'\]\)"):
        read_outputs(tmp_path, 3, tmp_path)


def test_run_vamp_kills_the_process_group_on_timeout(tmp_path: Path) -> None:
    script = f"sleep 60 & echo $! > {tmp_path}/child; echo starting >&2; sleep 60"
    start = time.monotonic()
    with pytest.raises(VampError, match=r"did not finish within 1 s[\s\S]*\| starting"):
        run_vamp(["sh", "-c", script], 1, tmp_path)
    assert time.monotonic() - start < 10
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)
    with pytest.raises(VampError, match="was killed by signal 9"):
        run_vamp(["sh", "-c", "kill -9 $$"], 10, tmp_path)
    with pytest.raises(VampError, match="cannot start vamp"):
        run_vamp([str(tmp_path / "absent")], 10, tmp_path)
    run_vamp([sys.executable, "-c", "print('ok')"], 10, tmp_path)
    assert (tmp_path / "vamp.stdout.log").read_text() == "ok\n"


@pytest.mark.parametrize("name, parsed", [
    ("mobilenet_v2-int8-percentile-3_224_224-vacc", ("mobilenet_v2", "int8-percentile", 224)),
    ("ghostnet_100-int8-kl_divergence-3_224_224-vacc", ("ghostnet_100", "int8-kl_divergence", 224)),
    ("RepVGG_B1g4-fp16-none-3_224_224-vacc", ("RepVGG_B1g4", "fp16", 224)),
    ("timm-tf_inception_v3-int8-max-3_299_299-vacc", ("timm-tf_inception_v3", "int8-max", 299)),
    ("odd-fp16-none-3_224_256-vacc", ("odd", "fp16", None)),
    ("mobilenet_v2", None), ("mobilenet_v2-int8-percentile-3_224_224", None),
])
def test_model_folder_names(name: str, parsed: tuple | None) -> None:
    assert parse_model_dir(name) == parsed


@pytest.mark.parametrize("name, parsed", [
    ("timm_mobilenetv2_run_stream_fp16", ("timm_mobilenetv2", "fp16")),
    ("timm_mobilenetv2_run_stream_int8_kl_divergence", ("timm_mobilenetv2", "int8-kl_divergence")),
    ("ppcls_ghostnet_x1_0_int8-percentile", ("ppcls_ghostnet_x1_0", "int8-percentile")),
    ("timm_mobilenetv2_run_stream_int8", None),  # which calibration? a `vamp:` block says
    ("timm_mobilenetv2", None),
])
def test_newer_deploy_folder_names(name: str, parsed: tuple | None) -> None:
    assert parse_deploy_dir(name) == parsed


def test_vamp_root_finds_both_layouts(tmp_path: Path) -> None:
    baseline = tmp_path / "mobilenet_v2.yaml"
    baseline.write_text("family: mobilenet_v2\npreprocess: {resize: 256, crop: 224}\nmodels:\n"
                        "  timm-mobilenetv2_100: {name: mobilenetv2, source: timm, library: timm,\n"
                        "    arch: mobilenetv2_100, input_size: 224}\n")
    entry = load_family(baseline).models["timm-mobilenetv2_100"]
    root = tmp_path / "zoo"
    for folder in ("deploy_weights/timm_mobilenetv2_run_stream_fp16",
                   "deploy_weights/timm_mobilenetv2_run_stream_int8_mse",
                   "deploy_weights/timm_mobilenetv2_run_stream_int8",  # no calibration: not used
                   "deploy_weights/timm_resnet18_run_stream_fp16"):  # another model
        (root / folder).mkdir(parents=True)
        (root / folder / "mod.so").touch()
    expected = [("fp16", "timm_mobilenetv2_run_stream_fp16/mod"),
                ("int8-mse", "timm_mobilenetv2_run_stream_int8_mse/mod")]
    for vamp_root in (root, root / "deploy_weights"):  # the workspace, or deploy_weights itself
        found = find_compiled(entry, vamp_root)
        assert [(m.precision, m.prefix.relative_to(root / "deploy_weights").as_posix())
                for m in found] == expected
    older = tmp_path / "older" / "mobilenetv2_100-int8-percentile-3_224_224-vacc"
    older.mkdir(parents=True)
    (older / "mobilenetv2_100.so").touch()
    found = find_compiled(entry, older.parent)
    assert [(m.precision, m.prefix, m.input_size) for m in found] == [
        ("int8-percentile", older / "mobilenetv2_100", 224)]


def test_stub_refuses_a_missing_model(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(vamp_standin.STUB), "-m", str(tmp_path / "absent"),
                           "--vdsp_params", "x.json", "--datalist", "d", "--path_output", "o"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "cannot load model" in done.stderr


def test_failing_int8_build_says_how_to_triage_it_on_the_cpu(project: Project) -> None:
    """The accelerator's layer outputs are out of reach: the message gives the command that
    triages the onnxruntime emulation of the same calibration, with this run's data options."""
    baseline = project.root / "baselines" / "stub.yaml"
    baseline.write_text(baseline.read_text().replace(
        "vamp/int8-percentile: {top1: 75.0", "vamp/int8-percentile: {top1: 90.0"))
    result = project.run("--precision=int8-percentile", "-k", "stub-colours and not 1001", "--limit=8")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*layer triage: the accelerator's layer outputs are not available; rank the layers of the "
        "CPU emulation of int8-percentile with:",
        f"  vaccbench triage stub/stub-colours {project.root / 'colours' / 'images'} "
        "--precision=int8-percentile --limit=8 --weights-dir=* --calib-images=1000"])
    quiet = project.run("--precision=int8-percentile", "-k", "stub-colours and not 1001", "--no-triage")
    quiet.assert_outcomes(failed=1)
    assert "layer triage" not in quiet.stdout.str()
