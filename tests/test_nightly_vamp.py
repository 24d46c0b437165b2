"""A nightly-style strict run against the vamp test double (tests/vamp_stub.py): green only
when every selected model was measured and held; a missing compiled model makes it red and
names the model. The stand-in models and images are those of test_vamp (top1 75.0 known by
construction)."""

from __future__ import annotations

import shutil

import pytest
from test_vamp import Project  # imports cv2, onnx and onnxruntime, or skips

import vamp_standin

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
  stub-late:
    name: compiled late
    source: stub
    library:
    arch:
    input_size: 32
    expected:
      colours:
        vamp/int8-percentile: {top1: 75.0, top5: 87.5}
"""
NEW_MODEL = """\
  stub-new:
    name: not compiled yet
    source: stub
    library:
    arch:
    input_size: 32
"""


@pytest.fixture
def nightly(pytester: pytest.Pytester) -> Project:
    project = Project(pytester)
    (project.root / "baselines" / "stub.yaml").write_text(BASELINE)
    onnx = project.root / "export" / "colours.onnx"
    vamp_standin.install(project.models, "stub-late", onnx, project.root / "colours.json",
                         ["int8-percentile"], 32)
    return project


def test_strict_nightly_is_green_when_every_model_is_measured(nightly: Project) -> None:
    result = nightly.run("--vaccbench-strict")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.OK


def test_strict_nightly_is_red_and_names_a_missing_compiled_model(nightly: Project) -> None:
    shutil.rmtree(nightly.models / vamp_standin.compiled_dir_name("stub-late", "int8-percentile", 32))
    result = nightly.run("--vaccbench-strict", "-k", "stub-late")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*stub.yaml expects vamp/int8-percentile results for stub-late, "
                                 "but there is no int8-percentile compiled model*"])


def test_a_model_never_compiled_fails_in_strict_mode_and_is_not_green_without(nightly: Project) -> None:
    path = nightly.root / "baselines" / "stub.yaml"
    path.write_text(path.read_text() + NEW_MODEL)
    result = nightly.run("--vaccbench-strict", "-k", "stub-new")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["strict mode (--vaccbench-strict): no compiled model for "
                                 "stub/stub-new: looked in *"])
    result = nightly.run("-k", "stub-new")  # not strict: skipped, and a session that measured
    result.assert_outcomes(skipped=1)  # nothing is still not green
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["ERROR: 0 of 1 selected accuracy tests measured: 1 skipped "
                                 "(no compiled model for <model>)"])
