"""`vaccbench import-readme`: README -> baseline YAML (pytest_vaccbench.importer)."""

from __future__ import annotations

import io
import re
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_vaccbench import importer
from pytest_vaccbench.importer import names, tables
from pytest_vaccbench.baselines import _yaml, load_family, read_yaml
from pytest_vaccbench.cli import main
from pytest_vaccbench.errors import VaccbenchError
from pytest_vaccbench.importer import import_readme, map_models, parse_readme, parse_transforms

SEEDS = {"inception_v3": "000", "mobilenet_v2": "002", "ghostnet": "003", "repvgg": "004"}
DERIVED = ("name", "source", "library", "arch", "input_size", "flops", "params_m", "published")


def plain(node: Any) -> Any:
    """ruamel's round-trip objects -> dicts, lists, floats (3.500 == 3.5)."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, float):
        return float(node)
    return node


def comments(text: str) -> set[str]:
    return {line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line}


def dump(data: Any, path: Path) -> None:
    buffer = io.StringIO()
    _yaml().dump(data, buffer)
    path.write_text(buffer.getvalue())


def write(tmp_path: Path, text: str, name: str = "README.md") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def alias_only(library: str, arch: str) -> None:
    """What `installed_arch` answers where timm/torchvision cannot be imported."""
    return None


@pytest.fixture
def no_torch_libraries(monkeypatch: pytest.MonkeyPatch):
    """timm and torchvision not importable, as on a machine without the `torch` extra."""
    names._library_names.cache_clear()
    monkeypatch.setitem(sys.modules, "timm", None)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    yield
    names._library_names.cache_clear()


# --- the four seed READMEs -> the committed baselines ----------------------------------------

def _seed(seeds: Path, family: str) -> Path:
    return next(seeds.glob(f"{SEEDS[family]}_*.txt"))


@pytest.mark.parametrize("libraries", ["installed", "alias-only"])
@pytest.mark.parametrize("family", sorted(SEEDS))
def test_fresh_import_of_a_seed_gives_the_committed_readme_fields(shared_seeds, project_root, tmp_path,
                                                                  family, libraries, request):
    if libraries == "installed":
        pytest.importorskip("timm")
    else:
        request.getfixturevalue("no_torch_libraries")
    out = tmp_path / f"{family}.yaml"
    result = import_readme(_seed(shared_seeds, family), out)
    assert result.created
    new = plain(read_yaml(out))
    committed = plain(read_yaml(project_root / "baselines" / f"{family}.yaml"))
    assert list(new["models"]) == list(committed["models"])  # every row, in table order
    for key, model in committed["models"].items():
        assert {f: new["models"][key][f] for f in DERIVED} == {f: model[f] for f in DERIVED}, key
        assert new["models"][key]["expected"] == {}
    assert new["family"] == committed["family"]
    assert new["preprocess"] == committed["preprocess"]
    # seed 004 prints no paper title: the committed one was written by hand
    assert new["paper"] == ("" if family == "repvgg" else committed["paper"])
    assert len(load_family(out).models) == len(committed["models"])  # a valid baseline


def _damage(data: Any, with_paper: bool) -> None:
    """Wrong or missing README-derived fields everywhere."""
    data["family"] = "wrong"
    if with_paper:
        data["paper"] = "wrong"
    data["preprocess"]["resize"] = 1
    data["preprocess"]["mean"] = [0, 0, 0]
    del data["preprocess"]["resize_mode"]
    data["preprocess"]["interpolation"] = "nearest"
    for i, model in enumerate(data["models"].values()):
        model["name"] = "wrong"
        model["source"] = "wrong"
        model["arch"] = "wrong"
        model["input_size"] = 1
        model["published"]["top1"] = 0.0
        model["published"]["top5"] = None
        if i == 0:
            del model["flops"], model["params_m"], model["library"]
        else:
            model["flops"] = None
            model["params_m"] = 1000


@pytest.mark.parametrize("family", sorted(SEEDS))
def test_reimport_restores_readme_fields_and_keeps_everything_else(shared_seeds, project_root, tmp_path,
                                                                   family, no_torch_libraries):
    committed_path = project_root / "baselines" / f"{family}.yaml"
    committed_text = committed_path.read_text()
    data = read_yaml(committed_path)
    _damage(data, with_paper=family != "repvgg")
    stale = {"name": "old", "source": "timm", "library": "timm", "arch": "resnet18", "input_size": 224,
             "weights": "old.pth", "expected": {"imagenet-val": {"vamp/fp16": {"top1": 1.5, "top5": 2.5}}}}
    data["models"]["timm-old"] = stale
    out = tmp_path / f"{family}.yaml"
    dump(data, out)

    result = import_readme(_seed(shared_seeds, family), out)

    regenerated = plain(read_yaml(out))
    assert regenerated["models"].pop("timm-old") == stale  # no README row any more: kept as it was
    assert regenerated == plain(read_yaml(committed_path))  # expected, extra_models, weights ... kept
    for key, model in regenerated["models"].items():  # restored fields in their places
        assert list(model) == list(plain(read_yaml(committed_path))["models"][key]), key
    assert result.kept == ["timm-old"]
    assert any("models.timm-old is no row of the README" in p.message and p.path == str(out) and p.line
               for p in result.problems)
    assert not result.added
    assert comments(committed_text) <= comments(out.read_text())


def test_reimport_of_an_unchanged_baseline_changes_nothing(shared_seeds, project_root, tmp_path,
                                                           no_torch_libraries):
    out = tmp_path / "inception_v3.yaml"
    out.write_text((project_root / "baselines" / "inception_v3.yaml").read_text())
    result = import_readme(_seed(shared_seeds, "inception_v3"), out)
    assert (result.added, result.changed, result.kept) == ([], [], [])
    assert out.read_text() == (project_root / "baselines" / "inception_v3.yaml").read_text()


def test_seed_tables_are_read_without_warnings(shared_seeds):
    for family, number in SEEDS.items():
        readme = importer.read_readme(_seed(shared_seeds, family))
        assert readme.problems == [], family
    rows = importer.read_readme(_seed(shared_seeds, "repvgg")).rows
    assert rows[0].sources == ("official", "mmcls") and rows[0].line == 66  # "RepVGG-A0 official" / "mmcls"


# --- small hand-written READMEs ---------------------------------------------------------------

JOINED = """
# ResNet
- [ResNet: Deep Residual Learning for Image Recognition](https://arxiv.org/abs/1512.03385)

| model | source | top1 | top5 | flops(G) | params(M) | input size |
| :---: | :--: | :--: | :--: | :---: | :----: | :--------: |
| RepVGG-A0 |[official](https://github.com/DingXiaoH/RepVGG) <br/>[mmcls](https://x/repvgg)</br>| 72.41 | 90.50 | 1.4 | 8.30 | 224 |
| mobilenetv2 | timm | 72.956 | 91.010 | 0.328 | 3.500 | 224 |
| mobilenetv2 | torchvision | 71.878 | 90.286 | 0.328 | 3.505 | 224 |
"""


def test_joined_sources_in_one_cell_and_library_names_in_keys():
    readme = parse_readme(JOINED)
    assert readme.title == "ResNet"
    assert readme.paper == "ResNet: Deep Residual Learning for Image Recognition"
    assert [r.sources for r in readme.rows] == [("official", "mmcls"), ("timm",), ("torchvision",)]
    models, problems = map_models(readme, alias_only)
    assert problems == []
    assert [m.key for m in models] == ["official-RepVGG-A0", "timm-mobilenetv2_100",
                                       "torchvision-mobilenet_v2"]
    first = models[0].fields
    assert first == {"name": "RepVGG-A0", "source": ["official", "mmcls"], "library": "timm",
                     "arch": "repvgg_a0", "input_size": 224,
                     "flops": {"value": Decimal("1.4"), "unit": "G"}, "params_m": Decimal("8.30"),
                     "published": {"top1": Decimal("72.41"), "top5": Decimal("90.50")}}
    assert (models[1].fields["library"], models[1].fields["arch"]) == ("timm", "mobilenetv2_100")
    assert (models[2].fields["library"], models[2].fields["arch"]) == ("torchvision", "mobilenet_v2")


SEPARATE_LINES = """
Skip to content
History
RepVGG

Model Info

模型 源码 top1 top5 FLOPs (B) Params(M) input size
RepVGG-A0 official
mmcls
72.41 90.50 1.4 8.30 224
RepVGG-B3 official
mmcls
timm
80.52 95.26 26.22 110.96 224
RepVGG-B1 official 78.37 94.11 11.8 51.82 224

测评数据集说明
"""


def test_sources_on_separate_lines_of_github_page_text():
    readme = parse_readme(SEPARATE_LINES)
    assert readme.title == "RepVGG" and readme.paper is None
    assert [(r.name, r.sources, r.line) for r in readme.rows] == [
        ("RepVGG-A0", ("official", "mmcls"), 9),
        ("RepVGG-B3", ("official", "mmcls", "timm"), 12),
        ("RepVGG-B1", ("official",), 16)]
    assert readme.rows[1].cells == {"top1": Decimal("80.52"), "top5": Decimal("95.26"),
                                    "flops": Decimal("26.22"), "params": Decimal("110.96"),
                                    "input_size": Decimal("224")}
    assert readme.problems == []


def test_github_page_text_with_a_text_column_after_the_numbers():
    readme = parse_readme("模型 源码 top1 top5 flops(G) params(M) input size dataset\n"
                          "cspresnet50 timm 79.582 94.704 10.038 21.576 256 imagenet\n"
                          "cspresnet50 mmcls\nppcls\n79.55 94.68 6.96 21.62 256 imagenet\n")
    assert [(r.sources, r.cells["input_size"], r.line) for r in readme.rows] == [
        (("timm",), 256, 2), (("mmcls", "ppcls"), 256, 3)]
    assert [(p.line, p.message) for p in readme.problems] == [
        (1, "table column(s) ['dataset'] unknown: their values are ignored")]


@pytest.mark.parametrize("heading, kind, unit", [
    ("flops(G)", "flops", "G"), ("flops(M)", "flops", "M"), ("FLOPs (B)", "flops", "B"),
    ("GFLOPs", "flops", "G"), ("params(M)", "params", None), ("Params(M)", "params", None),
    ("input size", "input_size", None), ("模型", "name", None), ("源码", "source", None),
    ("Model", "name", None), ("Source", "source", None), ("Top-1", "top1", None), ("top5", "top5", None),
])
def test_column_headings(heading, kind, unit):
    column = tables._heading(heading)
    assert (column.kind, column.unit) == (kind, unit)


@pytest.mark.parametrize("header, unit, value", [
    ("模型 源码 top1 top5 flops(G) params(M) input size", "G", "0.342"),
    ("模型 源码 top1 top5 flops(M) params(M) input size", "M", "327.650"),
    ("model source top1 top5 FLOPs (B) Params(M) input size", "B", "1.4"),
    ("Model Source Top-1 Top-5 GFLOPs Params(M) Input Size", "G", "4.1"),
])
def test_units_from_space_separated_headers(header, unit, value):
    readme = parse_readme(f"{header}\nnet timm 70.1 90.2 {value} 3.50 224\n")
    (model,), problems = map_models(readme, lambda library, arch: True)
    assert problems == []
    assert model.fields["flops"] == {"value": Decimal(value), "unit": unit}
    assert model.fields["params_m"] == Decimal("3.50") and model.fields["input_size"] == 224


def test_english_and_chinese_headings_read_the_same_table():
    row = "mobilenetv2 | timm | 72.956 | 91.010 | 327.544 | 3.5 | 224 |"
    chinese = parse_readme(f"模型 | 源码 | top1 | top5 | flops(M) | params(M) | input size |\n"
                           f"---|---|---|---|---|---|---|\n{row}\n")
    english = parse_readme(f"| Model | Source | Top1 | Top5 | FLOPs(M) | Params(M) | Input Size |\n"
                           f"|---|---|---|---|---|---|---|\n| {row}\n")
    assert chinese.rows[0].cells == english.rows[0].cells
    assert chinese.rows[0].cells["top5"] == Decimal("91.010")


def test_a_missing_cell_is_reported_with_its_line_and_left_null():
    readme = parse_readme("""\
| model | source | top1 | top5 | flops(G) | params(M) | input size |
|---|---|---|---|---|---|---|
| resnet50 | timm | 80.4 |  | 4.1 | 25.6 | 224 |
| resnet18 | timm | 69.7 | 89.1 | 1.8 | - | 224 |
| resnet34 | timm | 73.3 | 91.4 |
""")
    assert [r.name for r in readme.rows] == ["resnet50", "resnet18", "resnet34"]
    assert readme.rows[0].cells["top5"] is None and readme.rows[1].cells["params"] is None
    messages = {(p.line, p.message) for p in readme.problems}
    assert (3, "timm resnet50: no top5 value; left null") in messages
    assert (4, "timm resnet18: no params(M) value; left null") in messages
    assert any(line == 5 and "4 cells for 7 columns" in m and "flops(G), params(M), input size" in m
               for line, m in messages)
    models, _ = map_models(readme, alias_only)
    assert models[0].fields["published"] == {"top1": Decimal("80.4"), "top5": None}
    assert models[2].fields["flops"] is None and models[2].fields["input_size"] is None


def test_a_space_separated_row_it_cannot_read_is_reported_not_dropped():
    readme = parse_readme("""\
title
模型 源码 top1 top5 flops(G) params(M) input size
resnet50 timm 80.4 4.1 25.6 224
resnet18 timm 69.7 89.1 1.8 11.7 224
resnet34 timm 73.3 91.4 3.6 21.8 two-two-four
""")
    assert [r.name for r in readme.rows] == ["resnet18"]
    lines = [p.line for p in readme.problems]
    assert lines == [3, 5]
    assert readme.problems[0].message == (
        "cannot read table row 'resnet50 timm 80.4 4.1 25.6 224': expected 模型 | 源码 | top1 | top5 | "
        "flops(G) | params(M) | input size (numbers where numbers go, a cell missing?); skipped")


def test_a_readme_without_a_table_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path, "# Foo\nNo table here.\n[\n  torchvision.transforms.Resize(256),\n]\n")
    with pytest.raises(VaccbenchError, match=re.escape(f"{path}: no model table found")):
        import_readme(path, tmp_path / "foo.yaml", check=alias_only)
    assert not (tmp_path / "foo.yaml").exists()


def test_unmapped_rows_guessed_rows_and_missing_architectures_are_reported():
    readme = parse_readme("| model | source | top1 |\n|---|---|---|\n"
                          "| ResNet-50 | official | 76.1 |\n| Foo-Net | official | 70.0 |\n"
                          "| mobilenetv2 | timm | 72.9 |\n")
    known = {"resnet_50"}
    models, problems = map_models(readme, lambda library, arch: arch in known)
    assert [(m.key, m.fields["library"], m.fields["arch"]) for m in models] == [
        ("official-ResNet-50", "timm", "resnet_50"),  # guessed from the name, reported
        ("official-Foo-Net", None, None),
        ("timm-mobilenetv2_100", None, None)]  # the alias's arch is not in this timm
    assert [p.line for p in problems] == [3, 4, 5]
    assert "guessed timm 'resnet_50'" in problems[0].message
    assert "timm has no 'foo_net'" in problems[1].message
    assert "timm has no architecture 'mobilenetv2_100'" in problems[2].message
    _, offline = map_models(readme, alias_only)
    assert "timm is not importable" in offline[0].message


def test_timm_pretrained_tags_are_checked():
    pytest.importorskip("timm")
    assert importer.installed_arch("timm", "inception_v3.tf_in1k") is True
    assert importer.installed_arch("timm", "inception_v3.no_such_tag") is False
    assert importer.installed_arch("timm", "repvgg_b1g2") is False
    assert importer.installed_arch("torchvision", "mobilenet_v2") is True


def test_installed_arch_is_none_without_timm(no_torch_libraries):
    assert importer.installed_arch("timm", "mobilenetv2_100") is None
    assert importer.installed_arch("torchvision", "mobilenet_v2") is None


# --- preprocessing: the parsed spec reproduces the README's torchvision pipeline ------------

TRANSFORM_LISTS = [
    """[
    torchvision.transforms.Resize(342),
    torchvision.transforms.CenterCrop(299),
    torchvision.transforms.ToTensor(),
    torchvision.transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5],),
]""",
    """[
    torchvision.transforms.Resize((256, 256)),
    torchvision.transforms.CenterCrop(224),
    torchvision.transforms.ToTensor(),
    torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
]""",
    """[transforms.Resize(256, interpolation=InterpolationMode.BICUBIC), transforms.CenterCrop((224, 224)),
     transforms.ToTensor(), transforms.Normalize(mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])]""",
]


@pytest.mark.parametrize("snippet", TRANSFORM_LISTS)
def test_parsed_preprocessing_matches_torchvision_running_the_readme_list(snippet, tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from PIL import Image
    from torchvision.transforms import InterpolationMode

    from pytest_vaccbench.preprocess import preprocess

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 410)[None, :, None] * np.ones((300, 1, 3))
    pixels = np.clip(ramp + rng.normal(0, 40, (300, 410, 3)), 0, 255).astype(np.uint8)
    image = tmp_path / "photo.png"
    Image.fromarray(pixels).save(image)

    spec, problems = parse_transforms(snippet)
    assert problems == []
    pipeline = torchvision.transforms.Compose(eval(snippet, {"torchvision": torchvision,  # noqa: S307
                                                             "transforms": torchvision.transforms,
                                                             "InterpolationMode": InterpolationMode}))
    expected = pipeline(Image.open(image).convert("RGB")).numpy()
    assert np.abs(preprocess(image, spec) - expected).max() < 1e-5


NORMALIZE = "\ntransforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])"


def test_resize_forms():
    assert parse_transforms("transforms.Resize((256, 256))" + NORMALIZE)[0].resize_mode == "square"
    assert parse_transforms("transforms.Resize([256])" + NORMALIZE)[0].resize_mode == "short-side"
    spec, _ = parse_transforms("transforms.Resize(size=288, interpolation=3), transforms.CenterCrop(256)"
                               + NORMALIZE)
    assert (spec.resize, spec.resize_mode, spec.interpolation, spec.crop) == (
        288, "short-side", "bicubic", 256)
    spec, problems = parse_transforms("x\ntransforms.Resize((256, 320))\ntransforms.RandomHorizontalFlip()")
    assert spec is None
    assert [p.line for p in problems] == [2, 3]
    assert "only a square size" in problems[0].message and "RandomHorizontalFlip" in problems[1].message
    # a variable size is no literal list: the rows' sizes complete it (see the per-row tests)
    assert parse_transforms("transforms.Resize(scale_size)\ntransforms.CenterCrop(224)" + NORMALIZE) == (None, [])
    # without Normalize nothing determines mean/std: no spec rather than a guess
    assert parse_transforms("transforms.Resize(256)\ntransforms.CenterCrop(224)") == (None, [])


# --- merging into an existing file, and the command ------------------------------------------

README_V2 = """
# DemoNet
- DemoNet: A Network For Tests

[
    torchvision.transforms.Resize(256),
    torchvision.transforms.CenterCrop(224),
    torchvision.transforms.ToTensor(),
    torchvision.transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
]

| model | source | top1 | top5 | flops(G) | params(M) | input size |
|---|---|---|---|---|---|---|
| mobilenetv2 | timm | 73.0 | 91.0 | 0.3 | 3.5 | 224 |
| RepVGG-A0 | official | 72.41 | 90.50 | 1.4 | 8.30 | 224 |
| resnet18 | timm | 69.7 | | 1.8 | 11.7 | 224 |
"""

EXISTING = """\
# DemoNet: hand-written notes that must survive
family: demo
paper: "old"
readme: somewhere
preprocess:
  resize: 256
  resize_mode: short-side
  crop: 224
  interpolation: bicubic              # chosen by hand, but the README says bilinear
  library: pil
  mean: [0.485, 0.456, 0.406]
  std: [0.229, 0.224, 0.225]
tolerance: {top1: 0.3, top5: 0.3}
models:
  timm-mobilenetv2_100:
    name: mobilenetv2
    source: timm
    library: timm
    arch: mobilenetv2_100             # a comment to keep
    input_size: 224
    flops: {value: 0.3, unit: G}
    params_m: 3.5
    weights: my-mobilenet.pth
    tolerance: {top1: 1.0, top5: 1.0}
    published: {top1: 72.9, top5: 91.0}
    expected:
      imagenet-val:
        vamp/fp16: {top1: 71.5, top5: 90.4, n: 50000}
  timm-gone:
    name: gone
    source: timm
    library: timm
    arch: resnet18
    input_size: 224
    expected: {}
extra_models:
  local-x: {name: x, source: timm, library: timm, arch: resnet18, input_size: 224}
"""


def test_merge_updates_readme_fields_adds_rows_in_order_and_keeps_the_rest(tmp_path, capsys,
                                                                        no_torch_libraries):
    readme = write(tmp_path, README_V2)
    out = tmp_path / "demo.yaml"
    out.write_text(EXISTING)

    assert main(["import-readme", str(readme), "-o", str(out)]) == 0

    captured = capsys.readouterr()
    data = read_yaml(out)
    assert list(data["models"]) == ["timm-mobilenetv2_100", "official-RepVGG-A0", "timm-resnet18",
                                    "timm-gone"]
    mobilenet = plain(data["models"]["timm-mobilenetv2_100"])
    assert mobilenet["published"] == {"top1": 73.0, "top5": 91.0}
    assert mobilenet["weights"] == "my-mobilenet.pth"
    assert mobilenet["tolerance"] == {"top1": 1.0, "top5": 1.0}
    assert mobilenet["expected"] == {"imagenet-val": {"vamp/fp16": {"top1": 71.5, "top5": 90.4,
                                                                    "n": 50000}}}
    assert plain(data["models"]["official-RepVGG-A0"])["expected"] == {}
    assert plain(data["models"]["timm-resnet18"])["published"] == {"top1": 69.7, "top5": None}
    assert data["paper"] == "DemoNet: A Network For Tests"
    assert data["preprocess"]["interpolation"] == "bilinear"
    assert plain(data["tolerance"]) == {"top1": 0.3, "top5": 0.3} and data["readme"] == "somewhere"
    assert plain(data["extra_models"]) == {"local-x": {"name": "x", "source": "timm", "library": "timm",
                                                        "arch": "resnet18", "input_size": 224}}
    text = out.read_text()
    for kept in ("# DemoNet: hand-written notes that must survive", "# a comment to keep",
                 "# chosen by hand, but the README says bilinear"):
        assert kept in text
    assert "changed timm-mobilenetv2_100.published.top1: 72.9 -> 73.0" in captured.out
    assert "changed preprocess.interpolation: bicubic -> bilinear" in captured.out
    assert "2 added" in captured.out and "1 kept that are no README row" in captured.out
    assert f"{readme}:15: warning: timm resnet18: no top5 value; left null" in captured.err
    assert f"{out}:29: warning: models.timm-gone is no row of the README: kept" in captured.err
    assert len(load_family(out).models) == 5


def test_command_writes_a_new_file_named_after_the_title(tmp_path, monkeypatch, capsys, no_torch_libraries):
    readme = write(tmp_path, README_V2)
    monkeypatch.chdir(tmp_path)
    assert main(["import-readme", str(readme)]) == 0
    out = tmp_path / "baselines" / "demonet.yaml"
    assert f"wrote {Path('baselines/demonet.yaml')} (family demonet): 3 models" in capsys.readouterr().out
    family = load_family(out)
    assert family.paper == "DemoNet: A Network For Tests" and family.preprocess.resize == 256
    assert family.models["official-RepVGG-A0"].sources == ("official",)
    assert family.models["official-RepVGG-A0"].arch == "repvgg_a0"


def test_command_errors_name_the_file(tmp_path, capsys):
    readme = write(tmp_path, "no table\n")
    assert main(["import-readme", str(readme), "-o", str(tmp_path / "x.yaml")]) == 2
    assert f"vaccbench import-readme: error: {readme}: no model table found" in capsys.readouterr().err
    missing = tmp_path / "missing.md"
    assert main(["import-readme", str(missing)]) == 2
    assert f"{missing}: cannot read: No such file or directory" in capsys.readouterr().err
    table = write(tmp_path, "| model | source | top1 |\n|---|---|---|\n| a | timm | 1.0 |\n", "T.md")
    with pytest.raises(VaccbenchError, match="does not match the output file name x.yaml"):
        import_readme(table, tmp_path / "x.yaml", family="y", check=alias_only)
    with pytest.raises(VaccbenchError, match=re.escape(f"{table}: no title line") + ".* give --family"):
        import_readme(table, check=alias_only, baselines_dir=tmp_path)
    with pytest.raises(VaccbenchError, match="(?s)" + re.escape(f"{table}: the preprocessing of these rows is not "
                                                       "determined") + ".*timm-a .line 3.: the input size"):
        import_readme(table, tmp_path / "x.yaml", check=alias_only)
    broken = tmp_path / "broken.yaml"
    broken.write_text("family: broken\npreprocess: {resize: 256}\nmodels:\n  - a list\n")
    with pytest.raises(VaccbenchError, match=re.escape(f"{broken}:3: `models` must be a mapping")):
        import_readme(table, broken, check=alias_only)
    broken.write_text("family: broken\npreprocess: {resize: 256}\nmodels: [\n")
    with pytest.raises(VaccbenchError, match=re.escape(f"{broken}:") + r"\d+: YAML syntax error"):
        import_readme(table, broken, check=alias_only)
