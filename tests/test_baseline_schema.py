"""Every field of a baseline file is validated when read: one error with file:line, never a
traceback, for wrong types, ranges, misspelt keys and absurd nesting (baseline_schema)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vaccbench.baseline_schema import MODEL_FIELDS, RUN_FIELDS
from pytest_vaccbench.baselines import load_families, load_family
from pytest_vaccbench.errors import BaselineError

ROOT = Path(__file__).resolve().parents[1]
HEAD = "family: fam\npreprocess: {resize: 256, crop: 224}\nmodels:\n  timm-x:\n"
MODEL = ("    name: x\n    source: timm\n    library: timm\n    arch: x\n    input_size: 224\n")


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fam.yaml"
    path.write_text(text)
    with pytest.raises(BaselineError) as info:
        load_family(path)
    return str(info.value).replace(str(path), "fam.yaml")


def _model_error(tmp_path: Path, extra: str) -> str:
    return _error(tmp_path, HEAD + MODEL + extra)


@pytest.mark.parametrize(("extra", "message"), [
    ("    published: {top1: abc, top5: 90}\n",
     "fam.yaml:10: models.timm-x.published.top1 must be a number, got 'abc'"),
    ("    batch_size: eight\n", "fam.yaml:10: models.timm-x.batch_size must be a positive integer, got 'eight'"),
    ("    preprocess: {resize: 0}\n", "fam.yaml:10: models.timm-x.preprocess.resize must be a positive integer, got 0"),
    ("    preprocess:\n      mean: [x, 0.5, 0.5]\n",
     "fam.yaml:11: models.timm-x.preprocess.mean[0] must be a number, got 'x'"),
    ("    num_classes: 10\n", "fam.yaml:10: models.timm-x.num_classes must be one of 1000, 1001, got 10"),
    ("    tolerance: {top1: -1}\n", "fam.yaml:10: models.timm-x.tolerance.top1 must be >= 0, got -1"),
    ("    tolerance: {top1: .nan}\n", "fam.yaml:10: models.timm-x.tolerance.top1 must be a finite number, got nan"),
    ("    min_agreement: 120\n", "fam.yaml:10: models.timm-x.min_agreement must be a percentage between 0 and 100"),
    ("    weights: {file: a.pth, key_map: sorted}\n",
     "fam.yaml:10: models.timm-x.weights.key_map must be one of names, by-order, got 'sorted'"),
    ("    expected:\n      val:\n        reference/fp32: {tpo1: 99, tpo5: 99}\n",
     "fam.yaml:12: models.timm-x.expected.val.reference/fp32.tpo1 is not a known key: "
     "did you mean `top1`?"),
    ("    expected:\n      val:\n        reference/fp32: {top1: 150, top5: 99}\n",
     "fam.yaml:12: models.timm-x.expected.val.reference/fp32.top1 must be a percentage between 0 and 100, got 150"),
    ("    expected:\n      val:\n        reference/fp32: {top1: 70, n: 0}\n",
     "fam.yaml:12: models.timm-x.expected.val.reference/fp32.n must be a positive integer, got 0"),
    ("    expected:\n      val:\n        reference/fp32: {top1: 70, tolerance: {top1: .nan}}\n",
     "fam.yaml:12: models.timm-x.expected.val.reference/fp32.tolerance.top1 must be a finite number"),
    ("    expected:\n      val:\n        reference/fp32: {n: 50}\n",
     "fam.yaml:12: models.timm-x.expected.val.reference/fp32 has neither top1 nor top5: nothing to gate"),
    ("    expected:\n      val:\n        fp32: {top1: 70}\n",
     "fam.yaml:12: models.timm-x.expected.val.fp32 is not a backend/precision run name"),
    ("    expected:\n      val:\n        refrence/fp32: {top1: 70}\n",
     "fam.yaml:12: models.timm-x.expected.val.refrence/fp32 names no run a test can make "
     "('refrence' is not a backend): did you mean reference/fp32? backends: onnxruntime, "
     "reference, vamp"),
    ("    expected:\n      val:\n        onnxruntime/int8-percentil+keep-conv0: {top1: 70}\n",
     "fam.yaml:12: models.timm-x.expected.val.onnxruntime/int8-percentil+keep-conv0 names no run a "
     "test can make (backend 'onnxruntime' has no precision 'int8-percentil'): did you mean "
     "onnxruntime/int8-percentile+keep-conv0?"),
    ("    flavour: sour\n", "fam.yaml:10: models.timm-x.flavour is not a known key"),
    ("    input_sise: 224\n", "fam.yaml:10: models.timm-x.input_sise is not a known key: did you mean `input_size`?"),
])
def test_a_wrong_field_anywhere_names_file_line_and_field(tmp_path: Path, extra: str, message: str) -> None:
    assert message in _model_error(tmp_path, extra)


def test_wrong_types_in_required_fields_and_at_the_top(tmp_path: Path) -> None:
    text = HEAD + MODEL.replace("input_size: 224", "input_size: abc")
    assert "fam.yaml:9: models.timm-x.input_size must be a positive integer, got 'abc'" in _error(tmp_path, text)
    assert "fam.yaml:1: the file must be a mapping with family" in _error(tmp_path, "- a\n- b\n")
    assert "fam.yaml:1: the file is missing field(s) preprocess" in _error(tmp_path, "family: f\nmodels: {}\n")
    assert "fam.yaml:3: tolerance.top5 must be >= 0" in _error(
        tmp_path, "family: f\npreprocess: {resize: 8}\ntolerance: {top1: 1, top5: -2}\nmodels: {}\n")


def test_a_20000_deep_nested_list_is_one_error(tmp_path: Path) -> None:
    deep = "[" * 20000 + "]" * 20000
    message = _model_error(tmp_path, f"    preprocess:\n      mean: {deep}\n")
    assert message.startswith("fam.yaml:11: lists or mappings nested too deeply")


def test_every_committed_baseline_and_the_build_field_are_accepted(tmp_path: Path) -> None:
    families = load_families(ROOT / "baselines")
    assert len(families) == 5
    path = tmp_path / "fam.yaml"
    path.write_text(HEAD + MODEL + "    build: builds/x.yaml\n")
    assert load_family(path).models["timm-x"].key == "timm-x"


def test_every_field_of_the_schema_is_documented() -> None:
    schema = (ROOT / "baselines" / "SCHEMA.md").read_text()
    for name in [*MODEL_FIELDS, *RUN_FIELDS]:
        assert f"`{name}`" in schema or f"{name}:" in schema, name


def test_nan_published_figure_is_refused(tmp_path: Path) -> None:
    message = _model_error(tmp_path, "    published: {top1: .nan, top5: 90}\n")
    assert "fam.yaml:10: models.timm-x.published.top1 must be a finite number, got nan" in message
