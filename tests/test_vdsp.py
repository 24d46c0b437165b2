"""vdsp_params parsing (both formats) and the CPU emulation, checked by hand-written computations."""

from __future__ import annotations

import copy
import json
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from pytest_vaccbench.preprocess import crop_box, load_crop, normalize, resized_size
from pytest_vaccbench.vdsp import (VdspError, crop_resize_ext, ext_spec, fp16_from_bits, load_vdsp,
                                   parse_vdsp, preprocess_option)

DATA = Path(__file__).parent / "data" / "vdsp"
ZOO_MOBILENETV2 = Path(str(resources.files("pytest_vaccbench.data").joinpath(
    "vdsp/timm-mobilenetv2_100-vdsp_params.json")))
IMAGENET_MEAN16 = (0.485107421875, 0.4560546875, 0.406005859375)
IMAGENET_STD16 = (0.22900390625, 0.2239990234375, 0.2249755859375)


def _half(bits: int) -> float:
    return struct.unpack("<e", struct.pack("<H", bits))[0]


def _photo() -> Path:
    skimage_data = pytest.importorskip("skimage.data")
    return Path(skimage_data.__file__).parent / "chelsea.png"  # 451 x 300


def _newer(**changes: object) -> dict:
    data = json.loads(ZOO_MOBILENETV2.read_text())
    data["OpConfig"].update(changes)
    return data


def test_fp16_bit_patterns_of_the_older_format() -> None:
    assert fp16_from_bits(14275) == _half(14275) == 0.485107421875
    assert round(fp16_from_bits(14275), 4) == 0.4851
    assert fp16_from_bits(15360) == 1.0  # 0x3C00
    assert fp16_from_bits(22459) == 123.6875  # the zoo's 123.675 for 0..255 means


def test_zoo_mobilenetv2_json_is_a_square_resize_and_a_fixed_crop() -> None:
    spec = load_vdsp(ZOO_MOBILENETV2)
    assert (spec.resize, spec.resize_mode, spec.crop, spec.crop_offset) == (256, "square", 224, (16, 16))
    assert (spec.library, spec.decoder, spec.interpolation) == ("cv2", "cv2", "bilinear")
    assert spec.mean == IMAGENET_MEAN16 and spec.std == IMAGENET_STD16
    assert (spec.pixel_scale, spec.channel_order) == (255.0, "RGB")


def test_older_format_reads_fp16_bits_short_edge_and_centre_crop() -> None:
    spec = load_vdsp(DATA / "timm-mobilenetv2_100-vdsp_params-2023.json")
    assert (spec.resize, spec.resize_mode, spec.crop, spec.crop_offset) == (256, "short-side", 224, None)
    assert spec.mean == tuple(_half(b) for b in (14275, 14156, 13951))
    assert spec.std == tuple(_half(b) for b in (13140, 13099, 13107))
    assert spec.pixel_scale == 255.0
    mmcls = load_vdsp(DATA / "mmcls-mobilenet_v2-vdsp_params-2023.json")  # MINUSMEAN_DIVSTD
    assert mmcls.pixel_scale == 1.0
    assert mmcls.mean == (123.6875, 116.25, 103.5) and mmcls.std == (58.40625, 57.125, 57.375)


def test_mean_std_are_rounded_to_fp16() -> None:
    spec = parse_vdsp(_newer(Mean=[0.485, 0.456, 0.406], Std=[0.229, 0.224, 0.225]), "x.json")
    assert spec.mean == IMAGENET_MEAN16 and spec.std == IMAGENET_STD16


@pytest.mark.parametrize("norma, scale, mean, std", [
    ("DIV255_MINUSMEAN_DIVSTD", 255.0, (0.25, 0.5, 0.75), (0.5, 0.25, 2.0)),
    ("MINUSMEAN_DIVSTD", 1.0, (0.25, 0.5, 0.75), (0.5, 0.25, 2.0)),
    ("DIV255", 255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    ("EQUAL", 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
])
def test_norma_types(norma: str, scale: float, mean: tuple, std: tuple) -> None:
    data = _newer(NormaType=norma, Mean=[0.25, 0.5, 0.75], Std=[0.5, 0.25, 2.0])
    spec = parse_vdsp(data, "x.json")
    assert (spec.pixel_scale, spec.mean, spec.std) == (scale, mean, std)
    pixel = np.full((1, 2, 2, 3), [10, 100, 200], dtype=np.uint8)
    out = normalize(pixel, spec)[0, :, 0, 0]
    by_hand = {"DIV255_MINUSMEAN_DIVSTD": [(10 / 255 - .25) / .5, (100 / 255 - .5) / .25, (200 / 255 - .75) / 2],
               "MINUSMEAN_DIVSTD": [(10 - .25) / .5, (100 - .5) / .25, (200 - .75) / 2],
               "DIV255": [10 / 255, 100 / 255, 200 / 255], "EQUAL": [10, 100, 200]}[norma]
    np.testing.assert_allclose(out, by_hand, rtol=1e-6)


@pytest.mark.parametrize("code", ["RGB2BGR", "BGR2RGB"])
def test_colour_conversion_swaps_planes_and_mean_follows_output_channels(code: str) -> None:
    spec = parse_vdsp(_newer(ColorCvtCode=code, Mean=[0.25, 0.5, 0.75], Std=[1, 1, 1]), "x.json")
    assert spec.channel_order == "BGR"
    pixel = np.full((1, 1, 1, 3), [10, 100, 200], dtype=np.uint8)  # R, G, B
    out = normalize(pixel, spec)[0, :, 0, 0]
    # output channel 0 is blue and takes Mean[0]
    np.testing.assert_allclose(out, [200 / 255 - .25, 100 / 255 - .5, 10 / 255 - .75], rtol=1e-6)


def test_emulation_matches_a_hand_written_opencv_pipeline() -> None:
    cv2 = pytest.importorskip("cv2")
    photo = _photo()
    spec = load_vdsp(ZOO_MOBILENETV2)
    got = normalize(load_crop(photo, spec)[None], spec)[0]
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    crop = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_LINEAR)[16:240, 16:240]
    mean = np.array([np.float16(m) for m in (0.485, 0.456, 0.406)], dtype=np.float32)
    std = np.array([np.float16(s) for s in (0.229, 0.224, 0.225)], dtype=np.float32)
    want = ((crop.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_the_op_without_a_crop_resizes_to_its_output_size() -> None:
    """The zoo's files of this op have no ResizeWidth (nor CropX): the image is resized
    straight to OimageWidth x OimageHeight."""
    cv2 = pytest.importorskip("cv2")
    photo = _photo()
    data = _newer(ColorCvtCode="BGR2RGB", Mean=[0.485, 0.456, 0.406], Std=[0.229, 0.224, 0.225])
    data["OpType"] = "FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR"
    for key in ("ResizeWidth", "ResizeHeight", "CropX", "CropY"):
        del data["OpConfig"][key]
    spec = parse_vdsp(data, "x.json")
    assert (spec.resize, spec.resize_mode, spec.crop, spec.channel_order) == (224, "square", None, "BGR")
    got = normalize(load_crop(photo, spec)[None], spec)[0]
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    mean = np.array([np.float16(m) for m in (0.485, 0.456, 0.406)], dtype=np.float32)
    std = np.array([np.float16(s) for s in (0.229, 0.224, 0.225)], dtype=np.float32)
    bgr = resized[..., ::-1]  # BGR2RGB swaps the planes; Mean[i] is output channel i's
    np.testing.assert_allclose(got, ((bgr - mean) / std).transpose(2, 0, 1), atol=1e-6)
    data["OpConfig"].update(ResizeWidth=256, ResizeHeight=256)  # a resize it states must be the output
    with pytest.raises(VdspError, match="OimageWidth 224 must equal ResizeWidth 256"):
        parse_vdsp(data, "x.json")


def test_pillow_resize_type_resizes_an_opencv_decode_with_pillow(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    from PIL import Image

    photo = _photo()
    spec = parse_vdsp(_newer(ResizeType="BILINEAR_PILLOW"), "x.json")
    assert (spec.library, spec.decoder) == ("pil", "cv2")
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    want = np.asarray(Image.fromarray(rgb).resize((256, 256), Image.BILINEAR))[16:240, 16:240]
    np.testing.assert_array_equal(load_crop(photo, spec), want)


def test_older_format_geometry_by_hand() -> None:
    cv2 = pytest.importorskip("cv2")
    photo = _photo()  # 451 x 300: short edge 300 -> 256, long edge int(256 * 451 / 300) = 384
    spec = load_vdsp(DATA / "timm-mobilenetv2_100-vdsp_params-2023.json")
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (384, 256), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(load_crop(photo, spec), resized[16:240, 80:304])


def _old(**values: object) -> dict:
    data = json.loads((DATA / "timm-mobilenetv2_100-vdsp_params-2023.json").read_text())
    for item in data["config"]:
        if item["Property"] in values:
            item["Value"] = values.pop(item["Property"])
    data["config"] += [{"Property": k, "Value": v} for k, v in values.items()]
    return data


@pytest.mark.parametrize("data, message", [
    ({"OpType": "FUSION_OP_YUV_NV12_RESIZE", "OpConfig": {}}, "OpType 'FUSION_OP_YUV_NV12_RESIZE'"),
    (_newer(ResizeHeight=300), "ResizeWidth 256 != ResizeHeight 300"),
    (_newer(CropX=40), "does not fit the 256x256 resize"),
    (_newer(NormaType="DIV128"), "NormaType 'DIV128' is not supported"),
    (_newer(ResizeType="BICUBIC"), "ResizeType 'BICUBIC' is not supported"),
    (_newer(IimageFormat="YUV_NV12"), "input image format 'YUV_NV12'"),
    (_newer(Mean=[0.5, 0.5]), "Mean and Std need three values"),
    ({"OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR",
      "OpConfig": {k: v for k, v in _newer()["OpConfig"].items() if k != "CropX"}}, "missing 'CropX'"),
    (_old(resize_type="AREA"), "ResizeType 'AREA'"),
    (_old(gamma=2), "unknown property 'gamma'"),
    ({"vdsp_op_type": 300, "iimage_format": 5000}, "numeric sdk1.0 codes are not"),
    ({"Op": "x"}, "not a vdsp_params file"),
])
def test_bad_vdsp_files_name_the_file_and_the_problem(tmp_path: Path, data: dict, message: str) -> None:
    path = tmp_path / "bad-vdsp_params.json"
    path.write_text(json.dumps(copy.deepcopy(data)))
    with pytest.raises(VdspError) as info:
        load_vdsp(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_invalid_json_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR",\n  "OpConfig": {,}\n}')
    with pytest.raises(VdspError, match=rf"{broken}:3: invalid JSON"):
        load_vdsp(broken)
    with pytest.raises(VdspError, match="cannot read vdsp_params file"):
        load_vdsp(tmp_path / "absent.json")


def test_preprocess_option() -> None:
    name, spec = preprocess_option(f"vdsp:{ZOO_MOBILENETV2}")
    assert name == "vdsp-timm-mobilenetv2_100" and spec == load_vdsp(ZOO_MOBILENETV2)
    name, spec = preprocess_option(f"vsx:{ZOO_MOBILENETV2}")
    assert name == "vsx-timm-mobilenetv2_100" and spec.even_size and not load_vdsp(ZOO_MOBILENETV2).even_size
    for bad in ("torchvision", "vdsp:", f"json:{ZOO_MOBILENETV2}"):
        with pytest.raises(VdspError, match="expected vdsp:<vdsp_params JSON file>"):
            preprocess_option(bad)


def test_vsx_preprocessing_makes_an_odd_image_even_first(tmp_path: Path) -> None:
    """The zoo's VastStreamX script by hand: imread, odd -> even cv2.resize, BGR -> RGB, then
    the fused op (square 256, crop at 16, 16)."""
    import cv2

    path = tmp_path / "odd.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (61, 333, 3), dtype=np.uint8))
    bgr = cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), (332, 60))
    expected = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (256, 256))[16:240, 16:240]
    vsx = preprocess_option(f"vsx:{ZOO_MOBILENETV2}")[1]
    np.testing.assert_array_equal(load_crop(path, vsx), expected)
    assert not np.array_equal(load_crop(path, load_vdsp(ZOO_MOBILENETV2)), expected)  # vamp's: no even step
    assert vsx.geometry_key() != load_vdsp(ZOO_MOBILENETV2).geometry_key()  # the image cache tells them apart


def test_crop_resize_ext_geometry_is_the_short_side_emulation() -> None:
    """The vendor's integer formulas (crop_resize_ext) and the CPU emulation's geometry
    (resized_size + crop_box of ext_spec) agree on every size, odd offsets rounded up."""
    spec = ext_spec(load_vdsp(ZOO_MOBILENETV2))
    assert (spec.resize_mode, spec.resize, spec.crop, spec.crop_offset, spec.even_size) == (
        "short-side", 256, 224, None, True)
    for width in range(224, 900, 2):
        for height in (224, 226, 300, 334, 500, 674):
            x, y, w, h = crop_resize_ext(width, height, 256, 224)
            assert (w, h) == resized_size(width, height, spec)
            assert (x, y) == crop_box(w, h, spec)
    assert crop_resize_ext(1000, 750, 256, 224) == (59, 16, 341, 256)  # 117 / 2: torchvision rounds to 58
