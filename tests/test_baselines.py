"""The committed baselines encode every README row; bad baseline files give clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_vaccbench.baselines import load_families, load_family, update_file
from pytest_vaccbench.errors import BaselineError

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "baselines"


def test_every_readme_row_is_a_model() -> None:
    families = {f.name: f for f in load_families(BASELINES)}
    rows = {name: [m for m in fam.models.values() if m.section == "models"]
            for name, fam in families.items()}
    assert {k: len(v) for k, v in rows.items()} == {
        "efficientnet_lite": 1, "ghostnet": 1, "inception_v3": 6, "mobilenet_v2": 11, "repvgg": 11}
    for entry in (m for ms in rows.values() for m in ms):
        assert entry.published and entry.published.get("top1"), entry.key
        assert entry.input_size in (224, 299), entry.key


def test_seed_facts_are_encoded() -> None:
    mobilenet = load_family(BASELINES / "mobilenet_v2.yaml").models
    timm_row = mobilenet["timm-mobilenetv2_100"]
    assert (timm_row.library, timm_row.arch) == ("timm", "mobilenetv2_100")
    assert dict(timm_row.published) == {"top1": 72.956, "top5": 91.010}
    assert mobilenet["ppcls-MobileNetV2_x0_5"].arch == "mobilenetv2_050"
    assert timm_row.expected["imagenet-val"]["vamp/fp16"]["top1"] == 71.522
    inception = load_family(BASELINES / "inception_v3.yaml")
    assert (inception.preprocess.resize, inception.preprocess.crop) == (342, 299)
    assert inception.preprocess.mean == (0.5, 0.5, 0.5)
    repvgg = load_family(BASELINES / "repvgg.yaml").models
    assert repvgg["official-RepVGG-A0"].sources == ("official", "mmcls")
    assert repvgg["official-RepVGG-A0"].deploy == "reparameterize"
    assert repvgg["official-RepVGG-A0"].expected["imagenet-val"]["vamp/int8-percentile"]["broken"]


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("family: bad\npreprocess: {resize: 256\nmodels:\n  a: 1\n")
    with pytest.raises(BaselineError) as info:
        load_family(path)
    assert f"{path}:" in str(info.value) and "YAML syntax error" in str(info.value)
    assert info.value.line is not None


def test_missing_model_field_names_model_field_and_line(tmp_path: Path) -> None:
    path = tmp_path / "fam.yaml"
    path.write_text("family: fam\npreprocess: {resize: 256, crop: 224}\nmodels:\n"
                    "  timm-x:\n    name: x\n    source: timm\n    library: timm\n"
                    "    input_size: 224\n")
    with pytest.raises(BaselineError) as info:
        load_family(path)
    message = str(info.value)
    assert f"{path}:5:" in message and "timm-x" in message and "arch" in message


def test_unknown_preprocess_key_and_library(tmp_path: Path) -> None:
    path = tmp_path / "fam.yaml"
    path.write_text("family: fam\npreprocess: {resize: 256, crop: 224, colour: red}\nmodels: {}\n")
    with pytest.raises(BaselineError, match=f"{path}:2: preprocess.colour is not a known key"):
        load_family(path)
    path.write_text("family: fam\npreprocess: {resize: 256}\nmodels:\n  k:\n    name: k\n"
                    "    source: x\n    library: keras\n    arch: k\n    input_size: 224\n")
    with pytest.raises(BaselineError, match=f"{path}:7: models.k.library must be one of .*got 'keras'"):
        load_family(path)


def test_unknown_family_lists_the_available_ones() -> None:
    with pytest.raises(BaselineError, match="no baseline file for family.*resnet.*available"):
        load_families(BASELINES, ["resnet"])


def test_update_keeps_comments_and_only_touches_one_entry(tmp_path: Path) -> None:
    path = tmp_path / "mobilenet_v2.yaml"
    shutil.copy(BASELINES / "mobilenet_v2.yaml", path)
    before = path.read_text().splitlines()
    update_file(path, [("timm-mobilenetv2_100", "my-val", "reference/fp32",
                        {"top1": 70.5, "top5": 90.25, "n": 100})])
    after = path.read_text().splitlines()
    added = [line for line in after if line not in before]
    removed = [line for line in before if line not in after]
    assert removed == []
    assert added == ["      my-val:", "        reference/fp32: {top1: 70.5, top5: 90.25, n: 100}"]
    assert load_family(path).models["timm-mobilenetv2_100"].expected["my-val"]["reference/fp32"][
        "top1"] == 70.5
