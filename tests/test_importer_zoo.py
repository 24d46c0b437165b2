"""`vaccbench import-readme` on the kinds of README the rest of the model zoo has.

Each fragment is written in the zoo's style, as markdown and as the GitHub-page text of the
same README (`github_page`), and imported; the tests check the entries: count, published
numbers, per-row preprocessing, keys and architectures. Preprocessing taken from timm's
pretrained config is checked against timm's own `resolve_data_config` + `create_transform`.
"""

from __future__ import annotations

import re
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_vaccbench.baselines import load_family, read_yaml
from pytest_vaccbench.errors import VaccbenchError
from pytest_vaccbench.importer import import_readme, map_models, parse_readme
from pytest_vaccbench.importer.names import model_key, normalise
from pytest_vaccbench.preprocess import PreprocessSpec, preprocess


def github_page(markdown: str) -> str:
    """The text GitHub shows for a README: navigation lines, no markup, no code fences, table
    cells separated by spaces, a cell's <br> on its own line."""
    lines = ["Skip to content", "History", "README.md", "Raw"]
    for line in textwrap.dedent(markdown).splitlines():
        line = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line).lstrip("#").strip()
        if line.startswith("```") or re.fullmatch(r"\|?[\s:|-]+\|?", line or "x"):
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            line = " ".join(cells)
        lines.extend(re.split(r"\s*<br\s*/?>\s*", line))
    return "\n".join(lines) + "\n"


STYLES = ["markdown", "github-page"]


def write(tmp_path: Path, markdown: str, style: str) -> Path:
    path = tmp_path / "README.md"
    text = textwrap.dedent(markdown).lstrip("\n")
    path.write_text(text if style == "markdown" else github_page(text))
    return path


def builds(known: set[str]):
    """An architecture check that knows exactly these timm/torchvision names."""
    return lambda library, arch: arch in known


def imported(tmp_path: Path, markdown: str, style: str, **kwargs: Any) -> dict[str, Any]:
    out = tmp_path / "family.yaml"
    result = import_readme(write(tmp_path, markdown, style), out, **kwargs)
    family = load_family(out)  # a valid baseline: every row's spec builds
    return {"result": result, "family": family, "data": read_yaml(out), "text": out.read_text()}


def geometry(spec: PreprocessSpec) -> tuple:
    return (spec.resize, spec.resize_mode, spec.crop, spec.interpolation)


# --- transforms written with variables ----------------------------------------------------------

VARIABLES = """
# ResNeSt

- [ResNeSt: Split-Attention Networks](https://arxiv.org/abs/2004.08955)

## Pre-processing

resnest系列网络的预处理: 先resize, 然后CenterCrop出input_size大小的图片, 每个模型的crop_pct见下表

```python
[
    torchvision.transforms.Resize(scale_size, interpolation=InterpolationMode.BICUBIC),
    torchvision.transforms.CenterCrop(input_size),
    torchvision.transforms.ToTensor(),
    torchvision.transforms.Normalize(mean, std),
]
```
其中 scale_size = int(input_size / crop_pct), mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225]

## Model Info

| model | source | top1 | top5 | flops(G) | params(M) | input size | crop_pct |
| :---: | :--: | :--: | :--: | :---: | :----: | :--------: | :--: |
| resnest50 | official | 81.03 | 95.42 | 10.8 | 27.5 | 224 | 0.875 |
| resnest101 | official | 82.83 | 96.12 | 29.3 | 48.3 | 256 | 0.875 |
| resnest200 | official | 83.84 | 96.86 | 71.8 | 70.2 | 320 | 0.909 |
"""


@pytest.mark.parametrize("style", STYLES)
def test_variables_in_the_transforms_list_take_the_rows_sizes(tmp_path, style):
    got = imported(tmp_path, VARIABLES, style, check=builds({"resnest50d"}))
    models = got["family"].models
    assert list(models) == ["official-resnest50", "official-resnest101", "official-resnest200"]
    assert [(m.published["top1"], m.published["top5"]) for m in models.values()] == [
        (81.03, 95.42), (82.83, 96.12), (83.84, 96.86)]
    # scale_size = int(input_size / crop_pct): 224 / 0.875 = 256, 256 / 0.875 = 292.57, 320 / 0.909 = 352.03
    assert [geometry(m.preprocess) for m in models.values()] == [
        (256, "short-side", 224, "bicubic"), (292, "short-side", 256, "bicubic"),
        (352, "short-side", 320, "bicubic")]
    assert {m.preprocess.mean for m in models.values()} == {(0.485, 0.456, 0.406)}
    assert [m.input_size for m in models.values()] == [224, 256, 320]
    assert [m.arch for m in models.values()] == [None, None, None]  # timm has resnest50d, not resnest50
    text = got["text"]  # each derived value says where it came from
    assert "# floor(256 / crop_pct 0.875), the table's crop_pct (line" in text
    assert "# mean = [0.485, 0.456, 0.406] in the README (line" in text
    assert "# CenterCrop(input_size) (line" in text and "the table's input size" in text


CUSTOM_CROP = """
# RepVGG
RepVGG: Making VGG-style ConvNets Great Again

```python
[
    transforms.Resize(),
    transforms.CenterCropWithPct(input_size),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
]
```
crop_pct = 0.875

| model | source | top1 | top5 | input size |
|---|---|---|---|---|
| RepVGG-A0 | official | 72.41 | 90.50 | 224 |
| RepVGG-B1 | official | 78.37 | 94.11 | 320 |
"""


@pytest.mark.parametrize("style", STYLES)
def test_resize_without_a_size_and_a_custom_crop_use_the_crop_pct_of_the_text(tmp_path, style):
    got = imported(tmp_path, CUSTOM_CROP, style, check=builds({"repvgg_a0", "repvgg_b1"}))
    models = got["family"].models
    assert [geometry(m.preprocess) for m in models.values()] == [
        (256, "short-side", 224, "bilinear"), (365, "short-side", 320, "bilinear")]
    assert [m.arch for m in models.values()] == ["repvgg_a0", "repvgg_b1"]
    assert any("CenterCropWithPct is no torchvision transform" in p.message for p in got["result"].problems)


SQUARE_VARIABLE = """
# Xception
Xception: Deep Learning with Depthwise Separable Convolutions

## Code Source
```
link: https://keras.io/api/applications/xception/
```

## Pre-processing
```python
[
    transforms.Resize((imgsize, imgsize), interpolation=InterpolationMode.BILINEAR),
    transforms.Normalize(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
]
```

## Model Info
| model | top1 | top5 | flops(G) | params(M) | input size |
|---|---|---|---|---|---|
| xception | 79.0 | 94.5 | 16.8 | 22.9 | 299 |
| xception_320 | 79.6 | 94.9 | 19.1 | 22.9 | 320 |
"""


@pytest.mark.parametrize("style", STYLES)
def test_square_resize_to_the_input_size_no_source_column_and_0_255_mean_std(tmp_path, style):
    got = imported(tmp_path, SQUARE_VARIABLE, style, check=builds(set()))
    models = got["family"].models
    assert list(models) == ["keras-xception", "keras-xception_320"]  # the one source: keras.io
    assert [m.sources for m in models.values()] == [("keras",), ("keras",)]
    assert [m.published["top1"] for m in models.values()] == [79.0, 79.6]
    assert [geometry(m.preprocess) for m in models.values()] == [
        (299, "square", None, "bilinear"), (320, "square", None, "bilinear")]
    for model in models.values():  # 0-255 units: x - 127.5 / 127.5, not x / 255 first
        assert (model.preprocess.pixel_scale, model.preprocess.mean) == (1.0, (127.5, 127.5, 127.5))
    assert "pixel_scale: 1.0                    # mean/std are on the 0-255 scale" in got["text"]
    assert any("no source column: every row's source is keras" in p.message
               for p in got["result"].problems)


def test_0_255_mean_std_normalise_to_the_same_range_as_0_1_ones(tmp_path):
    """The 0-255 recipe must give what ToTensor + Normalize(mean/255, std/255) gives."""
    from PIL import Image

    pixels = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    text = ("transforms.Resize(32)\ntransforms.CenterCrop(32)\n"
            "mean: [123.675, 116.28, 103.53]\nstd: [58.395, 57.12, 57.375]\n"
            "transforms.Normalize(mean, std)\n| model | source | top1 |\n|---|---|---|\n| a | b | 1 |\n")
    (model,), _ = map_models(parse_readme(text), builds(set()))
    spec = PreprocessSpec.from_mapping({k: v.value for k, v in model.preprocess.items()})
    unit = PreprocessSpec(32, 32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    np.testing.assert_allclose(preprocess(tmp_path / "x.png", spec), preprocess(tmp_path / "x.png", unit),
                               atol=1e-5)


def test_a_table_without_source_column_and_no_source_in_the_text_is_refused(tmp_path):
    table = "| model | top1 | top5 |\n|---|---|---|\n| foo | 70.1 | 89.0 |\n"
    readme = write(tmp_path, "# Foo\n" + table, "markdown")
    with pytest.raises(VaccbenchError, match=re.escape(f"{readme}: the model table at line 2 has no "
                                                       "source column and it names no source")):
        import_readme(readme, tmp_path / "foo.yaml")


# --- no transforms list: timm's pretrained config; rows of other sizes ---------------------------

NO_LIST = """
# SENet

- [Squeeze-and-Excitation Networks](https://arxiv.org/abs/1709.01507)

## Code Source
```
# timm
link: https://github.com/huggingface/pytorch-image-models
```

## Pre-processing
senet系列网络的预处理操作与timm的默认配置一致(见timm中各模型的pretrained_cfg)

## Model Info

| model | source | top1 | top5 | flops(G) | params(M) | input size |
| :---: | :--: | :--: | :--: | :---: | :----: | :--------: |
| seresnet50 | timm | 80.274 | 95.070 | 4.1 | 28.1 | 224 |
| seresnet152d | timm | 84.362 | 97.040 | 24.1 | 66.8 | 320 |
| seresnext101_32x8d | timm | 84.204 | 96.876 | 27.2 | 93.6 | 288 |
"""


def timm_pipeline(arch: str, size: int):
    """timm's own evaluation transform for `arch` at the table's size (its test size when the
    config has one of that size)."""
    timm = pytest.importorskip("timm")
    from timm.data import create_transform, resolve_data_config

    cfg = timm.models.get_pretrained_cfg(arch)
    config = resolve_data_config(pretrained_cfg=cfg.to_dict(),
                                 use_test_size=cfg.test_input_size == (3, size, size))
    assert config["input_size"] == (3, size, size)
    return config, create_transform(**config)


@pytest.mark.parametrize("style", STYLES)
def test_without_a_transforms_list_timm_rows_take_timms_pretrained_config(tmp_path, style):
    pytest.importorskip("timm")
    from PIL import Image

    got = imported(tmp_path, NO_LIST, style)
    models = got["family"].models
    assert list(models) == ["timm-seresnet50", "timm-seresnet152d", "timm-seresnext101_32x8d"]
    assert [m.arch for m in models.values()] == ["seresnet50", "seresnet152d", "seresnext101_32x8d"]
    assert [m.published["top1"] for m in models.values()] == [80.274, 84.362, 84.204]
    pixels = np.random.default_rng(0).integers(0, 256, (300, 410, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    for model in models.values():
        config, pipeline = timm_pipeline(model.arch, model.input_size)
        spec = model.preprocess
        assert spec.crop == model.input_size and spec.resize == int(model.input_size / config["crop_pct"])
        assert (spec.interpolation, spec.mean, spec.std) == (
            config["interpolation"], config["mean"], config["std"])
        want = pipeline(Image.open(tmp_path / "photo.png").convert("RGB")).numpy()
        # timm's eval transform resizes the PIL image, as the reference backend does
        np.testing.assert_allclose(preprocess(tmp_path / "photo.png", spec), want, atol=1e-5)
    # seresnet152d at 320 is timm's test size: crop_pct 1.0, not the 224-row's
    assert geometry(models["timm-seresnet152d"].preprocess) == (320, "short-side", 320, "bicubic")
    data = got["data"]
    assert "preprocess" not in data["models"]["timm-seresnet50"]  # the family block is its
    assert dict(data["models"]["timm-seresnet152d"]["preprocess"]) == {"resize": 320, "crop": 320}
    assert ("# floor(320 / crop_pct 1.0), timm pretrained_cfg of seresnet152d: test_crop_pct 1.0"
            in got["text"])


WORDS_ONLY = """
# MobileNetV3
MobileNetV3: Searching for MobileNetV3

mobilenet_v3系列网络的预处理操作可以按照如下步骤进行,即先对图片进行resize至256的尺寸,然后利用CenterCrop算子crop出224的图片(bilinear插值)对其进行归一化、减均值除方差等操作
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]

| model | source | top1 | top5 | input size |
|---|---|---|---|---|
| mobilenetv3_large_100 | torchvision | 74.04 | 91.34 | 224 |
| mobilenetv3_large_100 | keras | 75.6 | 92.6 | 299 |
"""


@pytest.mark.parametrize("style", STYLES)
def test_a_recipe_in_words_and_a_row_of_another_size(tmp_path, style):
    got = imported(tmp_path, WORDS_ONLY, style, check=builds({"mobilenetv3_large_100"}))
    models = got["family"].models
    assert list(models) == ["torchvision-mobilenetv3_large_100", "keras-mobilenetv3_large_100"]
    # the README's 256/224 at 224; at 299 the same ratio, floor(299 * 256 / 224) = 341
    assert [geometry(m.preprocess)[:3] for m in models.values()] == [
        (256, "short-side", 224), (341, "short-side", 299)]
    assert "the README's resize/crop ratio at the table's input size" in got["text"]


def test_a_value_nothing_determines_is_refused_naming_the_rows(tmp_path):
    readme = write(tmp_path, VARIABLES.replace(" crop_pct |", " note |").replace("0.875 |", "a |")
                   .replace("0.909 |", "b |"), "markdown")
    with pytest.raises(VaccbenchError) as raised:
        import_readme(readme, tmp_path / "resnest.yaml", check=builds(set()))
    message = str(raised.value)
    assert "official-resnest50 (line 23): the resize (no literal Resize size, no crop_pct" in message
    assert "official-resnest200 (line 25)" in message and not (tmp_path / "resnest.yaml").exists()


# --- names: spaces, brackets, case ---------------------------------------------------------------

NAMES = """
# Inception
Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning

```python
[
    torchvision.transforms.Resize(scale_size),
    torchvision.transforms.CenterCrop(input_size),
    torchvision.transforms.ToTensor(),
    torchvision.transforms.Normalize(mean, std),
]
```
(scale_size, mean and std follow timm's pretrained config of each model)

| model | source | top1 | top5 | flops(G) | params(M) | input size |
|---|---|---|---|---|---|---|
| inception v4 | timm | 80.168 | 94.968 | 12.3 | 42.7 | 299 |
| Inception-ResNet v2 | timm | 80.458 | 95.312 | 13.2 | 55.8 | 299 |
| ShuffleNetV1 0.5x (group=3) | megvii | 57.3 | 79.8 | 0.04 | 0.7 | 224 |
"""


@pytest.mark.parametrize("style", STYLES)
def test_names_with_spaces_and_brackets_give_safe_keys_and_timm_architectures(tmp_path, style):
    pytest.importorskip("timm")
    readme = parse_readme(write(tmp_path, NAMES, style).read_text())
    models, _ = map_models(readme)
    assert [m.key for m in models] == ["timm-inception_v4", "timm-Inception-ResNet_v2",
                                       "megvii-ShuffleNetV1_0.5x_group_3"]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", m.key) for m in models)
    assert [(m.fields["library"], m.fields["arch"]) for m in models] == [
        ("timm", "inception_v4"), ("timm", "inception_resnet_v2"), (None, None)]
    assert [m.fields["name"] for m in models] == ["inception v4", "Inception-ResNet v2",
                                                  "ShuffleNetV1 0.5x (group=3)"]
    assert [m.fields["published"]["top1"] for m in models] == [Decimal("80.168"), Decimal("80.458"),
                                                               Decimal("57.3")]
    inception = models[0].preprocess
    config, _ = timm_pipeline("inception_v4", 299)  # resize floor(299 / 0.875) = 341
    assert (inception["resize"].value, inception["crop"].value, inception["mean"].value) == (
        int(299 / config["crop_pct"]), 299, list(config["mean"]))
    assert models[2].preprocess is None  # a megvii row: no Resize size, no crop_pct anywhere


@pytest.mark.parametrize("name, arch", [("inception v4", "inception_v4"), ("GhostNet_x0_5", "ghostnet_x0_5"),
                                        ("ShuffleNetV1 0.5x (group=3)", "shufflenetv1_0.5x_group_3"),
                                        ("RepVGG-A0", "repvgg_a0"), ("tf_inception_v3", "tf_inception_v3")])
def test_one_normalisation_for_names(name, arch):
    assert normalise(name) == arch
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", model_key("ppcls", name))


NEWER_GHOSTNET = """
# GhostNet
GhostNet: More Features from Cheap Operations

```python
[
    torchvision.transforms.Resize(256),
    torchvision.transforms.CenterCrop(224),
    torchvision.transforms.ToTensor(),
    torchvision.transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],),
]
```

| 模型 | 源码 | top1 | top5 | flops(G) | params(M) | input size |
|---|---|---|---|---|---|---|
| ghostnet_100 | timm | 73.974 | 91.460 | 0.342 | 3.9 | 224 |
| ghostnet_x0_5 | ppcls | 66.8 | 86.9 | - | - | 224 |
| ghostnet_x1_0 | ppcls | 74.0 | 91.6 | - | - | 224 |
| ghostnet_x1_3 | ppcls | 75.7 | 92.7 | - | - | 224 |
| ghostnet_x1_3_ssld | ppcls | 79.4 | 94.5 | - | - | 224 |
"""


@pytest.mark.parametrize("style", STYLES)
def test_aliases_match_by_case_and_a_reimport_does_not_duplicate(tmp_path, project_root, style):
    out = tmp_path / "ghostnet.yaml"
    out.write_text((project_root / "baselines" / "ghostnet.yaml").read_text())
    result = import_readme(write(tmp_path, NEWER_GHOSTNET, style), out, check=builds({
        "ghostnet_050", "ghostnet_100", "ghostnet_130"}))
    assert result.added == []
    data = read_yaml(out)
    assert list(data["models"]) == ["timm-ghostnet_100"]
    assert list(data["extra_models"]) == ["ppcls-GhostNet_x0_5", "ppcls-GhostNet_x1_0",
                                          "ppcls-GhostNet_x1_3", "ppcls-GhostNet_x1_3_ssld"]
    assert [data["extra_models"][k]["arch"] for k in data["extra_models"]] == [
        "ghostnet_050", "ghostnet_100", "ghostnet_130", "ghostnet_130"]
    assert [data["extra_models"][k]["name"] for k in data["extra_models"]] == [
        "ghostnet_x0_5", "ghostnet_x1_0", "ghostnet_x1_3", "ghostnet_x1_3_ssld"]  # as the README spells them
    assert len(load_family(out).models) == 5
    assert any("ppcls-GhostNet_x0_5 is a README row but sits in extra_models; updated there" in p.message
               for p in result.problems)


def test_a_key_that_differs_only_in_case_updates_the_entry(tmp_path, project_root):
    out = tmp_path / "ghostnet.yaml"
    out.write_text((project_root / "baselines" / "ghostnet.yaml").read_text())
    renamed = NEWER_GHOSTNET.replace("| ghostnet_100 | timm | 73.974", "| GhostNet_100 | timm | 74.0")
    readme = write(tmp_path, renamed, "markdown")
    result = import_readme(readme, out, check=builds({"ghostnet_050", "ghostnet_100", "ghostnet_130"}))
    data = read_yaml(out)
    assert list(data["models"]) == ["timm-ghostnet_100"] and result.added == []
    assert data["models"]["timm-ghostnet_100"]["published"]["top1"] == 74.0
    assert data["models"]["timm-ghostnet_100"]["arch"] == "ghostnet_100"
    assert any("timm-GhostNet_100 is models.timm-ghostnet_100 of" in p.message and "up to case" in p.message
               for p in result.problems)


LITERAL_WITH_OTHER_SIZES = """
# MobileNetV2
MobileNetV2: Inverted Residuals and Linear Bottlenecks

```python
[
    torchvision.transforms.Resize(256),
    torchvision.transforms.CenterCrop(224),
    torchvision.transforms.ToTensor(),
    torchvision.transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
]
```

| 模型 | 源码 | top1 | top5 | flops(M) | params(M) | input size |
|---|---|---|---|---|---|---|
| mobilenetv2 | timm | 72.956 | 91.010 | 327.544 | 3.5 | 224 |
| mobilenetv2 | keras | 71.8 | 91.0 | 612.1 | 3.5 | 299 |
"""


@pytest.mark.parametrize("style", STYLES)
def test_a_row_of_another_size_than_the_literal_crop_gets_its_own_preprocessing(tmp_path, style):
    got = imported(tmp_path, LITERAL_WITH_OTHER_SIZES, style, check=builds({"mobilenetv2_100"}))
    timm_row, keras_row = got["family"].models.values()
    assert geometry(timm_row.preprocess) == (256, "short-side", 224, "bilinear")  # the README's, as written
    assert geometry(keras_row.preprocess) == (341, "short-side", 299, "bilinear")  # not run at 224
    assert dict(got["data"]["models"]["keras-mobilenetv2"]["preprocess"]) == {"resize": 341, "crop": 299}
    assert "crop: 299                       # the table's input size (the README's 224 is another row's)" \
        in got["text"]


TORCHVISION_NO_LIST = """
# ResNet
ResNet: Deep Residual Learning for Image Recognition

resnet系列网络的预处理与torchvision中各模型权重的默认预处理一致

| model | source | top1 | top5 | input size |
|---|---|---|---|---|
| resnet50 | torchvision | 76.130 | 92.862 | 224 |
| resnet50 | timm | 80.374 | 94.616 | 224 |
| inception_v3 | torchvision | 77.294 | 93.450 | 299 |
"""


@pytest.mark.parametrize("style", STYLES)
def test_torchvision_rows_take_the_transform_of_the_weights_with_their_accuracy(tmp_path, style):
    pytest.importorskip("torchvision")
    pytest.importorskip("timm")
    from PIL import Image
    from torchvision.models import Inception_V3_Weights, ResNet50_Weights

    got = imported(tmp_path, TORCHVISION_NO_LIST, style)
    models = got["family"].models
    # resnet50 at 76.130 is IMAGENET1K_V1 (resize 256), not the DEFAULT V2 (80.858, resize 232)
    weights = {"torchvision-resnet50": ResNet50_Weights.IMAGENET1K_V1,
               "torchvision-inception_v3": Inception_V3_Weights.IMAGENET1K_V1}
    pixels = np.random.default_rng(2).integers(0, 256, (330, 420, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    for key, chosen in weights.items():
        want = chosen.transforms()(Image.open(tmp_path / "photo.png").convert("RGB")).numpy()
        np.testing.assert_allclose(preprocess(tmp_path / "photo.png", models[key].preprocess), want,
                                   atol=1e-5)
    assert geometry(models["torchvision-resnet50"].preprocess) == (256, "short-side", 224, "bilinear")
    assert geometry(models["torchvision-inception_v3"].preprocess) == (342, "short-side", 299, "bilinear")
    assert models["timm-resnet50"].preprocess.interpolation == "bicubic"  # timm's own config
    assert "# torchvision ResNet50_Weights.IMAGENET1K_V1 (acc@1 76.13)" in got["text"]


@pytest.mark.parametrize("recipe, message", [
    ("transforms.Resize(input_size / 0)\ntransforms.CenterCrop(input_size)", "input_size / 0: division by zero"),
    ("transforms.Resize(scale_size)\ntransforms.CenterCrop(input_size)\ncrop_pct = 1.5",
     "crop_pct 1.5 (crop_pct = 1.5 in the README (line 3)) is not in (0, 1]"),
    ("transforms.Resize(256)\ntransforms.CenterCrop(224)\ntransforms.Normalize(mean, std)\nmean = [1, 2]\nstd = [1, 2]",
     "[1, 2] (mean = [1, 2] in the README (line 4)) is not three numbers"),
    ("transforms.Resize(os.system('x'))\ntransforms.CenterCrop(224)", "is not a value the importer evaluates"),
    ("transforms.Resize(200)\ntransforms.CenterCrop(input_size)\ntransforms.Normalize([0.5] * 3, [0.5] * 3)",
     "the resize to 200 (Resize(200) (line 1)) is smaller than the row's 224 crop"),
])
def test_a_recipe_it_cannot_evaluate_is_refused_with_the_reason(tmp_path, recipe, message):
    table = "\n| model | source | top1 | input size |\n|---|---|---|---|\n| net | official | 70.0 | 224 |\n"
    readme = write(tmp_path, recipe + table, "markdown")
    with pytest.raises(VaccbenchError, match=re.escape(message)):
        import_readme(readme, tmp_path / "net.yaml", check=builds(set()))
